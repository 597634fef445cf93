"""Exercise 03.1 (★★): nearest_ids(P, E, metric) -> (T,) long. The nearest vocabulary id of each prompt vector, by
hand: ``P`` (T, d) prompt vectors, ``E`` (V, d) the embedding table, ``metric`` "cosine" or "dot" (higher is nearer)
or "l2" (the Euclidean distance: lower is nearer)."""

import torch
from otter.test_files import test_case

from softprompt.exercises import fresh_seed, notebook_needs, require, same_shape
from softprompt.neighbors import closeness, embedding_matrix, scores_against_vocab

OK_FORMAT = False
name = "03.1"
points = 3

METRICS = ("cosine", "dot", "l2")


def _ids(nearest_ids, P, E, metric: str, case: str) -> torch.Tensor:
    got = nearest_ids(P.clone(), E.clone(), metric)  # copies: an in-place change cannot reach the model's table
    got = same_shape(f"nearest_ids(P, E, {metric!r})", got, (P.shape[0],), f"{case}: one vocabulary id per row of P")
    if got.is_floating_point() or got.dtype == torch.bool:
        raise AssertionError(f"{case}: nearest_ids(P, E, {metric!r}) returned {got.dtype} values; expected ids "
                             "(an integer tensor)")
    return got.long().cpu()


def _same_choice(got: torch.Tensor, P, E, metric: str, case: str) -> None:
    """Each id must be a nearest one: its closeness equals the best (up to float32 rounding, so near-ties pass)."""
    near = closeness(scores_against_vocab(P, E, metric), metric)  # (T, V), higher is nearer
    if got.min() < 0 or got.max() >= E.shape[0]:
        raise AssertionError(f"{case}, metric={metric!r}: ids must lie in 0..{E.shape[0] - 1}; got {got.tolist()}")
    best = near.max(dim=-1)  # (T,)
    mine = near.gather(1, got[:, None])[:, 0]  # (T,)
    wrong = ~torch.isclose(mine, best.values, atol=1e-5, rtol=1e-5)
    if wrong.any():
        t = int(wrong.nonzero()[0])
        farthest = bool((got == near.argmin(dim=-1)).all())
        hint = " (you picked the farthest token of every row: for 'l2' a smaller distance is nearer)" if (
            farthest and metric == "l2") else ""
        raise AssertionError(
            f"{case}, metric={metric!r}: {int(wrong.sum())} of {len(got)} rows got a token that is not the nearest; "
            f"row {t}: id {int(got[t])}, but id {int(best.indices[t])} is nearer{hint}")


@test_case(points=1)
def test_a_random_table_with_words_of_many_lengths(nearest_ids):
    nearest_ids = require("nearest_ids", nearest_ids)
    with fresh_seed() as seed:
        gen = torch.Generator().manual_seed(seed)
        lengths = torch.randn(500, 1, generator=gen).exp()  # (V, 1): some words much longer than others
        E = torch.randn(500, 16, generator=gen) * lengths  # (V=500, d=16)
        P = torch.randn(6, 16, generator=gen)  # (T=6, d)
        for metric in METRICS:
            case = f"a random table of 500 words of many lengths (seed {seed})"
            got = _ids(nearest_ids, P, E, metric, case)
            _same_choice(got, P, E, metric, case)


@test_case(points=1)
def test_the_models_embedding_table(nearest_ids, model):
    nearest_ids = require("nearest_ids", nearest_ids)
    notebook_needs(model=model)
    with fresh_seed() as seed:
        gen = torch.Generator().manual_seed(seed)
        E = embedding_matrix(model)  # (V, d) float32, as the library reads it
        rows = torch.randint(E.shape[0], (5,), generator=gen)  # (T=5,)
        P = E[rows] * 3 + 0.5 * E.norm(dim=-1).mean() * torch.randn(5, E.shape[1], generator=gen) / E.shape[1] ** 0.5
        for metric in METRICS:
            case = f"the model's embedding table, prompt vectors near tokens {rows.tolist()}"
            got = _ids(nearest_ids, P, E, metric, case)
            _same_choice(got, P, E, metric, case)


@test_case(points=1)
def test_scaling_the_prompt_keeps_the_dot_and_cosine_choices(nearest_ids):
    nearest_ids = require("nearest_ids", nearest_ids)
    with fresh_seed() as seed:
        gen = torch.Generator().manual_seed(seed)
        E = torch.randn(300, 8, generator=gen) * torch.randn(300, 1, generator=gen).exp()  # (V=300, d=8)
        P = torch.randn(4, 8, generator=gen)  # (T=4, d)
        for metric in ("dot", "cosine"):
            for scale in (0.1, 10.0):
                case = f"P scaled by {scale} (a positive factor never changes a dot-product or cosine ranking)"
                got = _ids(nearest_ids, scale * P, E, metric, case)
                _same_choice(got, scale * P, E, metric, case)
