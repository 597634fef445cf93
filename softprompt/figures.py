"""Pictures of a learned prompt (Lester et al. 2021, §7), drawn with matplotlib.

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``. The figures
are built without pyplot, so nothing piles up in pyplot's figure list and nothing is shown twice: end
a notebook cell with the figure (or ``display(fig)``) to see it as a PNG, or pass ``ax=`` to draw into
your own pyplot axes and finish with ``plt.show()``. ``fig.savefig("x.png")`` works anywhere.

* :func:`similarity_heatmap`: every virtual token against a few chosen words (e.g. the label words).
* :func:`pca_paths`: a 2-D PCA of a vocabulary sample, with the prompt tokens and their paths in training.
* :func:`norm_histogram`: prompt-token norms against the distribution of vocabulary norms.
* :func:`drift_plot`, :func:`label_rank_plot`: the snapshot metrics of :mod:`softprompt.snapshots` over steps.
* :func:`confusion_heatmap`: an evaluation's confusion matrix, rows normalised, counts written in.
"""

from __future__ import annotations

import io

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .neighbors import display_token, embedding_matrix, label_token_ids, prompt_matrix, scores_against_vocab

__all__ = [
    "NotebookFigure", "similarity_heatmap", "pca_paths", "norm_histogram", "drift_plot", "label_rank_plot", "pca_basis",
    "confusion_heatmap",
]


class NotebookFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG in Jupyter, even where pyplot was never imported.

    (IPython's PNG printer for figures is registered only once pyplot's inline backend starts; without
    it a plain Figure would print as ``<Figure size ...>``.)
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def _axes(ax, figsize):
    """A fresh pyplot-free figure with one axes, or the caller's axes."""
    if ax is not None:
        return ax.figure, ax
    fig = NotebookFigure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _trajectory(source, task_id=None):
    """``(steps, prompts (S, T, d), word_embeddings or None)`` from snapshots, a stack, or one prompt."""
    if hasattr(source, "steps") and hasattr(source, "prompts"):  # PromptSnapshots
        return list(source.steps), source.prompts, source.word_embeddings
    if isinstance(source, torch.Tensor) and source.dim() == 3 and source.shape[0] > 1:
        stack = source.detach().to("cpu", torch.float32)  # (S, T, d)
        return list(range(stack.shape[0])), stack, None
    words = getattr(source, "word_embeddings", None)
    return [0], prompt_matrix(source, task_id)[None], words  # (1, T, d)


def _words_from(source, word_embeddings):
    if word_embeddings is not None:
        return embedding_matrix(word_embeddings)
    if source is not None:
        return embedding_matrix(source)
    raise ValueError("pass word_embeddings= (the model or its embedding matrix) to place the prompt among words.")


def similarity_heatmap(prompt, word_embeddings_or_model=None, tokenizer=None, words=(), metric: str = "cosine", *,
                       task_id: int | None = None, annotate: bool | None = None, ax=None) -> Figure:
    """Heatmap of the similarity between every virtual token (rows) and each chosen word (columns).

    With the label words as ``words`` this shows at a glance which virtual tokens point towards which
    class, the "class label persistence" of Lester et al. §7. Words are looked up as in a target
    (``" " + word``, first piece); ints are token ids.
    """
    if tokenizer is None or not words:
        raise ValueError("pass tokenizer= and a non-empty list of words=[...] for the heatmap's columns.")
    p = prompt_matrix(prompt, task_id)  # (T, d)
    if word_embeddings_or_model is None:
        word_embeddings_or_model = getattr(prompt, "word_embeddings", None)
    e = _words_from(None, word_embeddings_or_model)  # (V, d)
    ids = label_token_ids(tokenizer, list(words))
    sims = scores_against_vocab(p, e[ids], metric)  # (T, n)
    fig, ax = _axes(ax, (max(4.0, 1.6 + 0.7 * len(ids)), 1.4 + 0.3 * p.shape[0]))
    if metric == "cosine":
        lim = max(float(sims.abs().max()), 1e-6)
        im = ax.imshow(sims.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    else:
        im = ax.imshow(sims.numpy(), cmap="viridis" if metric == "dot" else "viridis_r", aspect="auto")
    ax.set_xticks(range(len(ids)), [display_token(tokenizer, i) for i in ids], rotation=45, ha="right")
    ax.set_yticks(range(p.shape[0]), [f"v{t}" for t in range(p.shape[0])])
    ax.set_xlabel("word")
    ax.set_ylabel("virtual token")
    title = f"{metric} similarity" if metric != "l2" else "L2 distance"
    ax.set_title(title + (f", task {task_id}" if task_id is not None else "") + "\nprompt tokens × words")
    if annotate or (annotate is None and sims.numel() <= 120):
        lo, hi = im.get_clim()
        for t, row in enumerate(sims.tolist()):
            for j, v in enumerate(row):
                dark = abs((v - lo) / max(hi - lo, 1e-12) - 0.5) > 0.3  # near either end of the colour map
                ax.text(j, t, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def pca_basis(embeddings: torch.Tensor, n_sample: int = 2000, seed: int = 0):
    """PCA of a uniform vocabulary sample, by SVD in torch: ``(mean (d,), components (2, d), sample ids)``."""
    g = torch.Generator().manual_seed(seed)
    n = min(n_sample, embeddings.shape[0])
    ids = torch.randperm(embeddings.shape[0], generator=g)[:n]  # (n,)
    x = embeddings[ids].to(torch.float32)  # (n, d)
    mean = x.mean(0)  # (d,)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)  # vh: (d, d)
    return mean, vh[:2], ids


def pca_paths(source, word_embeddings=None, tokenizer=None, *, highlight_words=(), n_vocab: int = 2000,
              seed: int = 0, task_id: int | None = None, tokens=None, upto: int | None = None,
              emphasize: int | None = None, ax=None) -> Figure:
    """The prompt among the words: a 2-D PCA of a vocabulary sample with each virtual token's path.

    ``source`` is a :class:`~softprompt.PromptSnapshots` (paths from step 0, hollow circle, to the last
    snapshot, filled), a stack ``(S, T, d)``, or one prompt in any form ``nearest_tokens`` takes. The
    axes are the two principal components of the vocabulary sample alone, so they do not move
    with the prompt. ``highlight_words`` (e.g. the label words) are marked and named; ``tokens``
    picks which virtual tokens to draw (default all); ``upto`` stops the paths at that snapshot index;
    ``emphasize`` draws one virtual token bold and the others faint.
    """
    steps, traj, own_words = _trajectory(source, task_id)  # traj: (S, T, d)
    if upto is not None:
        upto = range(len(steps))[upto]  # IndexError for a snapshot that does not exist; -1 = the last
        steps, traj = steps[:upto + 1], traj[:upto + 1]
    e = _words_from(own_words, word_embeddings)  # (V, d)
    if traj.shape[-1] != e.shape[-1]:
        raise ValueError(f"the prompt has d={traj.shape[-1]} but the word embeddings d={e.shape[-1]}; same model?")
    mean, comps, ids = pca_basis(e, n_vocab, seed)
    vocab_xy = (e[ids] - mean) @ comps.T  # (n, 2)
    xy = (traj - mean) @ comps.T  # (S, T, 2)
    fig, ax = _axes(ax, (6.5, 5.5))
    ax.scatter(vocab_xy[:, 0], vocab_xy[:, 1], s=3, c="0.75", alpha=0.6, label=f"{len(ids)} vocabulary tokens")
    if highlight_words:
        if tokenizer is None:
            raise ValueError("highlight_words need the tokenizer to find their ids; pass tokenizer=...")
        hid = label_token_ids(tokenizer, list(highlight_words))
        hxy = (e[hid] - mean) @ comps.T  # (n, 2)
        ax.scatter(hxy[:, 0], hxy[:, 1], marker="x", s=40, c="black", label="highlighted words")
        for (x, y), i in zip(hxy.tolist(), hid):
            ax.annotate(display_token(tokenizer, i), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
    chosen = range(traj.shape[1]) if tokens is None else list(tokens)
    colors = [f"C{i % 10}" for i in range(traj.shape[1])]
    for t in chosen:
        path = xy[:, t]  # (S, 2)
        bold = emphasize is None or emphasize == t
        alpha, lw, size = (0.9, 1.0 if emphasize is None else 2.0, 30) if bold else (0.25, 0.8, 15)
        if len(steps) > 1:
            ax.plot(path[:, 0], path[:, 1], "-", lw=lw, color=colors[t], alpha=alpha)
            ax.scatter(path[0, 0], path[0, 1], s=size, facecolors="none", edgecolors=colors[t], alpha=alpha)
        ax.scatter(path[-1, 0], path[-1, 1], s=size, color=colors[t], alpha=alpha)
        if traj.shape[1] <= 30 and bold:
            ax.annotate(f"v{t}", path[-1].tolist(), xytext=(3, -9), textcoords="offset points", fontsize=7,
                        color=colors[t])
    span = f", steps {steps[0]}→{steps[-1]}" if len(steps) > 1 else ""
    ax.set_title(f"prompt tokens in the vocabulary's PCA plane{span}")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="best", fontsize=8)
    return fig


def norm_histogram(source, word_embeddings=None, *, bins: int = 60, task_id: int | None = None, ax=None) -> Figure:
    """Norms of the prompt tokens against the histogram of vocabulary-embedding norms.

    Lester et al. (§3.2, §7) initialize from vocabulary embeddings partly to keep prompt vectors in
    the range the model is used to; this shows whether training kept them there. For snapshots the
    initial norms are drawn dashed and the final ones solid.
    """
    steps, traj, own_words = _trajectory(source, task_id)  # (S, T, d)
    e = _words_from(own_words, word_embeddings)  # (V, d)
    fig, ax = _axes(ax, (6.5, 3.5))
    ax.hist(e.norm(dim=-1).numpy(), bins=bins, color="0.7", label=f"{e.shape[0]} vocabulary embeddings")
    final = traj[-1].norm(dim=-1)  # (T,)
    for i, v in enumerate(final.tolist()):
        ax.axvline(v, color="C3", lw=1, alpha=0.8, label=f"prompt tokens (step {steps[-1]})" if i == 0 else None)
    if len(steps) > 1:
        for i, v in enumerate(traj[0].norm(dim=-1).tolist()):
            label = f"prompt tokens (step {steps[0]})" if i == 0 else None
            ax.axvline(v, color="C0", lw=1, ls="--", alpha=0.6, label=label)
    ax.set_xlabel("L2 norm")
    ax.set_ylabel("vocabulary tokens")
    ax.set_title("prompt-token norms against vocabulary norms")
    ax.legend(fontsize=8)
    return fig


def drift_plot(snapshots, *, ax=None) -> Figure:
    """Distance of each virtual token from its initial vector over training (thin lines) and the mean (thick)."""
    dist = snapshots.distance_from_init()  # (S, T)
    fig, ax = _axes(ax, (6.0, 3.5))
    ax.plot(snapshots.steps, dist.numpy(), lw=0.8, alpha=0.5)
    ax.plot(snapshots.steps, dist.mean(1).numpy(), lw=2.5, color="black", label="mean over virtual tokens")
    ax.set_xlabel("step")
    ax.set_ylabel("‖p(step) − p(0)‖")
    ax.set_title("how far the prompt tokens moved")
    ax.legend(fontsize=8)
    return fig


def label_rank_plot(snapshots, tokenizer, label_words, metric: str = "cosine", *, word_embeddings=None,
                    ax=None) -> Figure:
    """For each label word, its best rank among any virtual token's neighbours, over training (Lester §7).

    Rank 1 (top of the plot) means some virtual token has the label word as its nearest token.
    """
    ranks = snapshots.label_ranks(tokenizer, label_words, metric, word_embeddings=word_embeddings)
    fig, ax = _axes(ax, (6.0, 3.5))
    for word, r in ranks.items():  # r: (S, T)
        ax.plot(snapshots.steps, r.min(dim=1).values.numpy(), marker="o", ms=3, label=repr(word))
    worst = max(float(r.min(dim=1).values.max()) for r in ranks.values())
    ax.set_yscale("log")
    ax.set_ylim(max(10.0, 1.5 * worst), 0.8)  # inverted: rank 1 at the top, always in view
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("step")
    ax.set_ylabel("best rank over virtual tokens")
    ax.set_title(f"label words among the prompt's nearest tokens ({metric})")
    ax.legend(fontsize=8)
    return fig


def confusion_heatmap(result: dict, *, title: str = "", normalize: bool = True, ax=None) -> Figure:
    """A confusion matrix from :func:`softprompt.evaluate` as a heatmap: rows the true class, columns the predicted.

    ``normalize`` colours each row by its share (a row sums to 1, so classes of different sizes compare); the
    cells are annotated with the counts either way. A prediction that matched no label word is not in the matrix.
    """
    counts = torch.tensor(result["confusion"], dtype=torch.float32)  # (K, K)
    shown = counts / counts.sum(1, keepdim=True).clamp_min(1) if normalize else counts  # (K, K)
    words = result["label_words"]
    fig, ax = _axes(ax, (1.2 + 0.7 * len(words), 1.0 + 0.6 * len(words)))
    ax.imshow(shown.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(len(words)):
        for j in range(len(words)):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=9,
                    color="white" if shown[i, j] > 0.6 * float(shown.max()) else "black")
    ax.set_xticks(range(len(words)), words, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(words)), words, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {result['accuracy']:.3f}", fontsize=9)
    return fig
