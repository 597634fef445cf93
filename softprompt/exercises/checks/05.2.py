"""Exercise 05.2 (★★): average_start(P_star, u, v) and mean_task_prompt(P_star, u, v).

P_star ``(T, d)``, u ``(K, T, r)``, v ``(K, r, d)``. ``average_start`` is the prompt target adaptation starts from,
``P* ⊙ (ū v̄ᵀ)`` with the factors averaged over the K source tasks (Wang et al. 2023, §3.2; the library's
``AVERAGE_SOURCE_TASKS``); ``mean_task_prompt`` is the mean of the K task prompts, ``(1/K) Σ_k P* ⊙ (u_k v_kᵀ)``.
Both ``(T, d)``, checked against ``MultitaskPromptEmbedding`` on fresh factors of several ranks.
"""

import random

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_generator, require, same_shape, same_values

OK_FORMAT = False
name = "05.2"
points = 3
TOL = sp.tolerance(torch.float32)  # the prompt's own float32 numbers


def _encoder(K, T, r, d):
    config = sp.MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, num_tasks=K, num_ranks=r)
    with torch.random.fork_rng(devices=[]):  # the notebook's random numbers stay as they were
        return sp.MultitaskPromptEmbedding(config, torch.nn.Embedding(64, d))


def _source(gen, K, T, r, d):
    """A trained-looking source: P* (T, d), and factors u (K, T, r), v (K, r, d) spread around u v^T = 1."""
    return {"prompt_embeddings": torch.randn(T, d, generator=gen),
            "prefix_task_cols": 1 + 0.5 * torch.randn(K, T, r, generator=gen),
            "prefix_task_rows": (1 + 0.5 * torch.randn(K, r, d, generator=gen)) / r}


def _shapes(gen):
    rng = random.Random(int(torch.randint(2**31, (1,), generator=gen)))
    return [(rng.randint(2, 5), rng.randint(2, 9), r, rng.randint(4, 40)) for r in (1, 1, 3)]  # (K, T, r, d)


def _args(source):
    return source["prompt_embeddings"].clone(), source["prefix_task_cols"].clone(), source["prefix_task_rows"].clone()


@test_case(points=1)
def test_average_start_is_where_target_adaptation_starts(average_start):
    average_start = require("average_start", average_start)
    gen = fresh_generator()  # fresh inputs at every check
    for K, T, r, d in _shapes(gen):
        source = _source(gen, K, T, r, d)
        target = _encoder(1, T, r, d)
        target.init_from_source(source, "AVERAGE_SOURCE_TASKS")  # the library's start for a new task
        expected = target.task_prompt(0).detach()  # (T, d)
        got = same_shape("average_start(P_star, u, v)", average_start(*_args(source)), (T, d), "one prompt, (T, d)")
        same_values("average_start(P_star, u, v)", got.detach(), expected, f"K={K} source tasks, T={T}, r={r}, d={d}: "
                    "the target's start from MultitaskPromptEmbedding.init_from_source(..., 'AVERAGE_SOURCE_TASKS')",
                    **TOL)


@test_case(points=1)
def test_mean_task_prompt_is_the_mean_of_the_task_prompts(mean_task_prompt):
    mean_task_prompt = require("mean_task_prompt", mean_task_prompt)
    gen = fresh_generator()
    for K, T, r, d in _shapes(gen):
        source = _source(gen, K, T, r, d)
        encoder = _encoder(K, T, r, d)
        encoder.load_adapter_tensors(source)
        expected = encoder.task_prompts().mean(0).detach()  # (T, d): the K task prompts P_k, averaged
        got = same_shape("mean_task_prompt(P_star, u, v)", mean_task_prompt(*_args(source)), (T, d), "one prompt")
        same_values("mean_task_prompt(P_star, u, v)", got.detach(), expected, f"K={K} source tasks, T={T}, r={r}, "
                    f"d={d}: the mean of MultitaskPromptEmbedding.task_prompts() over the tasks", **TOL)


@test_case(points=1)
def test_equal_exactly_when_the_factors_do_not_covary(average_start, mean_task_prompt):
    average_start = require("average_start", average_start)
    mean_task_prompt = require("mean_task_prompt", mean_task_prompt)
    gen = fresh_generator()
    T, d = 6, 10
    a, b = torch.randn(1, T, 1, generator=gen), torch.randn(1, 1, d, generator=gen)
    signs_u = torch.tensor([1.0, -1.0, 1.0, -1.0]).view(4, 1, 1)  # the u_k differ, and so do the v_k, but their
    signs_v = torch.tensor([1.0, 1.0, -1.0, -1.0]).view(4, 1, 1)  # deviations from the mean never move together
    source = {"prompt_embeddings": torch.randn(T, d, generator=gen), "prefix_task_cols": 1 + 0.3 * signs_u * a,
              "prefix_task_rows": 1 + 0.3 * signs_v * b}
    start, mean = average_start(*_args(source)), mean_task_prompt(*_args(source))
    same_values("average_start(P_star, u, v)", start.detach(), mean.detach(), "four tasks whose u_k and v_k all "
                "differ but do not covary, (1/K) Σ (u_k - ū)(v_k - v̄)ᵀ = 0: the start should equal "
                "mean_task_prompt", **TOL)
