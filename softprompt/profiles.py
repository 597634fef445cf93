"""Run profiles: the same notebook cells on a laptop CPU or on a GPU runtime.

A notebook's ``parameters`` cell calls :func:`pick_profile`. The profile swaps the model,
the data and the number of steps, never the code:

* ``cpu``: the offline SmolLM2-135M-Instruct, the built-in generated tasks, few steps:
  what CI runs, a few minutes per notebook on two cores.
* ``gpu``: a larger hub model, hub datasets and settings closer to the papers'.

The choice is automatic (a CUDA device means ``gpu``) and can be overridden by passing a
name or setting ``SOFTPROMPT_PROFILE=cpu|gpu``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import torch

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

    def __post_init__(self):
        if self.steps <= 0 or self.batch_size <= 0 or self.num_virtual_tokens <= 0:
            raise ValueError(f"Profile {self.name!r}: steps, batch_size and num_virtual_tokens must be positive.")

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
    ),
}


def pick_profile(name: str | None = None) -> Profile:
    """``name``, else ``$SOFTPROMPT_PROFILE``, else ``gpu`` when CUDA is available, else ``cpu``."""
    name = name or os.environ.get("SOFTPROMPT_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}; choose one of {sorted(PROFILES)} (or unset SOFTPROMPT_PROFILE).")
    return PROFILES[name]
