"""A GPU's answers without the GPU: ``torch.cuda`` made to reply as a T4, an L4, an A100 or an H100.

:class:`softprompt.device_check.SimulatedAccelerator` tags tensors "on cuda" while they live on the CPU.
That catches device mixing, but a library that *asks* about the GPU (``torch.cuda.is_available()``,
``get_device_capability()``, ``is_bf16_supported()``) would still hear "no GPU" and keep to its CPU code
path. With ``SimulatedAccelerator(card="T4")`` the questions get a T4's answers too, from a
:class:`CardAnswers` that patches ``torch.cuda`` (and ``torch.accelerator``) on entry and restores every
attribute on exit:

* the card itself: ``is_available`` (True), ``device_count`` (1), ``current_device`` / ``set_device``,
  ``get_device_capability``, ``get_device_name``, ``get_device_properties`` (name, major, minor,
  total_memory, multi_processor_count), ``get_arch_list``, ``is_bf16_supported(including_emulation=...)``:
  native bfloat16 from compute capability 8.0 (A100, L4, H100); a T4 (7.5) only emulates it;
* memory: ``memory_allocated`` counts the bytes of the tensors tagged "cuda" that are alive now;
  ``max_memory_allocated`` is the largest value *measured* since ``reset_peak_memory_stats`` (at each
  memory query: the simulation does not watch every allocation, so it is a lower bound of the real peak);
  ``mem_get_info`` is ``(total - allocated, total)``; ``empty_cache`` and ``synchronize`` do nothing;
* random numbers: ``manual_seed(_all)``, ``seed(_all)``, ``initial_seed``, ``get_rng_state(_all)`` /
  ``set_rng_state(_all)`` keep one CPU generator per simulated device (a checkpoint saves and restores it
  as on a GPU; the tagged tensors' random draws still come from the CPU generator);
* one stream (``current_stream`` / ``default_stream``, ``torch.accelerator.current_stream``) that is never
  capturing a CUDA graph (``torch.optim`` asks before every step) and whose work is always done;
* mixed precision runs as on the card: ``torch.autocast("cuda", dtype)`` turns on the CPU's autocast in that
  dtype (the tagged tensors are CPU tensors), with CUDA's default dtype float16; and
  ``torch.amp.GradScaler("cuda")`` is enabled, its unscale / inf-check / scale-update ops running on the CPU;
* pinned host memory (``pin_memory=True``, ``Tensor.pin_memory()``, what safetensors and DataLoaders ask
  for before a copy to the GPU) is ordinary CPU memory;
* autocast follows CUDA's lists where the CPU's differ: under ``torch.autocast("cuda")`` softmax,
  log-softmax, norms, sums, ``exp`` / ``log`` / ``pow``, layer norm, cosine similarity and the losses run in
  float32 (:func:`cuda_autocast_float32`); the CPU's autocast would leave softmax and norms in half;
* half-precision matrix products run as on a GPU's tensor cores, and at float32 speed: inputs rounded to
  the half dtype, products accumulated in float32, the result rounded to the half dtype (:func:`half_gemm`).
  A CPU without native half arithmetic (no AVX512-FP16 / AMX) runs a float16 matmul 8-40x slower than a
  float32 one; the notebooks would not fit a test run otherwise. Which dtype an op computes in is torch's
  own rule (autocast's lists, or the inputs' dtype), so a float32 prompt meeting a float16 table outside
  autocast still raises *expected m1 and m2 to have the same dtype*, as on the GPU.

What it does not change: the torch build. ``torch.version.cuda`` stays None and ``torch.backends.cuda``
says "not built", so code that needs CUDA kernels (Triton, flash-attention, hub kernels) sees a CPU
build and takes its fallback; which ops autocast runs in half precision is CUDA's rule for the ops above,
the CPU's for the rest; events, graphs and other streams are not simulated (they raise, as the CPU build
does: a query the simulation does not answer fails loudly rather than answering wrongly).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CARDS", "Card", "CardAnswers", "DeviceProperties", "cuda_autocast_float32", "half_gemm"]

GiB = 2**30
_MISSING = object()  # an attribute this torch does not have: deleted again on restore


@dataclass(frozen=True)
class Card:
    """What a CUDA GPU says about itself (NVIDIA's data sheets; memory as the runtimes report it)."""

    name: str  # torch.cuda.get_device_name()
    major: int  # compute capability major.minor
    minor: int
    total_memory: int  # bytes
    multi_processor_count: int

    @property
    def capability(self) -> tuple[int, int]:
        return self.major, self.minor

    @property
    def native_bf16(self) -> bool:
        """bfloat16 in hardware from compute capability 8.0 (Ampere); a T4 (7.5) only emulates it."""
        return self.capability >= (8, 0)

    @property
    def half_dtype(self) -> torch.dtype:
        """The half dtype a mixed-precision run picks here (:func:`softprompt.precision.resolve_dtype`)."""
        return torch.bfloat16 if self.native_bf16 else torch.float16


CARDS: dict[str, Card] = {
    "T4": Card("Tesla T4", 7, 5, 15 * GiB, 40),  # Colab's free GPU: Turing, float16 tensor cores
    "L4": Card("NVIDIA L4", 8, 9, 22 * GiB, 58),  # Ada
    "A100": Card("NVIDIA A100-SXM4-40GB", 8, 0, 40 * GiB, 108),  # Ampere
    "H100": Card("NVIDIA H100 80GB HBM3", 9, 0, 80 * GiB, 132),  # Hopper
}


@dataclass(frozen=True)
class DeviceProperties:
    """What ``torch.cuda.get_device_properties`` returns, for a simulated card."""

    name: str
    major: int
    minor: int
    total_memory: int
    multi_processor_count: int
    is_integrated: bool = False
    is_multi_gpu_board: bool = False

    def __repr__(self) -> str:
        return (f"_CudaDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
                f"total_memory={self.total_memory // 2**20}MB, multi_processor_count={self.multi_processor_count}) "
                "(simulated)")


class SimulatedStream:
    """The one stream of a simulated card: work on it is already done (the CPU ran it), nothing is captured."""

    device_type, device_index = "cuda", 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", 0)

    def is_capturing(self) -> bool:
        return False

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def wait_stream(self, stream) -> None:
        pass

    def wait_event(self, event) -> None:
        pass

    def __repr__(self) -> str:
        return "<simulated cuda stream, device 0>"


def card_named(card: str | Card) -> Card:
    if isinstance(card, Card):
        return card
    if card not in CARDS:
        raise ValueError(f"card={card!r} is not a simulated GPU; use one of {sorted(CARDS)} or a Card(...).")
    return CARDS[card]


class CardAnswers:
    """Patches ``torch.cuda`` / ``torch.accelerator`` to answer as ``card``; :meth:`restore` undoes every patch.

    ``live_tensors`` returns the tensors now on the simulated device (for the memory counters).
    """

    DEVICE_COUNT = 1

    def __init__(self, card: str | Card, live_tensors):
        self.card = card_named(card)
        self._live = live_tensors
        self._saved: list[tuple[object, str, object]] = []
        self._peak = 0
        self._rng = [torch.Generator() for _ in range(self.DEVICE_COUNT)]
        self._stream = SimulatedStream()
        self._cpu_autocast_dtype = None

    # -- patching -----------------------------------------------------------------------------
    def _patch(self, owner, name: str, value) -> None:
        self._saved.append((owner, name, owner.__dict__.get(name, getattr(owner, name, _MISSING))))
        setattr(owner, name, value)

    # what torch.cuda answers (a method of this class each) and what torch.accelerator answers
    CUDA = ("is_available", "is_initialized", "device_count", "current_device", "set_device", "get_device_capability",
            "get_device_name", "get_device_properties", "get_arch_list", "is_bf16_supported", "memory_allocated",
            "max_memory_allocated", "memory_reserved", "max_memory_reserved", "reset_peak_memory_stats",
            "reset_max_memory_allocated", "mem_get_info", "empty_cache", "synchronize", "manual_seed",
            "manual_seed_all", "seed", "seed_all", "initial_seed", "get_rng_state", "set_rng_state",
            "get_rng_state_all", "set_rng_state_all", "current_stream", "default_stream",
            "is_current_stream_capturing")
    ACCELERATOR = {"is_available": "is_available", "current_accelerator": "current_accelerator",
                   "device_count": "device_count", "current_device_index": "current_device",
                   "current_device_idx": "current_device", "set_device_index": "set_device",
                   "set_device_idx": "set_device", "synchronize": "synchronize", "empty_cache": "empty_cache",
                   "memory_allocated": "memory_allocated", "max_memory_allocated": "max_memory_allocated",
                   "memory_reserved": "memory_reserved", "max_memory_reserved": "max_memory_reserved",
                   "reset_peak_memory_stats": "reset_peak_memory_stats", "get_memory_info": "mem_get_info",
                   "current_stream": "current_stream"}

    def install(self) -> CardAnswers:
        for name in self.CUDA:
            self._patch(torch.cuda, name, getattr(self, name))
        for name, ours in self.ACCELERATOR.items():
            self._patch(torch.accelerator, name, getattr(self, ours))
        self._install_autocast()
        return self

    def restore(self) -> None:
        for owner, name, value in reversed(self._saved):
            if value is _MISSING:  # an older torch without it (torch 2.8 has no torch.accelerator.empty_cache)
                delattr(owner, name)
            else:
                setattr(owner, name, value)
        self._saved.clear()
        if self._cpu_autocast_dtype is not None:
            torch.set_autocast_dtype("cpu", self._cpu_autocast_dtype)
            self._cpu_autocast_dtype = None

    # -- autocast: "cuda" means the CPU's autocast, whose ops see the tagged (CPU) tensors ----------
    def _install_autocast(self) -> None:
        set_enabled, is_enabled = torch.set_autocast_enabled, torch.is_autocast_enabled
        get_dtype, set_dtype = torch.get_autocast_dtype, torch.set_autocast_dtype

        def on_cpu(device_type):
            return "cpu" if device_type in (None, "cuda") else device_type

        self._patch(torch, "set_autocast_enabled",
                    lambda device_type, enabled: set_enabled(on_cpu(device_type), enabled))
        self._patch(torch, "is_autocast_enabled", lambda device_type=None: is_enabled(on_cpu(device_type)))
        self._patch(torch, "get_autocast_dtype", lambda device_type: get_dtype(on_cpu(device_type)))
        self._patch(torch, "set_autocast_dtype", lambda device_type, dtype: set_dtype(on_cpu(device_type), dtype))
        self._patch(torch, "get_autocast_gpu_dtype", lambda: get_dtype("cpu"))
        self._cpu_autocast_dtype = get_dtype("cpu")
        set_dtype("cpu", torch.float16)  # CUDA's default: torch.autocast("cuda") without a dtype is float16

    # -- the card --------------------------------------------------------------------------------
    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def device_count(self) -> int:
        return self.DEVICE_COUNT

    def current_device(self) -> int:
        return 0

    def current_accelerator(self, check_available: bool = False) -> torch.device:
        return torch.device("cuda")

    def _index(self, device) -> int:
        if device is None:
            return 0
        if isinstance(device, int):
            index = device
        else:
            device = torch.device(device)
            if device.type != "cuda":
                raise ValueError(f"Expected a cuda device, but got: {device} (simulated {self.card.name})")
            index = 0 if device.index is None else device.index
        if not 0 <= index < self.DEVICE_COUNT:
            raise AssertionError(f"Invalid device id {index}: the simulated {self.card.name} is device 0 of "
                                 f"{self.DEVICE_COUNT}")
        return index

    def set_device(self, device) -> None:
        self._index(device)

    def get_device_capability(self, device=None) -> tuple[int, int]:
        self._index(device)
        return self.card.capability

    def get_device_name(self, device=None) -> str:
        self._index(device)
        return self.card.name

    def get_device_properties(self, device=None) -> DeviceProperties:
        self._index(device)
        c = self.card
        return DeviceProperties(c.name, c.major, c.minor, c.total_memory, c.multi_processor_count)

    def get_arch_list(self) -> list[str]:
        return [f"sm_{self.card.major}{self.card.minor}"]

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        """Native from compute capability 8.0; a T4 runs bfloat16 by emulation (slowly), as torch reports."""
        return self.card.native_bf16 or bool(including_emulation)

    def current_stream(self, device=None) -> SimulatedStream:
        self._index(device)
        return self._stream

    default_stream = current_stream

    def is_current_stream_capturing(self) -> bool:
        return False  # torch.optim asks before a step: no CUDA graph is ever being captured here

    def empty_cache(self) -> None:
        pass

    def synchronize(self, device=None) -> None:
        self._index(device)

    # -- random numbers: one CPU generator per simulated device -----------------------------------
    def _generator(self, device) -> torch.Generator:
        return self._rng[self._index(device)]

    def manual_seed(self, seed: int) -> None:
        self._generator(None).manual_seed(int(seed))

    def manual_seed_all(self, seed: int) -> None:
        for g in self._rng:
            g.manual_seed(int(seed))

    def seed(self) -> None:
        self._generator(None).seed()

    def seed_all(self) -> None:
        for g in self._rng:
            g.seed()

    def initial_seed(self) -> int:
        return self._generator(None).initial_seed()

    def get_rng_state(self, device="cuda") -> torch.Tensor:
        return self._generator(device).get_state()

    def set_rng_state(self, new_state: torch.Tensor, device="cuda") -> None:
        self._generator(device).set_state(new_state)

    def get_rng_state_all(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self._rng]

    def set_rng_state_all(self, new_states) -> None:
        for g, state in zip(self._rng, new_states):
            g.set_state(state)

    # -- memory: the bytes of the tensors tagged "cuda" that are alive -----------------------------
    def memory_allocated(self, device=None) -> int:
        self._index(device)
        seen, total = set(), 0
        with torch._C.DisableTorchFunction():  # read storages without the accelerator's bookkeeping
            for t in self._live():
                storage = t.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
        self._peak = max(self._peak, total)
        return total

    memory_reserved = memory_allocated  # no caching allocator: what is reserved is what is allocated

    def max_memory_allocated(self, device=None) -> int:
        return max(self._peak, self.memory_allocated(device))

    max_memory_reserved = max_memory_allocated

    def reset_peak_memory_stats(self, device=None) -> None:
        self._peak = 0
        self._peak = self.memory_allocated(device)

    reset_max_memory_allocated = reset_peak_memory_stats

    def mem_get_info(self, device=None) -> tuple[int, int]:
        return self.card.total_memory - self.memory_allocated(device), self.card.total_memory


# -- half-precision matrix products, as tensor cores compute them ----------------------------------------
HALF = (torch.float16, torch.bfloat16)
_F = torch.nn.functional
GEMMS = {  # products that autocast runs in half precision (CPU and CUDA lists alike)
    _F.linear, _F.scaled_dot_product_attention, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__,
    torch.mm, torch.Tensor.mm, torch.bmm, torch.Tensor.bmm, torch.addmm, torch.Tensor.addmm, torch.baddbmm,
    torch.Tensor.baddbmm,
}


def _floats(args, kwargs) -> list[torch.Tensor]:
    flat = [*args, *kwargs.values()]
    return [t for t in flat if isinstance(t, torch.Tensor) and t.is_floating_point()]


def half_gemm(func, args, kwargs):
    """``func(*args, **kwargs)`` for a matrix product (:data:`GEMMS`) whose result is half precision, computed
    in float32 from half-rounded inputs and rounded to half: what a GPU's tensor cores do (fp16/bf16 inputs,
    float32 accumulation). ``NotImplemented`` when the product is not a half one (float32, integer, mixed
    dtypes outside autocast: those run as they are, errors included)."""
    if func not in GEMMS or "out" in kwargs:
        return NotImplemented
    floats = _floats(args, kwargs)
    if not floats:
        return NotImplemented
    if torch.is_autocast_enabled("cpu") and any(t.dtype in (torch.float32, *HALF) for t in floats):
        dtype = torch.get_autocast_dtype("cpu")  # autocast casts the inputs of these ops to its dtype
    elif len({t.dtype for t in floats}) == 1:
        dtype = floats[0].dtype
    else:
        return NotImplemented  # mixed dtypes without autocast: torch's own error
    if dtype not in HALF:
        return NotImplemented

    def widen(x):
        return x.to(dtype).float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x

    with torch.autocast(device_type="cpu", enabled=False):
        out = func(*[widen(a) for a in args], **{k: widen(v) for k, v in kwargs.items()})
    return out.to(dtype)


# -- CUDA autocast's float32 ops (the CPU's autocast leaves these in half precision) ----------------------
_T = torch.Tensor
CUDA_FLOAT32 = {  # torch's autocast_mode.cpp, CUDA: the "fp32" and "fp32_set_opt_dtype" ops people call
    torch.softmax, _T.softmax, _F.softmax, torch.log_softmax, _T.log_softmax, _F.log_softmax,
    torch.exp, _T.exp, torch.log, _T.log, torch.pow, _T.pow, _T.__pow__, torch.rsqrt, _T.rsqrt,
    torch.reciprocal, _T.reciprocal, torch.sum, _T.sum, torch.cumsum, _T.cumsum, torch.prod, _T.prod,
    torch.norm, _T.norm, torch.linalg.vector_norm, torch.logsumexp, _T.logsumexp, _F.normalize,
    _F.layer_norm, _F.group_norm, _F.cosine_similarity, _F.cross_entropy, _F.nll_loss, _F.kl_div, _F.mse_loss,
    _F.l1_loss, _F.smooth_l1_loss, _F.binary_cross_entropy_with_logits,
}


def cuda_autocast_float32(func, args, kwargs):
    """``(args, kwargs)`` with half-precision floating tensors made float32 when ``func`` is one of CUDA
    autocast's float32 ops (:data:`CUDA_FLOAT32`) and autocast is on: the dtype CUDA computes it in.
    Unchanged otherwise (and when the caller chose a ``dtype=``)."""
    if func not in CUDA_FLOAT32 or "dtype" in kwargs or not torch.is_autocast_enabled("cpu"):
        return args, kwargs

    def up(x):
        return x.float() if isinstance(x, torch.Tensor) and x.dtype in HALF else x

    return [up(a) for a in args], {k: up(v) for k, v in kwargs.items()}
