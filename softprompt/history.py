"""What happened during training: :class:`History`, the ``(step, value)`` record :func:`softprompt.train` returns.

Loss, learning rate and gradient norm per optimizer step, and the validation metrics of each
evaluation; it round-trips through JSON (checkpoints keep it) and plots itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["History"]


@dataclass
class History:
    """What happened during training: ``(step, value)`` pairs, ready to plot."""

    loss: list[tuple[int, float]] = field(default_factory=list)
    lr: list[tuple[int, float]] = field(default_factory=list)
    grad_norm: list[tuple[int, float]] = field(default_factory=list)
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # validation results
    stop_reason: str | None = None  # why training ended early (a callback, a NaN loss), or None

    @property
    def steps(self) -> int:
        """Optimizer steps taken."""
        return self.loss[-1][0] if self.loss else 0

    def metric(self, name: str = "accuracy") -> list[tuple[int, float]]:
        """``(step, value)`` of one metric across evaluations."""
        return [(s, m[name]) for s, m in self.metrics if name in m]

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "lr": self.lr, "grad_norm": self.grad_norm, "metrics": self.metrics,
                "stop_reason": self.stop_reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        pairs = lambda xs: [(int(s), v) for s, v in xs]  # noqa: E731  (JSON turns tuples into lists)
        return cls(loss=pairs(d["loss"]), lr=pairs(d["lr"]), grad_norm=pairs(d.get("grad_norm", [])),
                   metrics=pairs(d["metrics"]), stop_reason=d.get("stop_reason"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def plot(self, metric: str = "accuracy", smooth: int = 1):
        """A matplotlib Figure: training loss (left axis) and validation ``metric`` (right axis).

        ``smooth`` > 1 also draws a running mean over that many steps.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 3.5))
        ax = fig.add_subplot()
        if self.loss:
            steps, values = zip(*self.loss)
            ax.plot(steps, values, color="tab:blue", alpha=0.4 if smooth > 1 else 1.0, label="train loss")
            if smooth > 1 and len(values) >= smooth:
                run = [sum(values[i - smooth + 1:i + 1]) / smooth for i in range(smooth - 1, len(values))]
                ax.plot(steps[smooth - 1:], run, color="tab:blue", label=f"train loss ({smooth}-step mean)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss", color="tab:blue")
        points = self.metric(metric)
        if points:
            ax2 = ax.twinx()
            ax2.plot(*zip(*points), "o-", color="tab:orange", label=f"validation {metric}")
            ax2.set_ylabel(f"validation {metric}", color="tab:orange")
            ax2.set_ylim(0, 1.02)
        ax.set_title("Prompt tuning")
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        if not self.loss:
            return "History(no steps)"
        parts = [f"steps={self.steps}", f"loss {self.loss[0][1]:.3f} -> {self.loss[-1][1]:.3f}"]
        acc = self.metric("accuracy")
        if acc:
            parts.append(f"accuracy {acc[0][1]:.3f} -> {acc[-1][1]:.3f}")
        if self.stop_reason:
            parts.append(f"stopped: {self.stop_reason}")
        return f"History({', '.join(parts)})"
