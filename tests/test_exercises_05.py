"""Notebook 05's exercise checks: a right answer passes, wrong ones fail with a message that says what is wrong."""

import torch

from softprompt.exercises import check


def messages(result) -> str:
    return "\n".join(r.message for r in result.test_case_results if not r.passed)


def average_start(P_star, u, v):
    return P_star * (u.mean(0) @ v.mean(0))  # P* ⊙ (ū v̄ᵀ): (T, d)


def mean_task_prompt(P_star, u, v):
    return (P_star * (u @ v)).mean(0)  # (1/K) Σ_k P* ⊙ (u_k v_kᵀ): (T, d)


def test_05_2_average_of_factors():
    assert check("05.2", average_start=average_start, mean_task_prompt=mean_task_prompt).passed_all
    same = check("05.2", average_start=average_start, mean_task_prompt=average_start)  # "the mean is the start"
    assert "the mean of MultitaskPromptEmbedding.task_prompts() over the tasks" in messages(same)
    no_p_star = check("05.2", average_start=lambda P, u, v: u.mean(0) @ v.mean(0), mean_task_prompt=mean_task_prompt)
    assert "init_from_source(..., 'AVERAGE_SOURCE_TASKS')" in messages(no_p_star)
    assert "define `mean_task_prompt` first" in messages(check("05.2", average_start=average_start,
                                                               mean_task_prompt=None))


def rank_components(u_k, v_k):
    return u_k.T.unsqueeze(-1) * v_k.unsqueeze(1)  # (r, T, 1) * (r, 1, d) -> (r, T, d)


def test_05_3_rank_components():
    assert check("05.3", rank_components=rank_components, numbers_per_task=lambda T, d, r: r * (T + d)).passed_all
    transposed = check("05.3", rank_components=lambda u, v: u.unsqueeze(-1) * v.unsqueeze(0),
                       numbers_per_task=lambda T, d, r: T * d + r * (T + d))  # (T, r, d), and P* counted per task
    assert "expected (1," in messages(transposed) and "for each task" in messages(transposed)
    split_evenly = check("05.3", rank_components=lambda u, v: (u @ v).expand(u.shape[1], -1, -1) / u.shape[1],
                         numbers_per_task=lambda T, d, r: r * (T + d))  # W_k / r, r times: right sum, wrong parts
    assert "should be column 0 of u_k times row 0 of v_k" in messages(split_evenly)
    assert "components 0 and 1 are equal" in messages(split_evenly)
    assert "define `numbers_per_task` first" in messages(check("05.3", rank_components=rank_components,
                                                               numbers_per_task=None))


def mpt_backward(P_star, u, v, task_ids, grad):
    u_b, v_b = u[task_ids], v[task_ids]  # (B, T, r), (B, r, d)
    grad_w = grad * P_star  # (B, T, d): ∂L/∂W for each row
    grad_u = torch.zeros_like(u).index_add_(0, task_ids, grad_w @ v_b.transpose(1, 2))  # rows of a task add up
    grad_v = torch.zeros_like(v).index_add_(0, task_ids, u_b.transpose(1, 2) @ grad_w)
    return (grad * (u_b @ v_b)).sum(0), grad_u, grad_v


def test_05_5_mpt_backward():
    assert check("05.5", mpt_backward=mpt_backward).passed_all

    def last_row_wins(P_star, u, v, task_ids, grad):  # assignment instead of a sum over a task's rows
        grad_p, _, grad_v = mpt_backward(P_star, u, v, task_ids, grad)
        grad_u = torch.zeros_like(u)
        grad_u[task_ids] = (grad * P_star) @ v[task_ids].transpose(1, 2)
        return grad_p, grad_u, grad_v

    wrong = messages(check("05.5", mpt_backward=last_row_wins))
    assert "task 2 (rows [0, 2, 4] of the batch)" in wrong and "entries of grad_u[2] are wrong" in wrong

    def without_p_star(P_star, u, v, task_ids, grad):  # forgets that W_k is multiplied by P*
        return mpt_backward(torch.ones_like(P_star), u, v, task_ids, grad)

    assert "entries of grad_u[" in messages(check("05.5", mpt_backward=without_p_star))
    shapes = check("05.5", mpt_backward=lambda P, u, v, t, g: (g, u, v))
    assert "grad_P_star has shape" in messages(shapes) and "the shape of P*" in messages(shapes)
    assert "define `mpt_backward` first" in messages(check("05.5", mpt_backward=None))
