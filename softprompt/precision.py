"""Mixed precision: a bfloat16 / float16 model with a float32 soft prompt (the master weights).

Prompt tuning (Lester et al. 2021, §2) freezes the model and trains only ``P_e``, a few thousand numbers.
The frozen model may run in half precision (half the memory, faster matmuls on a GPU) while what
trains keeps float32 values, so that a step of size ``lr * grad`` is not rounded away:

* the prompt encoder's parameters (and a SEQ_CLS head, :func:`keep_float32`) stay float32; the prompt
  is cast to the model's dtype where it is concatenated in front of ``inputs_embeds``
  (:meth:`PromptModel._prepend`, the prefix cache, the shared-prompt path), and the gradient flows back
  through that cast into the float32 values;
* the forward runs under :func:`autocast` in the model's dtype, so the ops autocast keeps in float32
  (softmax, log-softmax, cross-entropy, norms) stay there; scores are read in float32 too;
* float16 has a narrow range: small gradients underflow to 0. :class:`Precision` scales the loss
  (``torch.amp.GradScaler``), unscales the gradient before clipping, and skips a step whose gradient
  overflowed (lowering the scale). bfloat16 has float32's range and needs no scaling; float32 none.

A float32 model gets none of this: autocast off, no scaler, the plain path exactly.

Two computations of the same numbers by different routes (the prefix cache and the plain forward, a
mixed-task batch and one row alone) agree only up to rounding, and how far depends on the dtype:
:func:`tolerance` is the one rule the tests and notebooks compare them with.

``"auto"`` (:func:`resolve_dtype`) picks bfloat16 on a CUDA GPU that has it natively (A100, H100, L4),
float16 on one that does not (T4, V100), and float32 without CUDA: a CPU run (and a GPU profile run on a
CPU-only machine with a tiny stand-in model) keeps exact float32 arithmetic.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["DTYPE_NAMES", "resolve_dtype", "check_dtype", "compute_dtype", "autocast", "keep_float32", "Precision",
           "tolerance"]

DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
HALF = (torch.bfloat16, torch.float16)
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}


def check_dtype(dtype, name: str = "dtype") -> str | torch.dtype:
    """``dtype`` as a ``torch.dtype`` or one of the names ``float32 bfloat16 float16 auto``; a ValueError otherwise."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPE_NAMES.values():
            raise ValueError(f"{name}={dtype}: use torch.float32, torch.bfloat16 or torch.float16.")
        return dtype
    key = _ALIASES.get(str(dtype).lower(), str(dtype).lower()) if isinstance(dtype, str) else None
    if key not in (*DTYPE_NAMES, "auto"):
        raise ValueError(f"{name}={dtype!r} is not a dtype softprompt runs in; use 'float32', 'bfloat16', "
                         "'float16' or 'auto' (bfloat16 on a GPU that has it, float16 on other GPUs, float32 on CPU).")
    return key


def resolve_dtype(dtype, device: str | torch.device | None = None) -> torch.dtype:
    """The ``torch.dtype`` for ``dtype`` (a name or a dtype) on ``device`` (default: CUDA if available).

    ``"auto"``: bfloat16 on a CUDA device with native bfloat16 (compute capability >= 8: A100, H100, L4),
    float16 on other CUDA GPUs (T4), float32 when there is no CUDA (whatever ``device`` says: a GPU profile
    run on a CPU-only machine). A named dtype is returned as asked, on any device.
    """
    dtype = check_dtype(dtype)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        return DTYPE_NAMES[dtype]
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind != "cuda" or not torch.cuda.is_available():
        return torch.float32
    # including_emulation=False: a T4 "supports" bfloat16 only by emulation, slowly; float16 is native there
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def tolerance(dtype) -> dict[str, float]:
    """``atol`` and ``rtol`` for two computations of the same numbers that round differently, in ``dtype``.

    Use: ``torch.testing.assert_close(a, b, **tolerance(dtype))``, ``dtype`` being what the two routes compute
    in where they differ: the model's dtype when they run the model differently (the cached and the uncached
    prefix, a mixed batch and a row alone; float32 scores too, as they are read off logits in that dtype),
    float32 when they share the model's outputs or only handle the float32 prompt.

    ``eps`` is the gap between 1 and the next number: float32 1.2e-7, float16 9.8e-4, bfloat16 7.8e-3.

    * half precision: every intermediate value is stored rounded to the dtype, and two routes round
      differently. On SmolLM2-135M (30 layers, CPU) we measured, between two such routes, label-word
      log-probabilities up to 31 eps apart in float16 and 46 eps in bfloat16 (0.36), next-token logits over
      the whole vocabulary up to 116 eps in float16 (0.11) and 52 eps in bfloat16 (0.41). ``atol = 256 eps``
      (0.25 and 2.0) is twice the largest of these, for deeper models, longer splits and a GPU's kernels.
      Errors do not grow with the values compared (the largest sit at small logits): ``rtol = 8 eps`` only.
    * float32: rounding is not the limit, summation order is (another batch shape runs other kernels): up
      to 3.7e-5 measured, so ``atol = 1e-4`` and ``rtol = 1e-5``, floors above 256 eps and 8 eps.

    A check within these bounds is coarse in bfloat16: it catches a wrong formula, not a small bias.
    """
    eps = torch.finfo(resolve_dtype(dtype)).eps
    return {"atol": max(256 * eps, 1e-4), "rtol": max(8 * eps, 1e-5)}


def _embeddings(model: nn.Module) -> nn.Module:
    emb = getattr(model, "word_embeddings", None)  # a PromptModel's; a Hugging Face model's below
    return emb if isinstance(emb, nn.Module) else model.get_input_embeddings()


def compute_dtype(model: nn.Module) -> torch.dtype:
    """The dtype the (base) model computes in: its input embeddings' dtype."""
    return _embeddings(model).weight.dtype


def _device_type(model: nn.Module) -> str:
    return _embeddings(model).weight.device.type


def autocast(model: nn.Module):
    """``torch.autocast`` in the model's dtype for a half-precision model; a no-op context for float32."""
    dtype = compute_dtype(model)
    if dtype not in HALF:
        return contextlib.nullcontext()
    return torch.autocast(device_type=_device_type(model), dtype=dtype)


def _to_float32(module, args):
    """A forward pre-hook: floating-point inputs of a float32 module (a half model's hidden states) to float32."""
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def keep_float32(model: nn.Module) -> int:
    """Make every trainable half-precision parameter float32 (the master weights); returns how many changed.

    The prompt encoder is float32 already (it is built so); a SEQ_CLS head belongs to the base model and
    comes in the model's dtype. Each module owning such a parameter is made float32, and a forward
    pre-hook casts its floating-point inputs to float32, so it also runs outside :func:`autocast`.
    """
    changed = 0
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad and p.dtype in HALF]
        if not own:
            continue
        for p in own:
            p.data = p.data.float()
            changed += 1
        if not getattr(module, "_softprompt_float32_hook", False):
            module.register_forward_pre_hook(_to_float32)
            module._softprompt_float32_hook = True
    return changed


class Precision:
    """What a training step needs for ``model``'s dtype: :meth:`autocast`, and loss scaling for float16.

    Use: ``backward(loss)`` per (micro-)batch, then ``unscale_(opt)`` before clipping, then ``step(opt)``
    (or ``skip_step(opt)`` when the gradient is not finite). float32 and bfloat16: plain ``loss.backward()``
    and ``opt.step()``; float16: ``torch.amp.GradScaler``, whose state a checkpoint keeps.
    """

    def __init__(self, model: nn.Module):
        self.model, self.dtype = model, compute_dtype(model)
        self.scaler = torch.amp.GradScaler(_device_type(model)) if self.dtype == torch.float16 else None

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def autocast(self):
        return autocast(self.model)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale_(self, opt: torch.optim.Optimizer) -> None:
        """The gradient back at its true size (float16), before clipping reads its norm."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            opt.step()
        else:
            self.scaler.step(opt)
            self.scaler.update()

    def skip_step(self, opt: torch.optim.Optimizer) -> bool:
        """float16: an overflowed gradient is expected now and then; skip the step, lower the scale, return True.
        Other dtypes: False (a non-finite gradient is a real problem)."""
        if self.scaler is None:
            return False
        self.scaler.step(opt)  # skipped: unscale_ found inf/nan
        self.scaler.update()  # the scale halves
        opt.zero_grad(set_to_none=True)
        return True

    def state_dict(self) -> dict | None:
        """The loss scaler's state (JSON-ready), or None without one."""
        return None if self.scaler is None else dict(self.scaler.state_dict())

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
