"""Catch device mixing without a GPU: a simulated CUDA device on the CPU.

Code that runs on a laptop can still fail on the first GPU it meets: a ``torch.arange(T)`` built
on the CPU and fed to an embedding whose weights were moved to ``"cuda"`` raises *Expected all
tensors to be on the same device*. :class:`SimulatedAccelerator` finds those mistakes on a CPU-only
machine. Inside it, a tensor created on or moved to ``"cuda"`` really lives on the CPU but is
*tagged* as being on the accelerator:

* ``tensor.device`` reports ``cuda:0`` and ``tensor.is_cuda`` is True for tagged tensors; the
  results of operations on tagged tensors are tagged; ``.cpu()`` / ``.to("cpu")`` untag a copy;
  ``module.to("cuda")`` tags every parameter and buffer; ``nn.Parameter(tagged)`` is tagged.
* an operation that mixes tagged and untagged tensors raises :class:`DeviceMixingError`, naming
  the operation, as real CUDA would. The same exceptions as on CUDA: 0-dim CPU tensors mix freely,
  ``copy_`` copies across devices, and a CUDA tensor may be indexed with CPU indices.
* ``.numpy()`` of a tagged tensor raises, as it does on a GPU (``.cpu()`` first).

Without a card, ``torch.cuda`` itself is left alone (``torch.cuda.is_available()`` stays False), so
libraries keep to their CPU code paths while the tensors they are given report ``cuda``. With one,
``SimulatedAccelerator(card="T4")`` (or ``"L4"``, ``"A100"``, ``"H100"``), ``torch.cuda`` answers as that
card (:mod:`softprompt.simulated_card`): available, its compute capability, memory and bfloat16 support, so
``dtype="auto"`` picks float16 on a T4 and bfloat16 on an A100, ``torch.autocast("cuda", ...)`` really runs
(the CPU's autocast, in that dtype) and ``torch.amp.GradScaler("cuda")`` really scales.

>>> with SimulatedAccelerator():
...     emb = torch.nn.Embedding(10, 4).to("cuda")
...     emb(torch.arange(3)[None])          # DeviceMixingError: an index built on the CPU
...     emb(torch.arange(3, device=emb.weight.device)[None])  # fine
>>> with SimulatedAccelerator(card="T4"):
...     torch.cuda.get_device_capability(), softprompt.precision.resolve_dtype("auto", "cuda")
((7, 5), torch.float16)
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from .simulated_card import CARDS, Card, CardAnswers, card_named, cuda_autocast_float32, half_gemm

__all__ = ["CARDS", "Card", "DeviceMixingError", "SimulatedAccelerator"]

ACCELERATOR = torch.device("cuda", 0)  # what a tagged tensor reports as its device
_CPU = torch.device("cpu")
# cross-device copies (as on CUDA) and questions about tensors that read no data
_ALLOWED_MIXING = {torch.Tensor.copy_, torch.Tensor.__setitem__, torch._has_compatible_shallow_copy_type,
                   torch.Tensor.is_set_to}
_GETSET = type(torch.Tensor.device)  # getset_descriptor: tensor properties (device, data, grad, ...)


class DeviceMixingError(RuntimeError):
    """An operation got tensors on the simulated accelerator and on the CPU."""


def _op_name(func) -> str:
    if isinstance(getattr(func, "__self__", None), _GETSET):  # a property get/set: Tensor.data.__set__
        return f"Tensor.{func.__self__.__name__}.{func.__name__}"
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _tensors(obj, out: list) -> list:
    """Every tensor in ``obj`` (nested lists, tuples and dicts), appended to ``out``."""
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _tensors(item, out)
    elif isinstance(obj, dict):
        for item in obj.values():
            _tensors(item, out)
    return out


def _is_accelerator(device) -> bool | None:
    """True for a CUDA device, False for another one, None for no device given."""
    if device is None:
        return None
    if isinstance(device, int):  # a bare index means a CUDA device
        return True
    return torch.device(device).type == ACCELERATOR.type


class SimulatedAccelerator(TorchFunctionMode):
    """A ``TorchFunctionMode`` in which ``"cuda"`` tensors live on the CPU, tagged, and mixing raises.

    Use it as a context manager (``with SimulatedAccelerator(): ...``) around code that should be
    device-agnostic, with the model moved to ``"cuda"`` inside it. :meth:`on_accelerator` tells
    whether a tensor is tagged. ``card`` (a name in :data:`CARDS` or a :class:`Card`) also makes
    ``torch.cuda`` answer as that GPU while the mode is on; ``None`` leaves ``torch.cuda`` alone.
    """

    def __init__(self, card: str | Card | None = None):
        super().__init__()
        self.card = None if card is None else card_named(card)
        self._tagged = WeakIdKeyDictionary()
        self._parameter_new = None
        self._answers = None

    # -- tags ---------------------------------------------------------------------------------
    def on_accelerator(self, tensor: torch.Tensor) -> bool:
        return tensor in self._tagged

    def _tag(self, obj, value: bool = True):
        for t in _tensors(obj, []):
            if value:
                self._tagged[t] = True
            else:
                self._tagged.pop(t, None)
        return obj

    # -- entering and leaving: nn.Parameter(tagged) is built in C++, out of the mode's sight ---
    def __enter__(self):
        parameter_new = torch.nn.Parameter.__dict__["__new__"]
        mode = self

        def new(cls, data=None, requires_grad=True):
            param = parameter_new(cls, data, requires_grad)
            if isinstance(data, torch.Tensor) and mode.on_accelerator(data):
                mode._tag(param)
            return param

        self._parameter_new = parameter_new
        torch.nn.Parameter.__new__ = staticmethod(new)
        if self.card is not None:
            self._answers = CardAnswers(self.card, lambda: list(self._tagged.keys())).install()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            if self._answers is not None:
                self._answers.restore()
                self._answers = None
            torch.nn.Parameter.__new__ = self._parameter_new

    # -- every torch call ---------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if isinstance(getattr(func, "__self__", None), _GETSET):
            return self._property(func, args)
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu):
            return self._move(func, args, kwargs)
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and self.on_accelerator(args[0]):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first. (simulated accelerator)")
        if func is torch.Tensor.get_device and self.on_accelerator(args[0]):
            return ACCELERATOR.index

        if self.card is not None:  # page-locked host memory (to copy to the card fast) is plain memory here
            if func is torch.Tensor.pin_memory:
                return args[0]
            if kwargs.get("pin_memory"):
                kwargs = {**kwargs, "pin_memory": False}
        target = _is_accelerator(kwargs.get("device"))  # a factory: torch.zeros(..., device="cuda")
        if target:
            kwargs = {**kwargs, "device": _CPU}
        inputs = _tensors(args, _tensors(kwargs, []))
        tagged = [t for t in inputs if t in self._tagged]
        if tagged and func not in _ALLOWED_MIXING:
            self._check_same_device(func, args, inputs, tagged)
        out = NotImplemented
        if self.card is not None and tagged:  # the card's arithmetic: CUDA autocast's dtypes, tensor-core products
            args, kwargs = cuda_autocast_float32(func, args, kwargs)
            out = half_gemm(func, args, kwargs)
        if out is NotImplemented:
            out = func(*args, **kwargs)
        if target is None:
            target = bool(tagged)
        if isinstance(out, torch.Tensor) and any(out is t for t in inputs):
            return out  # in place (x.add_(y), dst.copy_(src)): the tensor stays where it was
        return self._tag(out) if target else out

    def _check_same_device(self, func, args, inputs, tagged):
        if func is torch.Tensor.__getitem__:  # a CUDA tensor indexed with CPU indices is fine
            if args[0] in self._tagged:
                return
            raise DeviceMixingError(
                f"indices should be either on cpu or on the same device as the indexed tensor (cpu) "
                f"(simulated accelerator: in {_op_name(func)}, a CPU tensor indexed with cuda:0 indices)."
            )
        cpu = [t for t in inputs if t not in self._tagged and t.dim() > 0]  # 0-dim CPU tensors mix freely
        if cpu:
            shapes = ", ".join(f"{tuple(t.shape)} on cpu" for t in cpu[:3])
            raise DeviceMixingError(
                f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! "
                f"(simulated accelerator: in {_op_name(func)}, tensors {shapes} next to {len(tagged)} on cuda:0; "
                f"create them with device=... or move them with .to(device))"
            )

    def _property(self, func, args):
        name, tensor = func.__self__.__name__, args[0]
        tagged = tensor in self._tagged
        if func.__name__ == "__set__":  # p.data = x, p.grad = g
            if name == "data":
                self._tag(tensor, args[1] in self._tagged)
            elif name == "grad" and args[1] is not None and (args[1] in self._tagged) != tagged:
                raise DeviceMixingError(
                    f"assigned grad on {'cuda:0' if args[1] in self._tagged else 'cpu'} to a tensor on "
                    f"{'cuda:0' if tagged else 'cpu'} (simulated accelerator: in Tensor.grad.__set__)."
                )
            return func(*args)
        if name == "device":
            return ACCELERATOR if tagged else func(*args)
        if name == "is_cuda":
            return tagged
        out = func(*args)  # .data, .grad, .T, .real, ...: on the tensor's device
        return self._tag(out) if tagged and isinstance(out, torch.Tensor) else out

    def _move(self, func, args, kwargs):
        tensor, rest = args[0], args[1:]
        tagged = tensor in self._tagged
        if func is torch.Tensor.cuda:
            target, dtype, extra = True, None, {}
        elif func is torch.Tensor.cpu:
            target, dtype, extra = False, None, {}
        else:
            other = next((a for a in list(rest) + [kwargs.get("other")] if isinstance(a, torch.Tensor)), None)
            if other is not None:  # x.to(y): y's device and dtype
                target, dtype = other in self._tagged, other.dtype
                extra = {"non_blocking": kwargs.get("non_blocking", False)}
            else:
                parse = {k: v for k, v in kwargs.items() if k != "copy"}
                device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*rest, **parse)
                target = _is_accelerator(device)
                extra = {"non_blocking": non_blocking}
                if memory_format is not None:
                    extra["memory_format"] = memory_format
            extra["copy"] = bool(kwargs.get("copy", False))
        if target is None:
            target = tagged
        if target == tagged:  # no move: only the dtype may change (and that may return the tensor itself)
            if dtype is None and not extra.get("copy"):
                return tensor
            return self._tag(tensor.to(dtype=dtype or tensor.dtype, **extra), tagged)
        moved = tensor.to(dtype=dtype or tensor.dtype, **{**extra, "copy": True})  # a move copies, as on a GPU
        return self._tag(moved, target)
