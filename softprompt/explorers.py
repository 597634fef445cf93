"""Interactive explorers for learned prompts (ipywidgets), with a static picture where widgets cannot run.

* :class:`PromptExplorer`: a slider over training snapshots and a selector over virtual tokens; it
  shows the nearest-token table (Lester et al. 2021, §7) and the prompt in the vocabulary's PCA plane,
  with the path each token took up to the chosen step.
* :class:`TaskExplorer`: the same for a multitask (MPT) prompt, with a task selector: task ``k``'s
  prompt is ``P* ⊙ (u_k v_kᵀ)`` (Wang et al. 2023, §3).

An explorer is displayed by ending a cell with it. Its display bundle holds the live widget view
*and* a PNG of the current state and a one-line text: JupyterLab, Notebook 7 and VS Code show the
widget; a static HTML export (nbconvert drops widget views that have no saved state), GitHub and
nbval see the picture and the text instead of an empty box. ``explorer.widget`` is the widget
itself, ``explorer.figure()`` and ``explorer.table()`` the current state.
"""

from __future__ import annotations

import base64
import io

import ipywidgets as widgets
import torch

from .figures import pca_paths
from .neighbors import NeighborTable, nearest_tokens, prompt_matrix
from .snapshots import PromptSnapshots

__all__ = ["PromptExplorer", "TaskExplorer"]

_ALL = -1  # the token selector's "all virtual tokens" value


def _png(fig, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


class _Explorer:
    """Shared machinery: controls -> (table, figure), a PNG cache, and the display bundle."""

    def __init__(self, tokenizer, *, k, metric, highlight_words, n_vocab, seed, skip_special, words_only):
        self.tokenizer = tokenizer
        self.k, self.metric = k, metric
        self.highlight_words, self.n_vocab, self.seed = tuple(highlight_words), n_vocab, seed
        self.filters = {"skip_special": skip_special, "words_only": words_only}
        self._tables: dict = {}
        self._pngs: dict = {}
        self.table_view = widgets.HTML()
        self.image_view = widgets.Image(format="png", layout=widgets.Layout(max_width="560px"))

    def _build(self, controls: list, num_tokens: int) -> None:
        options = [("all", _ALL)] + [(f"v{t}", t) for t in range(num_tokens)]
        self.token_selector = widgets.Dropdown(options=options, value=_ALL, description="token")
        self.widget = widgets.VBox([
            widgets.HBox(controls + [self.token_selector]),
            widgets.HBox([self.table_view, self.image_view]),
        ])
        self.widget.add_class("softprompt-explorer")  # CSS classes: a browser test finds each part by its class
        for c in controls + [self.token_selector]:
            c.observe(self._update, names="value")
            c.add_class(f"softprompt-{c.description}")  # softprompt-step, softprompt-task, softprompt-token
        self.table_view.add_class("softprompt-table")
        self.image_view.add_class("softprompt-image")
        self._update()

    # subclasses: the state key, the full table of a state, the figure of a state, a description
    def _key(self):
        raise NotImplementedError

    def _full_table(self, key) -> NeighborTable:
        raise NotImplementedError

    def _draw(self, key, emphasize):
        raise NotImplementedError

    def _describe(self) -> str:
        raise NotImplementedError

    @property
    def token(self) -> int | None:
        """The selected virtual token, or None for all."""
        v = self.token_selector.value
        return None if v == _ALL else v

    def table(self) -> NeighborTable:
        """The nearest-token table of the current state (one row when a token is selected)."""
        key = self._key()
        if key not in self._tables:
            self._tables[key] = self._full_table(key)
        full = self._tables[key]
        return full if self.token is None else full.select([self.token])

    def figure(self):
        """The PCA picture of the current state, as a matplotlib Figure."""
        return self._draw(self._key(), self.token)

    def png(self) -> bytes:
        """The current figure as PNG bytes (cached per state)."""
        key = (self._key(), self.token)
        if key not in self._pngs:
            self._pngs[key] = _png(self.figure())
        return self._pngs[key]

    def _update(self, change=None) -> None:
        self.table_view.value = self.table()._repr_html_()
        self.image_view.value = self.png()

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = dict(self.widget._repr_mimebundle_() or {})
        data["image/png"] = base64.b64encode(self.png()).decode("ascii")
        data["text/plain"] = self._describe()
        return data

    def __repr__(self) -> str:
        return self._describe()


class PromptExplorer(_Explorer):
    """Browse a prompt's training snapshots: neighbours and PCA position per step and per virtual token.

    Args:
        snapshots: a :class:`~softprompt.PromptSnapshots` (or one prompt in any form ``nearest_tokens`` takes).
        tokenizer: names the neighbours.
        word_embeddings: the vocabulary embeddings; default: the ones the snapshots remembered.
        k, metric, skip_special, words_only: as in :func:`~softprompt.nearest_tokens`.
        highlight_words: words to mark in the PCA plane (e.g. the task's label words).
        n_vocab, seed: size and seed of the vocabulary sample the PCA is fitted on.
    """

    def __init__(self, snapshots, tokenizer, *, word_embeddings=None, k: int = 5, metric: str = "cosine",
                 highlight_words=(), n_vocab: int = 1000, seed: int = 0, skip_special: bool = False,
                 words_only: bool = False):
        super().__init__(tokenizer, k=k, metric=metric, highlight_words=highlight_words, n_vocab=n_vocab,
                         seed=seed, skip_special=skip_special, words_only=words_only)
        if not isinstance(snapshots, PromptSnapshots):
            one = PromptSnapshots(word_embeddings=word_embeddings)
            one.record(snapshots, step=0)
            snapshots = one
        if len(snapshots) == 0:
            raise ValueError("the snapshots are empty: train with callbacks=[snapshots] first, or call record().")
        self.snapshots = snapshots
        self.word_embeddings = snapshots._emb(word_embeddings)  # (V, d); clear error when unknown
        steps = snapshots.steps
        self.step_slider = widgets.SelectionSlider(
            options=[(str(s), i) for i, s in enumerate(steps)], value=len(steps) - 1, description="step",
            continuous_update=False,
        )
        self._build([self.step_slider], snapshots.prompts.shape[1])

    def _key(self):
        return self.step_slider.value  # the snapshot index

    def _full_table(self, key) -> NeighborTable:
        return self.snapshots.neighbors(key, self.tokenizer, self.k, self.metric,
                                        word_embeddings=self.word_embeddings, **self.filters)

    def _draw(self, key, emphasize):
        return pca_paths(self.snapshots, self.word_embeddings, self.tokenizer, highlight_words=self.highlight_words,
                         n_vocab=self.n_vocab, seed=self.seed, upto=key, emphasize=emphasize)

    def _describe(self) -> str:
        i = self._key()
        step = self.snapshots.steps[i]
        head = f"PromptExplorer: step {step} (snapshot {i + 1} of {len(self.snapshots)})"
        table = self.table()
        if self.token is None:
            return f"{head}, {len(table)} virtual tokens; nearest: {' '.join(r[0] for r in table.pieces)}"
        return f"{head}, virtual token v{self.token}: {' '.join(table.tokens(0))}"


class TaskExplorer(_Explorer):
    """Browse the task prompts of a multitask (MPT) ``PromptModel``: pick a task, then a virtual token.

    Task ``k``'s prompt is ``P* ⊙ (u_k v_kᵀ)`` (Wang et al. 2023, §3). ``task_names`` labels the
    selector (default ``task 0``, ``task 1``, ...). Other arguments as in :class:`PromptExplorer`.
    """

    def __init__(self, prompt_model, tokenizer, *, task_names=None, k: int = 5, metric: str = "cosine",
                 highlight_words=(), n_vocab: int = 1000, seed: int = 0, skip_special: bool = False,
                 words_only: bool = False):
        super().__init__(tokenizer, k=k, metric=metric, highlight_words=highlight_words, n_vocab=n_vocab,
                         seed=seed, skip_special=skip_special, words_only=words_only)
        if not getattr(prompt_model, "needs_task_ids", False):  # PromptModel.needs_task_ids
            raise ValueError("TaskExplorer is for multitask (MPT) prompts; for a single prompt use PromptExplorer.")
        num_tasks = int(getattr(prompt_model.prompt_encoder, "num_tasks", None) or prompt_model.prompt_config.num_tasks)
        names = list(task_names) if task_names is not None else [f"task {i}" for i in range(num_tasks)]
        if len(names) != num_tasks:
            raise ValueError(f"task_names has {len(names)} names for {num_tasks} tasks; give one name per task.")
        self.prompt_model = prompt_model
        self.task_names = names
        self.word_embeddings = prompt_model.word_embeddings.weight.detach()
        # every task prompt, computed once: (K, T, d)
        self.task_prompts = torch.stack([prompt_matrix(prompt_model, k) for k in range(num_tasks)])
        self.task_selector = widgets.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0,
                                              description="task")
        self._build([self.task_selector], self.task_prompts.shape[1])

    def _key(self):
        return self.task_selector.value

    def _full_table(self, key) -> NeighborTable:
        table = nearest_tokens(self.task_prompts[key], self.word_embeddings, self.tokenizer, self.k, self.metric,
                               **self.filters)
        table.title = self.task_names[key]
        return table

    def _draw(self, key, emphasize):
        fig = pca_paths(self.task_prompts[key], self.word_embeddings, self.tokenizer,
                        highlight_words=self.highlight_words, n_vocab=self.n_vocab, seed=self.seed,
                        emphasize=emphasize)
        fig.axes[0].set_title(f"{self.task_names[key]}: prompt tokens in the vocabulary's PCA plane")
        return fig

    def _describe(self) -> str:
        name = self.task_names[self._key()]
        table = self.table()
        if self.token is None:
            return f"TaskExplorer: {name}, {len(table)} virtual tokens; nearest: {' '.join(r[0] for r in table.pieces)}"
        return f"TaskExplorer: {name}, virtual token v{self.token}: {' '.join(table.tokens(0))}"
