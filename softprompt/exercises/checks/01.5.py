"""Exercise 01.5 (★★): top_tokens(q, E, k, metric), the ids of the k nearest vocabulary tokens by cosine or dot product.

The library's scores (``softprompt.neighbors.scores_against_vocab``, what ``nearest_tokens`` ranks by) judge the
answer: a token counts as right when its score equals the score of the token the library ranks at that place, so
two tokens with equal scores may come in either order.
"""

import torch
from otter.test_files import test_case

from softprompt.exercises import fresh_generator, notebook_needs, require, same_shape, same_values
from softprompt.neighbors import scores_against_vocab

OK_FORMAT = False
name = "01.5"
points = 3

CALL = "top_tokens(q, E, k, metric)"


def _setup(top_tokens, model):
    notebook_needs(model=model)
    return require("top_tokens", top_tokens), model.get_input_embeddings().weight.detach().float()  # E: (V, d)


def _ranked(top_tokens, q, E, k, metric, case):
    """The answer's ids, checked for shape, range and order against the library's scores."""
    got = same_shape(f"{CALL} with k={k}", top_tokens(q, E, k, metric), (k,), "k token ids, nearest first")
    if got.is_floating_point():
        raise AssertionError(f"{CALL} should give token ids (integers), got a tensor of {got.dtype}")
    got = got.detach().cpu().long()
    if int(got.min()) < 0 or int(got.max()) >= E.shape[0]:
        raise AssertionError(f"{case}: {CALL} gave ids outside 0..V-1 (V = {E.shape[0]})")
    scores = {m: scores_against_vocab(q[None], E, m)[0] for m in ("cosine", "dot")}  # (V,) each, float32 on CPU
    best = scores[metric].topk(k).values  # (k,): the library's top-k scores, nearest first
    mine = scores[metric][got]  # (k,): the scores of the answer's tokens
    atol = 1e-5 * float(best.abs().max())
    if torch.allclose(mine, best, atol=atol, rtol=1e-5):
        return got
    other = "dot" if metric == "cosine" else "cosine"
    if torch.allclose(mine, scores[metric][scores[other].topk(k).indices], atol=atol, rtol=1e-5):
        raise AssertionError(f"{case}: your {k} tokens are the nearest by {other}, not by {metric}")
    if torch.allclose(mine, scores[metric].topk(k, largest=False).values, atol=atol, rtol=1e-5):
        raise AssertionError(f"{case}: your {k} tokens are the farthest by {metric}, not the nearest")
    i = int((~torch.isclose(mine, best, atol=atol, rtol=1e-5)).nonzero()[0])
    raise AssertionError(f"{case}: your token at place {i} (id {int(got[i])}) has {metric} {float(mine[i]):.4f}; "
                         f"the token the library ranks at place {i} has {float(best[i]):.4f}")


@test_case(points=1)
def test_a_random_query(top_tokens, model):
    top_tokens, E = _setup(top_tokens, model)
    gen = fresh_generator()
    q = torch.randn(E.shape[1], generator=gen).to(E.device)  # (d,): a PEFT-random prompt vector, N(0, 1)
    k = int(torch.randint(3, 11, (), generator=gen))
    for metric in ("cosine", "dot"):
        _ranked(top_tokens, q, E, k, metric, f"a random N(0, 1) query, metric={metric!r}, k={k}")


@test_case(points=1)
def test_a_query_near_a_token(top_tokens, model):
    top_tokens, E = _setup(top_tokens, model)
    gen = fresh_generator()
    token = int(torch.randint(E.shape[0], (), generator=gen))
    q = E[token] + 0.1 * E[token].norm() * torch.randn(E.shape[1], generator=gen).to(E.device) / E.shape[1] ** 0.5
    for metric in ("cosine", "dot"):
        _ranked(top_tokens, q, E, 5, metric, f"a query near token {token}'s row, metric={metric!r}, k=5")


@test_case(points=1)
def test_scaling_the_query_changes_no_ranking(top_tokens, model):
    top_tokens, E = _setup(top_tokens, model)
    gen = fresh_generator()
    q = torch.randn(E.shape[1], generator=gen).to(E.device)  # (d,)
    for metric in ("cosine", "dot"):
        case = f"a random query and 10 x the same query, metric={metric!r}, k=8"
        once = _ranked(top_tokens, q, E, 8, metric, case)
        same_values(f"{CALL} for 10 q", _ranked(top_tokens, 10 * q, E, 8, metric, case), once, case)
