"""Run profiles: the same notebook cells on a laptop CPU or on a GPU runtime.

A notebook's ``parameters`` cell calls :func:`pick_profile`. The profile swaps the model,
the data and the number of steps, never the code:

* ``cpu``: the offline SmolLM2-135M-Instruct, the built-in generated tasks, few steps:
  what CI runs, a few minutes per notebook on two cores.
* ``gpu``: a larger hub model, hub datasets and settings closer to the papers'.

The choice is automatic (a CUDA device means ``gpu``) and can be overridden by passing a
name or setting ``SOFTPROMPT_PROFILE=cpu|gpu``. Two more variables let CI run the ``gpu``
profile's code path on a CPU with stand-ins (``tests/test_gpu_profile_notebooks.py``):

* ``SOFTPROMPT_MODEL=<preset, hub id or directory>`` replaces the profile's model;
* ``SOFTPROMPT_DATA_DIR=<folder>`` makes :func:`softprompt.load_task` read hub tasks from local
  copies, one subfolder per task (``<folder>/sst2/train.parquet`` ...), instead of the hub;
* ``SOFTPROMPT_STEP_SCALE=<factor in (0, 1]>`` shortens every training run (the profile's ``steps``
  and each notebook knob named ``*steps`` or ``*every``), e.g. ``0.1`` for a quick check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import torch

from .models import DEFAULT_MODEL, ModelLoadError, load_model
from .precision import check_dtype, resolve_dtype
from .tasks import load_task
from .tasks.hub import HubDatasetError

__all__ = ["PROFILES", "Profile", "pick_profile"]


@dataclass(frozen=True)
class Profile:
    """Knobs that differ between a CPU classroom run and a GPU run."""

    name: str
    model: str  # a preset name or hub id for softprompt.load_model
    device: str
    tasks: dict[str, str] = field(default_factory=dict)  # role -> task name for softprompt.load_task
    steps: int = 40  # optimizer steps for a main training run
    batch_size: int = 8
    num_virtual_tokens: int = 8
    eval_examples: int | None = 128  # None = the whole split
    dtype: str = "float32"  # model weights: float32, bfloat16, float16, or "auto" (bf16 where supported, else fp16)
    max_length: int | None = None  # prompt + text + label tokens per row in training and evaluation; None: no cap
    grad_accum_steps: int = 1  # an optimizer step's batch_size rows run as this many micro-batches (memory)
    eval_batch_size: int = 32  # rows per evaluation forward
    notebooks: dict[str, dict] = field(default_factory=dict)  # notebook number -> its own knobs (see knobs())

    def __post_init__(self):
        if self.steps <= 0 or self.batch_size <= 0 or self.num_virtual_tokens <= 0:
            raise ValueError(f"Profile {self.name!r}: steps, batch_size and num_virtual_tokens must be positive.")
        check_dtype(self.dtype, f"Profile {self.name!r}: dtype")
        for knob in ("grad_accum_steps", "eval_batch_size", "max_length"):
            value = getattr(self, knob)
            if (value is not None or knob != "max_length") and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"Profile {self.name!r}: {knob}={value!r} must be a positive int"
                                 f"{' or None (no cap)' if knob == 'max_length' else ''}.")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(f"Profile {self.name!r}: grad_accum_steps={self.grad_accum_steps} must divide "
                             f"batch_size={self.batch_size} (each step's rows run as that many equal micro-batches).")

    def torch_dtype(self, device: str | torch.device | None = None) -> torch.dtype:
        """``dtype`` as a ``torch.dtype`` on ``device`` (default: this profile's, when CUDA is there, else the CPU).

        ``"auto"``: bfloat16 on a GPU with native bfloat16 (A100, H100, L4), float16 on other GPUs (T4),
        float32 on a CPU (a GPU profile run on a CPU-only machine too): :func:`softprompt.precision.resolve_dtype`.
        """
        return resolve_dtype(self.dtype, self.device if device is None else device)

    def load_model(self):
        """``(model, tokenizer)``: this profile's model in its dtype on its device, in eval mode.

        Where it cannot be loaded (a hub model on a machine without the hub, say), it says why in one line and loads
        the offline default instead, so a notebook's set-up is one call on every runtime.
        """
        try:
            model, tokenizer = load_model(self.model, dtype=self.dtype, device=self.device)
        except ModelLoadError as err:
            print(f"Could not load {self.model!r} ({str(err).splitlines()[0]}); using the offline default "
                  f"{DEFAULT_MODEL!r} instead.")
            model, tokenizer = load_model(DEFAULT_MODEL, dtype=self.dtype, device=self.device)
        return model.eval(), tokenizer

    def load_task(self, role: str, fallback: str = "sentiment_movies"):
        """The task this profile names for ``role`` (``"main"``, ...; a task name also works), or, where that cannot
        be loaded (a hub dataset without the hub), the built-in ``fallback``, with one line saying why."""
        name = self.tasks.get(role, role)
        try:
            return load_task(name)
        except (HubDatasetError, OSError) as err:  # the hub or its data out of reach (a misspelt name still raises)
            print(f"Could not load task {name!r} ({type(err).__name__}: {(str(err) or '?').splitlines()[0]}); "
                  f"using the built-in {fallback!r} instead.")
            return load_task(fallback)

    def knobs(self, notebook: str) -> dict:
        """The knobs of one notebook (``"02"``) under this profile: steps, sizes, task lists.

        They live here, not in the notebooks, so that ``benchmarks/gpu_budget.py`` can check a
        profile's cost before any GPU is used.
        """
        if notebook not in self.notebooks:
            raise KeyError(f"profile {self.name!r} has no knobs for notebook {notebook!r}; "
                           f"known: {sorted(self.notebooks)}")
        return dict(self.notebooks[notebook])

    def with_(self, **changes) -> Profile:
        """A copy with some knobs changed, e.g. ``profile.with_(steps=10)``."""
        return replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "cpu": Profile(
        name="cpu",
        model="smollm2-135m-instruct",
        device="cpu",
        tasks={"main": "sentiment_movies", "target": "sentiment_restaurants"},
        steps=40,
        batch_size=8,
        num_virtual_tokens=8,
        eval_examples=128,
        dtype="float32",
        max_length=None,
        notebooks={
            "02": dict(ablation_steps=10, lengths=[2, 20], length_seeds=[0, 1, 2], eval_every=20, eval_examples=64),
            "03": dict(steps=40, wayward_steps=100, every=5, lr=0.1),
            # 05: three of benchmarks/bench_mpt_transfer.py's yes/no sources and its main target
            "05": dict(sources=["yn_membership", "yn_colors", "entailment"], target="yn_facts",
                       teacher_steps=20, distill_steps=30, target_steps=15, target_examples=32,
                       eval_examples=64, max_length=64),
            "04": dict(tasks={"movies": "sentiment_movies", "emotion": "emotion", "formality": "formality"},
                       steps=15, ensemble_seeds=[0, 1, 2], mixed_examples=48, timing_examples=32,
                       timing_repeats=2),
            "02_solutions": dict(steps=8, gen_examples=16),
            "03_solutions": dict(steps=12, every=4),
            "04_solutions": dict(tasks={"movies": "sentiment_movies", "emotion": "emotion", "formality": "formality",
                                        "topic": "topic"}, examples=32, timing_examples=16),
        },
    ),
    "gpu": Profile(
        name="gpu",
        model="smollm2-360m-instruct",
        device="cuda",
        tasks={"main": "sst2", "target": "rotten_tomatoes"},
        steps=300,
        batch_size=32,
        num_virtual_tokens=20,
        eval_examples=None,
        dtype="auto",
        max_length=256,
        notebooks={
            "02": dict(ablation_steps=100, lengths=[5, 50, 100], length_seeds=[0, 1, 2], eval_every=50,
                       eval_examples=1000),
            "03": dict(steps=300, wayward_steps=300, every=25, lr=0.1),
            "05": dict(sources=["mnli", "qnli", "qqp", "sst2"], target="boolq",
                       teacher_steps=150, distill_steps=150, target_steps=40, target_examples=32,
                       eval_examples=500, max_length=192),
            "04": dict(tasks={"sst2": "sst2", "news": "ag_news", "qnli": "qnli"},
                       steps=200, ensemble_seeds=[0, 1, 2, 3, 4], mixed_examples=500, timing_examples=1024,
                       timing_repeats=3),
            "02_solutions": dict(steps=100, gen_examples=256),
            "03_solutions": dict(steps=100, every=25),
            "04_solutions": dict(tasks={"sst2": "sst2", "news": "ag_news", "qnli": "qnli", "boolq": "boolq"},
                                 examples=512, timing_examples=512),
        },
    ),
}


def pick_profile(name: str | None = None) -> Profile:
    """``name``, else ``$SOFTPROMPT_PROFILE``, else ``gpu`` when CUDA is available, else ``cpu``.

    ``$SOFTPROMPT_MODEL``, when set, replaces the profile's model (a stand-in for CI, or your own).
    """
    name = name or os.environ.get("SOFTPROMPT_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; choose one of {sorted(PROFILES)} (or unset SOFTPROMPT_PROFILE).")
    profile = PROFILES[name]
    model = os.environ.get("SOFTPROMPT_MODEL", "").strip()
    if model:
        profile = profile.with_(model=model)
    scale = os.environ.get("SOFTPROMPT_STEP_SCALE", "").strip()
    return _scaled(profile, scale) if scale else profile


def _scaled(profile: Profile, scale: str) -> Profile:
    """``profile`` with every step count and every interval (``*steps``, ``*every``) times ``scale``."""
    try:
        factor = float(scale)
    except ValueError:
        factor = float("nan")
    if not 0 < factor <= 1:
        raise ValueError(f"SOFTPROMPT_STEP_SCALE={scale!r}: use a number in (0, 1], e.g. 0.1, or unset it.")

    def fewer(n: int) -> int:
        return max(1, round(n * factor))

    notebooks = {nb: {k: fewer(v) if k.endswith(("steps", "every")) and isinstance(v, int) else v
                      for k, v in knobs.items()} for nb, knobs in profile.notebooks.items()}
    return profile.with_(steps=fewer(profile.steps), notebooks=notebooks)
