"""Exercise 05.5 (★★★): mpt_backward(P_star, u, v, task_ids, grad), the MPT prompt's backward pass by hand.

The forward is ``prompts[b] = P* ⊙ (u_k v_kᵀ)`` with ``k = task_ids[b]`` (Wang et al. 2023, §3.1). Given
``grad = ∂L/∂prompts`` ``(B, T, d)``, return ``(grad_P_star (T, d), grad_u (K, T, r), grad_v (K, r, d))``, the
gradients of L with respect to P*, u and v. Checked against autograd through ``MultitaskPromptEmbedding`` on fresh
factors, ranks 1 and r > 1, batches where a task repeats and a task is missing.
"""

import random

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_generator, require, same_shape, same_values

OK_FORMAT = False
name = "05.5"
points = 3
TOL = sp.tolerance(torch.float32)  # float32 sums in another order


def _encoder(K, T, r, d, gen):
    config = sp.MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, num_tasks=K, num_ranks=r)
    with torch.random.fork_rng(devices=[]):  # the notebook's random numbers stay as they were
        encoder = sp.MultitaskPromptEmbedding(config, torch.nn.Embedding(64, d))
    with torch.no_grad():  # P* and factors as after training
        encoder.embedding.weight.copy_(torch.randn(T, d, generator=gen))
        encoder.prefix_task_cols.copy_(1 + 0.5 * torch.randn(K, T, r, generator=gen))
        encoder.prefix_task_rows.copy_((1 + 0.5 * torch.randn(K, r, d, generator=gen)) / r)
    return encoder


def _autograd(encoder, task_ids, grad):
    """The library's forward, and autograd's gradients of <prompts, grad> (so that ∂L/∂prompts = grad)."""
    encoder.zero_grad()
    T = encoder.shared_prompt.shape[0]
    prompts = encoder(torch.arange(T).expand(len(task_ids), T), task_ids)  # (B, T, d)
    prompts.backward(grad)
    return (encoder.embedding.weight.grad.clone(), encoder.prefix_task_cols.grad.clone(),
            encoder.prefix_task_rows.grad.clone())


def _answer(mpt_backward, encoder, task_ids, grad):
    tensors = (encoder.shared_prompt, encoder.prefix_task_cols, encoder.prefix_task_rows)
    got = mpt_backward(*(t.detach().clone() for t in tensors), task_ids.clone(), grad.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise AssertionError(f"mpt_backward should return three tensors (grad_P_star, grad_u, grad_v); got "
                             f"{type(got).__name__}")
    names = ("grad_P_star", "grad_u", "grad_v")
    return [same_shape(n, g, tuple(t.shape), f"the shape of {w}").detach().float()
            for n, g, t, w in zip(names, got, tensors, ("P*", "u", "v"))]


def _rows(task_ids, k):
    return [b for b, t in enumerate(task_ids.tolist()) if t == k]


def _compare(got, expected, task_ids, case):
    g_p, g_u, g_v = got
    e_p, e_u, e_v = expected
    same_values("grad_P_star", g_p, e_p, f"{case}: P* is in every row's prompt", **TOL)
    for k in range(e_u.shape[0]):  # task by task: which rows' gradient reaches u_k and v_k
        rows = _rows(task_ids, k)
        which = f"task {k} (rows {rows} of the batch)" if rows else f"task {k} (no row of the batch)"
        same_values(f"grad_u[{k}]", g_u[k], e_u[k], f"{case}, {which}", **TOL)
        same_values(f"grad_v[{k}]", g_v[k], e_v[k], f"{case}, {which}", **TOL)


@test_case(points=1)
def test_rank_one_with_a_repeated_task(mpt_backward):
    mpt_backward = require("mpt_backward", mpt_backward)
    rng = random.Random(fresh_generator().initial_seed())  # fresh inputs at every check
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    K, T, d = 3, rng.randint(3, 8), rng.randint(6, 32)
    task_ids = torch.tensor([2, 0, 2, 1, 2])  # task 2 in three rows: their gradients add up
    encoder = _encoder(K, T, 1, d, gen)
    grad = torch.randn(len(task_ids), T, d, generator=gen)  # (B, T, d): ∂L/∂prompts
    expected = _autograd(encoder, task_ids, grad)
    got = _answer(mpt_backward, encoder, task_ids, grad)
    _compare(got, expected, task_ids, f"r=1, K={K}, T={T}, d={d}, task_ids {task_ids.tolist()}")


@test_case(points=1)
def test_rank_r_with_a_missing_task(mpt_backward):
    mpt_backward = require("mpt_backward", mpt_backward)
    rng = random.Random(fresh_generator().initial_seed())
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    K, T, r, d = 4, rng.randint(3, 8), rng.randint(2, 5), rng.randint(6, 32)
    ids = [rng.choice((0, 1, 3)) for _ in range(6)]  # task 2 has no row: it gets no gradient
    task_ids = torch.tensor(ids)
    encoder = _encoder(K, T, r, d, gen)
    grad = torch.randn(len(task_ids), T, d, generator=gen)
    expected = _autograd(encoder, task_ids, grad)
    got = _answer(mpt_backward, encoder, task_ids, grad)
    _compare(got, expected, task_ids, f"r={r}, K={K}, T={T}, d={d}, task_ids {ids}")


@test_case(points=1)
def test_at_the_identity_init(mpt_backward):
    mpt_backward = require("mpt_backward", mpt_backward)
    rng = random.Random(fresh_generator().initial_seed())
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    K, T, d = 2, rng.randint(3, 8), rng.randint(6, 32)
    config = sp.MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, num_tasks=K, seed=0)
    with torch.random.fork_rng(devices=[]):
        encoder = sp.MultitaskPromptEmbedding(config, torch.nn.Embedding(64, d))  # u_k v_kᵀ = 1: P_k = P*
    task_ids = torch.tensor([0, 1, 1])
    grad = torch.randn(len(task_ids), T, d, generator=gen)
    expected = _autograd(encoder, task_ids, grad)
    got = _answer(mpt_backward, encoder, task_ids, grad)
    _compare(got, expected, task_ids, f"the IDENTITY init (u_k v_kᵀ = 1), K={K}, T={T}, d={d}, task_ids [0, 1, 1]")
