"""A live training curve for notebooks: ``train(..., callbacks=[LiveLossPlot()])``.

Every few steps the callback redraws :meth:`History.plot` (loss, and validation accuracy
when there is any) in one output area that updates in place. Outside Jupyter it does
nothing, so the same code runs in scripts and in CI.
"""

from __future__ import annotations

import io

from .callbacks import Callback, TrainState

__all__ = ["LiveLossPlot", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where ``IPython.display`` can update an output)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class LiveLossPlot(Callback):
    """Redraw the loss (and validation metric) curve every ``every`` steps, in place.

    Args:
        every: steps between redraws (drawing costs ~0.1 s; keep it a few steps apart).
        metric: which validation metric to draw on the right axis.
        smooth: running-mean window for the loss (1: raw).
        enabled: None (default) draws only inside Jupyter; True/False force it.
    """

    def __init__(self, every: int = 5, metric: str = "accuracy", smooth: int = 1, enabled: bool | None = None):
        if every < 1:
            raise ValueError(f"every={every!r}: must be a positive number of steps.")
        self.every, self.metric, self.smooth = every, metric, smooth
        self.enabled = in_notebook() if enabled is None else enabled
        self._handle = None
        self.draws = 0  # how many times the curve was redrawn

    def _png(self, state: TrainState) -> bytes:
        fig = state.history.plot(metric=self.metric, smooth=self.smooth)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        return buf.getvalue()

    def _draw(self, state: TrainState) -> None:
        if not self.enabled or state.history is None or not state.history.loss:
            return
        from IPython.display import Image, display

        image = Image(data=self._png(state), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)
        self.draws += 1

    def on_train_begin(self, state: TrainState) -> None:
        self._handle = None

    def on_step(self, state: TrainState) -> None:
        if state.step % self.every == 0:
            self._draw(state)

    def on_evaluate(self, state: TrainState) -> None:
        self._draw(state)

    def on_train_end(self, state: TrainState) -> None:
        self._draw(state)
