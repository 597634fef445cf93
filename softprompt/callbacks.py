"""Training callbacks: how a notebook watches a prompt learn.

``softprompt.train`` calls each callback at three moments. A callback can draw a live
curve, snapshot the prompt (``softprompt.PromptSnapshots``) or stop training early by
setting ``state.should_stop = True``.

    class PrintLoss(Callback):
        def on_step(self, state):
            if state.step % 10 == 0:
                print(state.step, state.loss)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Callback", "TrainState"]


@dataclass
class TrainState:
    """What a callback sees. ``step`` counts optimizer steps done so far (1 after the first)."""

    step: int
    max_steps: int
    prompt_model: Any  # softprompt.PromptModel
    loss: float | None = None  # loss of the step just taken
    lr: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # latest evaluation metrics, if any
    history: Any = None  # softprompt.History so far
    should_stop: bool = False


class Callback:
    """Base class: override any of the hooks; each receives the live :class:`TrainState`."""

    def on_train_begin(self, state: TrainState) -> None:
        """Before the first step (``state.step`` is 0, or the resumed step)."""

    def on_step(self, state: TrainState) -> None:
        """After every optimizer step."""

    def on_evaluate(self, state: TrainState) -> None:
        """After each validation pass; ``state.metrics`` holds its results."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last step, also when training stopped early."""
