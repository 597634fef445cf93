"""Watching a prompt move: snapshots during training and what Lester et al. (2021), §7, measure on them.

``PromptSnapshots`` is a training callback. It copies the prompt at the start (step 0), every
``every`` optimizer steps and at the end, so that after training a notebook can ask:

* how far each virtual token travelled from its initial vector (``distance_from_init``), and
  whether it still points the same way (``cosine_to_init``);
* where each label word ranks among a virtual token's nearest vocabulary neighbours, step by step
  (``label_ranks``), and whether the class labels are among the top ``k`` (``labels_in_neighbors``).
  Lester et al. found that prompts initialized from class labels keep them as neighbours;
* how many virtual tokens share their nearest neighbour with another one (``shared_nearest``), which
  Lester et al. saw in long prompts and read as excess capacity.

    snaps = PromptSnapshots(every=10)
    train(prompt_model, tokenizer, task, callbacks=[snaps])
    snaps.summary(tokenizer, label_words=task.label_words)
"""

from __future__ import annotations

import html
import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .atomic import atomic_save_safetensors
from .callbacks import Callback, TrainState
from .neighbors import (
    NeighborTable,
    _metric,
    closeness,
    embedding_matrix,
    label_token_ids,
    nearest_tokens,
    prompt_matrix,
    scores_against_vocab,
    token_ranks,
)
from .task_ids import check_task_id

__all__ = ["PromptSnapshots", "MetricTable"]


class MetricTable:
    """A small table of numbers with a readable text form and an HTML form (no pandas needed)."""

    def __init__(self, columns: list[str], rows: list[list], title: str = ""):
        self.columns, self.rows, self.title = list(columns), [list(r) for r in rows], title

    def to_rows(self) -> list[dict]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    @staticmethod
    def _fmt(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    def __repr__(self) -> str:
        cells = [self.columns] + [[self._fmt(v) for v in r] for r in self.rows]
        widths = [max(len(row[c]) for row in cells) for c in range(len(self.columns))]
        lines = [self.title] if self.title else []
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(self._fmt(v))}</td>" for v in r) + "</tr>" for r in self.rows
        )
        title = f"<p><b>{html.escape(self.title)}</b></p>" if self.title else ""
        return f"<div>{title}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


class PromptSnapshots(Callback):
    """Record the prompt during training: at the start, every ``every`` steps and at the end.

    Args:
        every: record after every ``every``-th optimizer step (``state.step % every == 0``).
        task_id: for an MPT prompt, the task whose prompt ``P* ⊙ (u_k v_kᵀ)`` to record (default 0).
        word_embeddings: the vocabulary embeddings for the metrics; taken from the ``PromptModel`` when omitted.

    Each snapshot is a float32 CPU copy ``(T, d)``; ``steps[i]`` is the optimizer step it was taken
    after. The prompt model's word embeddings are remembered (a reference, not a copy) so the
    metrics below need only a tokenizer.
    """

    def __init__(self, every: int = 10, task_id: int | None = None, word_embeddings=None):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be a positive int: record the prompt every N optimizer steps.")
        self.every = every
        self.task_id = None if task_id is None else check_task_id(task_id)  # its range: prompt_matrix checks it
        self.steps: list[int] = []
        self._prompts: list[torch.Tensor] = []
        self.word_embeddings = None if word_embeddings is None else embedding_matrix(word_embeddings)

    # -- recording ---------------------------------------------------------------------------

    def record(self, prompt, step: int) -> None:
        """Add one snapshot by hand: ``prompt`` in any form :func:`~softprompt.neighbors.nearest_tokens` takes."""
        task_id = self.task_id
        if task_id is None and getattr(prompt, "needs_task_ids", False):  # a PromptModel's property or an encoder's
            task_id = 0
        p = prompt_matrix(prompt, task_id).clone()  # (T, d)
        if self._prompts and p.shape != self._prompts[0].shape:
            first = tuple(self._prompts[0].shape)
            raise ValueError(f"snapshot of shape {tuple(p.shape)} differs from the first {first}; record one prompt.")
        if self.steps and self.steps[-1] == step:  # same step twice (e.g. end right after a recorded step)
            self._prompts[-1] = p
            return
        self.steps.append(int(step))
        self._prompts.append(p)
        if self.word_embeddings is None and hasattr(prompt, "word_embeddings"):
            self.word_embeddings = prompt.word_embeddings.weight.detach()

    def on_train_begin(self, state: TrainState) -> None:
        self.record(state.prompt_model, state.step)

    def on_step(self, state: TrainState) -> None:
        if state.step % self.every == 0:
            self.record(state.prompt_model, state.step)

    def on_train_end(self, state: TrainState) -> None:
        self.record(state.prompt_model, state.step)

    # -- access ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return self.steps[i], self._prompts[i]

    @property
    def prompts(self) -> torch.Tensor:
        """All snapshots stacked: ``(S, T, d)``."""
        if not self._prompts:
            raise ValueError("no snapshots yet: pass this callback to train(..., callbacks=[snaps]) or call record().")
        return torch.stack(self._prompts)

    def __repr__(self) -> str:
        if not self.steps:
            return f"PromptSnapshots(every={self.every}, empty)"
        t, d = self._prompts[0].shape
        return f"PromptSnapshots(every={self.every}, {len(self)} snapshots of {t}×{d}, steps {self.steps})"

    def _emb(self, word_embeddings) -> torch.Tensor:
        if word_embeddings is not None:
            return embedding_matrix(word_embeddings)
        if self.word_embeddings is None:
            raise ValueError("these snapshots do not know the word embeddings; pass word_embeddings=model.")
        return embedding_matrix(self.word_embeddings)

    # -- movement ----------------------------------------------------------------------------

    def distance_from_init(self) -> torch.Tensor:
        """``‖p_t(s) − p_t(0)‖`` for each snapshot ``s`` and virtual token ``t``: ``(S, T)``."""
        p = self.prompts  # (S, T, d)
        return (p - p[:1]).norm(dim=-1)  # (S, T)

    def cosine_to_init(self, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine between each virtual token and its initial vector: ``(S, T)``.

        ``reference`` ``(T, d)`` replaces the first snapshot, e.g. ``E[init_ids]``, the embeddings of the
        tokens a text-initialized prompt started from.
        """
        p = self.prompts  # (S, T, d)
        ref = p[0] if reference is None else reference.detach().to("cpu", torch.float32)  # (T, d)
        if ref.shape != p.shape[1:]:
            raise ValueError(f"reference has shape {tuple(ref.shape)}; expected {tuple(p.shape[1:])} (T, d).")
        return torch.nn.functional.cosine_similarity(p, ref[None], dim=-1)  # (S, T)

    def norms(self) -> torch.Tensor:
        """``‖p_t(s)‖``: ``(S, T)``."""
        return self.prompts.norm(dim=-1)

    # -- neighbours (Lester et al. §7) -------------------------------------------------------

    def neighbors(self, i: int, tokenizer, k: int = 5, metric: str = "cosine", *, word_embeddings=None,
                  **filters) -> NeighborTable:
        """The nearest-token table of snapshot ``i`` (negative ``i`` counts from the end)."""
        table = nearest_tokens(self._prompts[i], self._emb(word_embeddings), tokenizer, k=k, metric=metric, **filters)
        table.title = f"step {self.steps[i]}"
        return table

    def _scores(self, word_embeddings, metric) -> list[torch.Tensor]:
        e = self._emb(word_embeddings)
        return [scores_against_vocab(p, e, metric) for p in self._prompts]  # S × (T, V)

    def label_ranks(self, tokenizer, label_words, metric: str = "cosine", *, word_embeddings=None) -> dict:
        """Rank of each label word among each virtual token's neighbours, per snapshot: ``{word: (S, T)}``.

        Rank 1 means the label word is the nearest vocabulary token. Words are looked up as they
        appear in a target (``" " + word``, first piece); ints are taken as token ids.
        """
        ids = label_token_ids(tokenizer, label_words)
        ranks = torch.stack([token_ranks(s, ids, metric) for s in self._scores(word_embeddings, metric)])  # (S, T, n)
        return {w: ranks[..., j] for j, w in enumerate(label_words)}

    def labels_in_neighbors(self, tokenizer, label_words, k: int = 5, metric: str = "cosine", *,
                            word_embeddings=None) -> torch.Tensor:
        """``(S, T)`` bool: is any class label among the ``k`` nearest tokens of virtual token ``t`` at step ``s``?"""
        ranks = self.label_ranks(tokenizer, label_words, metric, word_embeddings=word_embeddings)
        return torch.stack([r <= k for r in ranks.values()]).any(0)

    def nearest_ids(self, metric: str = "cosine", *, word_embeddings=None) -> torch.Tensor:
        """The nearest vocabulary id of every virtual token, per snapshot: ``(S, T)``."""
        return torch.stack([closeness(s, metric).argmax(-1) for s in self._scores(word_embeddings, metric)])

    def shared_nearest(self, metric: str = "cosine", *, word_embeddings=None) -> torch.Tensor:
        """``(S,)``: how many virtual tokens share their nearest neighbour with at least one other virtual token."""
        counts = []
        for row in self.nearest_ids(metric, word_embeddings=word_embeddings):  # (T,)
            _, inverse, n = row.unique(return_inverse=True, return_counts=True)
            counts.append(int((n[inverse] > 1).sum()))
        return torch.tensor(counts)

    def summary(self, tokenizer=None, label_words=None, k: int = 5, metric: str = "cosine", *,
                word_embeddings=None) -> MetricTable:
        """One row per snapshot: mean drift, mean cosine to init, shared nearest neighbours and,
        with ``label_words``, how many virtual tokens have a class label among their top ``k``."""
        _metric(metric)
        columns = ["step", "mean ‖p−p0‖", "mean cos(p,p0)", "shared nearest"]
        cols = [self.steps, self.distance_from_init().mean(1).tolist(), self.cosine_to_init().mean(1).tolist(),
                self.shared_nearest(metric, word_embeddings=word_embeddings).tolist()]
        if label_words:
            if tokenizer is None:
                raise ValueError("label_words need the tokenizer to find their ids; pass tokenizer=...")
            hits = self.labels_in_neighbors(tokenizer, label_words, k, metric, word_embeddings=word_embeddings)
            columns.append(f"tokens with a label in top-{k}")
            cols.append(hits.sum(1).tolist())
        rows = [list(r) for r in zip(*cols)]
        return MetricTable(columns, rows, title=f"{len(self)} prompt snapshots ({metric})")

    # -- files -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the snapshots to one ``.safetensors`` file (atomically; steps go in the metadata)."""
        meta = {"steps": json.dumps(self.steps), "every": str(self.every),
                "task_id": json.dumps(self.task_id)}
        atomic_save_safetensors(path, {"prompts": self.prompts}, metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PromptSnapshots:
        """Read snapshots written by :meth:`save` (pass ``word_embeddings=`` to the metrics afterwards)."""
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "steps" not in meta:
            raise ValueError(f"{path} is not a PromptSnapshots file (no 'steps' metadata); write it with save().")
        snaps = cls(every=int(meta.get("every", 1)), task_id=json.loads(meta.get("task_id", "null")))
        snaps.steps = json.loads(meta["steps"])
        snaps._prompts = list(load_file(str(path))["prompts"].unbind(0))
        return snaps
