"""Optimizers and learning-rate schedules for prompt tuning.

Prompt tuning trains a few thousand numbers that sit in the embedding space, far from
where a fresh weight matrix would start, so it wants learning rates 100-1000x larger than
fine-tuning. Lester et al. (2021, §3) train with Adafactor at a *constant* learning rate
of 0.3, weight decay 1e-5, β2 decay 0.8 and parameter scaling off: :func:`make_optimizer`
with ``"adafactor"`` reproduces exactly those settings.

The schedule is a pure function of the step (:func:`lr_factor`), the same formulas as
``transformers.get_{constant,linear,cosine}_schedule_with_warmup``. Training sets each
group's ``lr`` from it before every step, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math
from enum import Enum

import torch
from transformers.optimization import Adafactor

__all__ = ["OptimizerName", "Schedule", "DEFAULT_LR", "DEFAULT_WEIGHT_DECAY", "make_optimizer", "lr_factor"]


class OptimizerName(str, Enum):
    ADAMW = "adamw"
    ADAFACTOR = "adafactor"


class Schedule(str, Enum):
    CONSTANT = "constant"  # warmup (if any), then flat
    LINEAR = "linear"  # warmup, then linear decay to 0 at the last step
    COSINE = "cosine"  # warmup, then half a cosine down to 0


# Prompt tuning needs large learning rates. Adafactor: Lester et al. §3. AdamW: what trains
# SmolLM2-135M prompts in 30-60 steps on the built-in tasks (see tests/notebooks).
DEFAULT_LR = {OptimizerName.ADAMW: 3e-2, OptimizerName.ADAFACTOR: 0.3}
DEFAULT_WEIGHT_DECAY = {OptimizerName.ADAMW: 0.0, OptimizerName.ADAFACTOR: 1e-5}


def make_optimizer(params, name: str | OptimizerName, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``params``.

    ``"adafactor"`` is Lester et al. §3: no relative step, no parameter scaling,
    β2 decay 0.8 (``decay_rate=-0.8``: β2ₜ = 1 - t^-0.8), no first moment, update clipping 1.0.
    """
    name = OptimizerName(name)
    params = list(params)
    if name is OptimizerName.ADAMW:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return Adafactor(
        params, lr=lr, weight_decay=weight_decay, decay_rate=-0.8, beta1=None, clip_threshold=1.0,
        scale_parameter=False, relative_step=False, warmup_init=False,
    )


def lr_factor(step: int, *, schedule: str | Schedule, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base learning rate for the optimizer step with 0-based index ``step``.

    Identical to Hugging Face's ``LambdaLR`` schedules: warmup rises linearly from 0
    (so with ``warmup_steps=0`` the first step already uses the full rate).
    """
    schedule = Schedule(schedule)
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if schedule is Schedule.CONSTANT:
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule is Schedule.LINEAR:
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
