"""Exercise 05.3 (★★): rank_components(u_k, v_k) and numbers_per_task(T, d, r), for MPT task matrices of rank r.

u_k ``(T, r)``, v_k ``(r, d)`` (one task's ``prefix_task_cols[k]``, ``prefix_task_rows[k]``) -> the r rank-one
matrices ``u_k^(j) v_k^(j)ᵀ`` stacked ``(r, T, d)``; they sum to ``W_k = u_k v_kᵀ`` (``task_matrix(k)``).
``numbers_per_task`` is what one more task costs: checked against the parameters of ``MultitaskPromptEmbedding``.
"""

import random

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_generator, require, same_shape, same_values

OK_FORMAT = False
name = "05.3"
points = 3
TOL = sp.tolerance(torch.float32)  # the prompt's own float32 numbers


def _encoder(K, T, r, d, **kw):
    config = sp.MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, num_tasks=K, num_ranks=r,
                                            **kw)
    with torch.random.fork_rng(devices=[]):  # the notebook's random numbers stay as they were
        return sp.MultitaskPromptEmbedding(config, torch.nn.Embedding(64, d))


def _outer(u_k, v_k, j):  # the j-th rank-one part: column j of u_k times row j of v_k, (T, d)
    return u_k[:, j : j + 1] @ v_k[j : j + 1, :]


@test_case(points=1)
def test_the_components_sum_to_the_task_matrix(rank_components):
    rank_components = require("rank_components", rank_components)
    rng = random.Random(fresh_generator().initial_seed())  # fresh inputs at every check
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    for r in (1, 2, rng.randint(3, 6)):
        K, T, d = 3, rng.randint(2, 9), rng.randint(4, 40)
        encoder = _encoder(K, T, r, d)
        with torch.no_grad():  # factors as after training: spread out
            encoder.prefix_task_cols.copy_(torch.randn(K, T, r, generator=gen))
            encoder.prefix_task_rows.copy_(torch.randn(K, r, d, generator=gen))
        k = rng.randrange(K)
        u_k, v_k = encoder.prefix_task_cols[k].detach(), encoder.prefix_task_rows[k].detach()  # (T, r), (r, d)
        expected = encoder.task_matrix(k).detach()  # W_k: (T, d)
        parts = [_outer(u_k, v_k, j) for j in range(r)]
        got = same_shape(f"rank_components(u_k, v_k) for r={r}", rank_components(u_k.clone(), v_k.clone()),
                         (r, T, d), "r rank-one matrices of shape (T, d)").detach()
        for j in range(r):
            same_values(f"rank_components(u_k, v_k)[{j}]", got[j], parts[j], f"r={r}, T={T}, d={d}: component "
                        f"{j} should be column {j} of u_k times row {j} of v_k", **TOL)
        same_values("rank_components(u_k, v_k).sum(0)", got.sum(0), expected, f"r={r}: the components should sum "
                    f"to the library's task matrix W_k = task_matrix({k})", **TOL)


@test_case(points=1)
def test_identity_init_sums_to_one_with_distinct_components(rank_components):
    rank_components = require("rank_components", rank_components)
    rng = random.Random(fresh_generator().initial_seed())
    T, d = rng.randint(3, 9), rng.randint(4, 40)
    encoder = _encoder(2, T, 4, d, seed=rng.randrange(2**31))  # the default IDENTITY init: u_k v_kᵀ = 1
    parts = same_shape("rank_components(u_k, v_k)", rank_components(encoder.prefix_task_cols[0].detach().clone(),
                       encoder.prefix_task_rows[0].detach().clone()), (4, T, d), "4 rank-one matrices").detach()
    same_values("rank_components(u_k, v_k).sum(0)", parts.sum(0), torch.ones(T, d), "IDENTITY init, r=4: the four "
                "components should sum to W_k = 1", **TOL)
    if torch.allclose(parts[0], parts[1], **TOL):
        raise AssertionError("IDENTITY init, r=4: components 0 and 1 are equal; the init's noise makes them differ "
                             "(rank_components should take column j of u_k and row j of v_k for component j)")


@test_case(points=1)
def test_numbers_per_task_counts_the_parameters(numbers_per_task):
    numbers_per_task = require("numbers_per_task", numbers_per_task)
    rng = random.Random(fresh_generator().initial_seed())
    for _ in range(3):
        K, T, r, d = rng.randint(2, 5), rng.randint(2, 30), rng.randint(1, 6), rng.randint(4, 64)
        encoder = _encoder(K, T, r, d)
        shared = encoder.shared_prompt.numel()  # P*: (T, d), paid once
        per_task = (sum(p.numel() for p in encoder.parameters()) - shared) // K
        got = numbers_per_task(T, d, r)
        if got != per_task:
            raise AssertionError(f"numbers_per_task(T={T}, d={d}, r={r}) is {got}; a MultitaskPromptEmbedding with "
                                 f"K={K} tasks holds {shared} numbers for P* and {per_task} for each task")
