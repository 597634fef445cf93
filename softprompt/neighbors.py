"""Nearest vocabulary tokens of a soft prompt: what Lester et al. (2021), §7, read off a learned prompt.

A soft prompt is a matrix ``P`` of ``T`` vectors in the model's embedding space (``d`` numbers each).
None of them is a word, but each has neighbours among the vocabulary embeddings ``E`` (``V × d``).
Lester et al. rank the vocabulary by cosine similarity to each prompt vector and look at the top 5:

    cos(p_t, e_v) = p_t · e_v / (‖p_t‖ ‖e_v‖),      neighbours(t) = top-k_v cos(p_t, e_v)

They found tight semantic clusters, class labels that persist when the prompt was initialized from
them, and several prompt tokens sharing the same neighbours. Two other metrics are offered for
comparison: the raw dot product ``p_t · e_v`` (what the output layer of a tied-embedding model
computes) and the Euclidean distance ``‖p_t − e_v‖`` (smaller is nearer).

    table = nearest_tokens(prompt_model, None, tokenizer, k=5)
    table                      # aligned text in a terminal, an HTML table in a notebook
    table.tokens(0)            # ['␣positive', '␣good', ...]   ('␣' marks a leading space)

Reading neighbours as the prompt's "meaning" is tempting and wrong: see :mod:`softprompt.waywardness`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from .label_words import label_word_ids
from .task_ids import task_id_for

__all__ = [
    "Metric", "NeighborTable", "nearest_tokens", "prompt_matrix", "embedding_matrix",
    "scores_against_vocab", "closeness", "token_ranks", "vocab_mask", "display_token", "label_token_ids",
]

_CHUNK = 8192  # vocabulary rows per matmul: bounds the temporary memory for large vocabularies


class Metric(str, Enum):
    """How near a prompt vector is to a vocabulary embedding."""

    COSINE = "cosine"  # Lester et al. §7; higher is nearer
    DOT = "dot"  # unnormalized inner product; higher is nearer
    L2 = "l2"  # Euclidean distance; LOWER is nearer

    @property
    def higher_is_nearer(self) -> bool:
        return self is not Metric.L2


def _metric(metric) -> Metric:
    try:
        return Metric(metric)
    except ValueError:
        raise ValueError(
            f"metric={metric!r} is not supported; use one of {[m.value for m in Metric]} "
            "('cosine' is what Lester et al. 2021 §7 use)."
        ) from None


# --------------------------------------------------------------------------- inputs


def prompt_matrix(prompt, task_id: int | None = None) -> torch.Tensor:
    """The prompt as a float32 CPU matrix ``(T, d)``, whatever form it came in.

    Accepts a tensor ``(T, d)`` or ``(1, T, d)``, a prompt encoder (``PromptEmbedding`` or
    ``MultitaskPromptEmbedding``) or a ``PromptModel``. For an MPT prompt pass ``task_id``: the
    prompt of task ``k`` is ``P* ⊙ (u_k v_kᵀ)`` (Wang et al. 2023, §3), computed by the encoder.
    """
    with torch.no_grad():
        if isinstance(prompt, torch.Tensor):
            if task_id is not None:
                raise ValueError("task_id applies to an MPT encoder or PromptModel, not to a raw tensor; drop it.")
            p = prompt
            if p.dim() == 3:
                if p.shape[0] != 1:
                    raise ValueError(
                        f"prompt has shape {tuple(p.shape)}: a batch of {p.shape[0]} prompts; pass one, e.g. prompt[0]."
                    )
                p = p[0]
            if p.dim() != 2:
                raise ValueError(f"prompt has shape {tuple(p.shape)}; expected (T, d) or (1, T, d).")
        elif hasattr(prompt, "get_prompt") and hasattr(prompt, "prompt_encoder"):  # a PromptModel
            p = _from_prompt_model(prompt, task_id)
        elif isinstance(prompt, nn.Module) and hasattr(prompt, "adapter_tensors"):  # a prompt encoder
            p = _from_encoder(prompt, task_id)
        else:
            raise ValueError(
                f"prompt is a {type(prompt).__name__}; pass a tensor (T, d), a PromptEmbedding, "
                "a MultitaskPromptEmbedding or a PromptModel."
            )
        return p.detach().to("cpu", torch.float32)


def _device_of(module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _from_prompt_model(pm, task_id):
    task_id = task_id_for(pm, task_id)  # an int for an MPT prompt (the task whose prompt to read), else None
    return pm.get_prompt(1, task_ids=task_id)[0]  # (T_total, d)


def _from_encoder(encoder, task_id):
    task_id = task_id_for(encoder, task_id)  # an int for an MPT encoder, else None
    if task_id is not None:
        t_total = encoder.adapter_tensors()["prompt_embeddings"].shape[0]
        dev = _device_of(encoder)
        indices = torch.arange(t_total, device=dev)[None]  # (1, T)
        return encoder(indices, torch.tensor([task_id], device=dev))[0]  # (T, d)
    return encoder.adapter_tensors()["prompt_embeddings"]  # (T, d)


def embedding_matrix(word_embeddings_or_model) -> torch.Tensor:
    """The vocabulary embeddings ``E`` as a detached ``(V, d)`` tensor (no copy when already float32 on CPU).

    Accepts the tensor itself, an ``nn.Embedding``, a ``PromptModel`` (its ``word_embeddings``) or any
    Hugging Face model (``get_input_embeddings()``).
    """
    w = word_embeddings_or_model
    if isinstance(w, torch.Tensor):
        pass
    elif isinstance(w, nn.Embedding):
        w = w.weight
    elif hasattr(w, "word_embeddings") and isinstance(w.word_embeddings, nn.Embedding):
        w = w.word_embeddings.weight
    elif hasattr(w, "get_input_embeddings"):
        w = w.get_input_embeddings().weight
    else:
        raise ValueError(
            f"word_embeddings_or_model is a {type(w).__name__}; pass the embedding matrix (V, d), "
            "an nn.Embedding, a PromptModel or a Hugging Face model."
        )
    if w.dim() != 2:
        raise ValueError(f"word embeddings have shape {tuple(w.shape)}; expected (V, d).")
    return w.detach().to("cpu", torch.float32)


def _check_dims(p: torch.Tensor, e: torch.Tensor) -> None:
    if p.shape[-1] != e.shape[-1]:
        raise ValueError(
            f"the prompt's vectors have d={p.shape[-1]} but the word embeddings have d={e.shape[-1]}: "
            "they come from different models. Pass the embeddings of the model the prompt was trained for."
        )


# --------------------------------------------------------------------------- scores


def scores_against_vocab(prompt: torch.Tensor, embeddings: torch.Tensor, metric="cosine") -> torch.Tensor:
    """Score of every vocabulary token for every prompt vector: ``(T, d) × (V, d) -> (T, V)``.

    Cosine similarity, dot product, or Euclidean distance (for ``"l2"`` smaller is nearer).
    Computed in float32, a chunk of the vocabulary at a time.
    """
    metric = _metric(metric)
    p = prompt.detach().to("cpu", torch.float32)  # (T, d)
    e = embeddings.detach().to("cpu", torch.float32)  # (V, d)
    _check_dims(p, e)
    if metric is Metric.COSINE:
        p = p / p.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = torch.empty(p.shape[0], e.shape[0])  # (T, V)
    for start in range(0, e.shape[0], _CHUNK):
        chunk = e[start:start + _CHUNK]  # (C, d)
        if metric is Metric.COSINE:
            chunk = chunk / chunk.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if metric is Metric.L2:
            out[:, start:start + _CHUNK] = torch.cdist(p[None], chunk[None])[0]  # (T, C)
        else:
            out[:, start:start + _CHUNK] = p @ chunk.T  # (T, C)
    return out


def closeness(scores: torch.Tensor, metric="cosine") -> torch.Tensor:
    """Scores turned so that higher is always nearer (negated distances for ``"l2"``)."""
    return scores if _metric(metric).higher_is_nearer else -scores


def token_ranks(scores: torch.Tensor, token_ids, metric="cosine") -> torch.Tensor:
    """1-based rank of each token in ``token_ids`` among each prompt vector's neighbours: ``(T, V) -> (T, n)``.

    Rank 1 is the nearest token; ties share the better rank.
    """
    near = closeness(scores, metric)  # (T, V)
    ids = torch.as_tensor(token_ids, dtype=torch.long).reshape(-1)  # (n,)
    target = near[:, ids]  # (T, n)
    return 1 + (near[:, None, :] > target[:, :, None]).sum(-1)  # (T, n)


# --------------------------------------------------------------------------- tokens


def display_token(tokenizer, token_id: int) -> str:
    """A vocabulary piece as a reader sees it: ``'Ġgood'`` -> ``'␣good'``, ``'Ċ'`` -> ``'\\n'``."""
    if token_id >= len(tokenizer):
        return f"<id {token_id}>"  # embedding rows past the tokenizer (padded vocabularies)
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece in tokenizer.all_special_tokens:
        return piece
    text = tokenizer.convert_tokens_to_string([piece])
    if piece[:1] in ("Ġ", "▁") and not text.startswith(" "):
        text = " " + text  # sentencepiece decoders drop the leading space of a lone piece
    stripped = text.lstrip(" ")
    text = "␣" * (len(text) - len(stripped)) + stripped
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def _special_ids(tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)}
    return ids


def vocab_mask(tokenizer, vocab_size: int, *, skip_special: bool = False, words_only: bool = False) -> torch.Tensor:
    """Which vocabulary ids to keep, ``(V,)`` bool.

    ``skip_special`` drops the tokenizer's special tokens (pad, eos, chat markers ...).
    ``words_only`` keeps only pieces whose text (leading space removed) is all letters: it drops
    punctuation, digits, whitespace, code fragments and partial UTF-8 bytes. A byte-level BPE
    cannot tell a suffix (``'ized'``) from a word at the start of a text, so those stay.
    Embedding rows past the tokenizer's length are dropped by either filter.
    """
    keep = torch.ones(vocab_size, dtype=torch.bool)
    if not (skip_special or words_only):
        return keep
    n = min(len(tokenizer), vocab_size)
    keep[n:] = False
    if skip_special:
        for i in _special_ids(tokenizer):
            if i < vocab_size:
                keep[i] = False
    if words_only:
        pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
        for i, piece in enumerate(pieces):
            if piece is None or not tokenizer.convert_tokens_to_string([piece]).strip().isalpha():
                keep[i] = False
    return keep


def label_token_ids(tokenizer, words) -> list[int]:
    """The token id of each label word, as it appears in a target: the first piece of ``" " + word``.

    Integers pass through unchanged. A label word that splits into several pieces is represented
    by its first piece (the one rank classification scores first).
    """
    ids = []
    for w in words:
        if isinstance(w, int):
            ids.append(w)
            continue
        pieces = label_word_ids(tokenizer, w)  # " " + w
        if not pieces:
            raise ValueError(f"label word {w!r} tokenizes to nothing; pass a non-empty word.")
        ids.append(int(pieces[0]))
    return ids


# --------------------------------------------------------------------------- the table


@dataclass
class NeighborTable:
    """The ``k`` nearest vocabulary tokens of each virtual token.

    ``ids`` and ``scores`` are ``(T, k)`` tensors, nearest first; ``pieces[t][j]`` is the readable
    text of ``ids[t, j]`` (``'␣'`` marks a leading space). For ``metric="l2"`` the scores are
    distances (smaller is nearer); otherwise similarities.
    """

    ids: torch.Tensor  # (T, k) long
    scores: torch.Tensor  # (T, k) float
    pieces: list[list[str]]
    metric: str = "cosine"
    title: str = ""
    rows: list[int] | None = None  # the virtual-token index of each row (default 0..T-1)

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def k(self) -> int:
        return self.ids.shape[1]

    def _label(self, i: int) -> str:
        return f"v{self.rows[i] if self.rows is not None else i}"

    def select(self, rows) -> NeighborTable:
        """A table of only the given rows (virtual-token positions in this table), keeping their labels."""
        rows = [int(r) for r in rows]
        labels = [self.rows[r] if self.rows is not None else r for r in rows]
        return NeighborTable(self.ids[rows], self.scores[rows], [self.pieces[r] for r in rows], self.metric,
                             self.title, labels)

    def tokens(self, i: int) -> list[str]:
        """The readable neighbours of virtual token ``i``, nearest first."""
        return list(self.pieces[i])

    def __getitem__(self, i: int) -> list[tuple[str, int, float]]:
        """``(token, id, score)`` for each neighbour of virtual token ``i``."""
        return [(s, int(t), float(v)) for s, t, v in zip(self.pieces[i], self.ids[i], self.scores[i])]

    def contains(self, token_id: int) -> torch.Tensor:
        """``(T,)`` bool: which virtual tokens have ``token_id`` among their neighbours."""
        return (self.ids == int(token_id)).any(dim=1)

    def to_rows(self) -> list[dict]:
        """One dict per (virtual token, rank): ``virtual_token, rank, token, id, score``."""
        return [
            {"virtual_token": self.rows[t] if self.rows is not None else t, "rank": r + 1, "token": tok, "id": i,
             "score": s}
            for t in range(len(self))
            for r, (tok, i, s) in enumerate(self[t])
        ]

    def _header(self) -> str:
        what = "distance (lower is nearer)" if self.metric == "l2" else self.metric
        head = f"NeighborTable: {self.k} nearest tokens of {len(self)} virtual tokens, by {what}"
        return f"{head} ({self.title})" if self.title else head

    def __repr__(self) -> str:
        cells = [[self._label(t)] + [f"{tok} {s:.3f}" for tok, _, s in self[t]] for t in range(len(self))]
        header = [""] + [f"#{r + 1}" for r in range(self.k)]
        widths = [max(len(row[c]) for row in [header] + cells) for c in range(len(header))]
        lines = [self._header()]
        for row in [header] + cells:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<th>#{r + 1}</th>" for r in range(self.k))
        body = []
        for t in range(len(self)):
            cells = "".join(
                f"<td><code>{esc(tok)}</code> <small>{s:.3f}</small></td>" for tok, _, s in self[t]
            )
            body.append(f"<tr><th>{self._label(t)}</th>{cells}</tr>")
        return (
            f"<div><p><b>{esc(self._header())}</b></p><table><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>"
        )


def nearest_tokens(
    prompt,
    word_embeddings_or_model=None,
    tokenizer=None,
    k: int = 5,
    metric: str = "cosine",
    *,
    task_id: int | None = None,
    skip_special: bool = False,
    words_only: bool = False,
) -> NeighborTable:
    """The ``k`` nearest vocabulary tokens of every virtual token (Lester et al. 2021, §7).

    Args:
        prompt: a tensor ``(T, d)`` / ``(1, T, d)``, a prompt encoder, or a ``PromptModel``.
        word_embeddings_or_model: the vocabulary embeddings ``(V, d)``, an ``nn.Embedding`` or a model;
            ``None`` uses the ``PromptModel``'s own ``word_embeddings``.
        tokenizer: turns ids into readable pieces.
        k: neighbours per virtual token (the paper shows 5).
        metric: ``"cosine"`` (the paper's), ``"dot"`` or ``"l2"``.
        task_id: for an MPT prompt, the task ``k`` whose prompt ``P* ⊙ (u_k v_kᵀ)`` to read.
        skip_special, words_only: filters, see :func:`vocab_mask`.
    """
    if tokenizer is None:
        raise ValueError("nearest_tokens needs the tokenizer to name the neighbours; pass tokenizer=...")
    if word_embeddings_or_model is None:
        if not hasattr(prompt, "word_embeddings"):
            raise ValueError("pass word_embeddings_or_model (the model or its embedding matrix) for this prompt.")
        word_embeddings_or_model = prompt.word_embeddings
    metric = _metric(metric)
    p = prompt_matrix(prompt, task_id)  # (T, d)
    e = embedding_matrix(word_embeddings_or_model)  # (V, d)
    _check_dims(p, e)
    keep = vocab_mask(tokenizer, e.shape[0], skip_special=skip_special, words_only=words_only)  # (V,)
    if not 1 <= k <= int(keep.sum()):
        raise ValueError(f"k={k} must be between 1 and the number of candidate tokens ({int(keep.sum())}).")
    scores = scores_against_vocab(p, e, metric)  # (T, V)
    near = closeness(scores, metric).masked_fill(~keep, float("-inf"))  # (T, V)
    ids = near.topk(k, dim=-1).indices  # (T, k)
    top = scores.gather(1, ids)  # (T, k)
    pieces = [[display_token(tokenizer, int(i)) for i in row] for row in ids]
    title = f"task {task_id}" if task_id is not None else ""
    return NeighborTable(ids=ids, scores=top, pieces=pieces, metric=metric.value, title=title)
