"""Progress bars that a saved notebook shows as text: ``progress_bar(...)`` is ``tqdm`` with one change.

``tqdm.auto`` draws an ipywidgets bar in Jupyter; a notebook saved with it shows "0%" on GitHub, because
the widget's state is not in the file. Here, inside a Jupyter kernel, the bar is plain text in one
display output updated in place, so the saved notebook holds the bar's last state
("prompt tuning: 100%|██████████| 40/40 [00:12<00:00, 3.2it/s]"). Outside Jupyter it is ``tqdm`` on stderr.
"""

from __future__ import annotations

from tqdm.std import tqdm

from .live import in_notebook

__all__ = ["progress_bar"]


class _Text:
    """A display object whose only representation is its text (``text/plain``)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _DisplayFile:
    """A file for ``tqdm`` that writes each refresh into one updating display output."""

    encoding = "utf-8"  # tells tqdm it may draw the bar with block characters, as on a terminal

    def __init__(self):
        from IPython.display import display  # only ever built inside a Jupyter kernel

        self.display, self.handle = display, None

    def write(self, s: str) -> None:
        line = s.replace("\r", "").strip("\n")
        if not line.strip():
            return
        if self.handle is None:
            self.handle = self.display(_Text(line), display_id=True)
        else:
            self.handle.update(_Text(line))

    def flush(self) -> None:
        pass


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``; in Jupyter it renders as static text (see the module docstring)."""
    if in_notebook() and not kwargs.get("disable"):
        kwargs.setdefault("file", _DisplayFile())
        kwargs.setdefault("ncols", 90)
        kwargs.setdefault("mininterval", 0.5)
    return tqdm(iterable, **kwargs)
