"""Where MPT task factors start: the IDENTITY init, and target adaptation from a source prompt (Wang et al. 2023).

A leaf: functions take tensors and shapes and return new tensors; ``MultitaskPromptEmbedding`` copies them in.

* :func:`initial_task_factors`: PEFT's N(0, 0.02²) draws, or :func:`identity_task_factors`, ``u_k v_kᵀ = 1``
  exactly, so ``P_k = P*`` at step 0 (ours; see :mod:`softprompt.multitask`). ``v_k = 1/r``; ``u_k = 1 + ε``
  with ε ~ N(0, noise²) centred across the r ranks of each row, which keeps ``Σ_j u_ij v_jc = 1`` while
  breaking the symmetry between the rank-one parts.
* :func:`load_source_tensors` reads a trained source prompt; :func:`source_start` picks from it what a target
  task starts from (Wang et al. §3.2, target adaptation).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from .adapter_files import ADAPTER_WEIGHTS_NAME, load_adapter
from .config_checks import as_enum
from .enums import SOURCE_INITS, MultitaskPromptTuningInit, TaskFactorInit
from .initialization import make_generator
from .task_ids import check_task_id

__all__ = ["initial_task_factors", "identity_task_factors", "load_source_tensors", "source_start"]


def initial_task_factors(config, d: int, device=None):
    """``(u, v)``, shapes ``(K, T, r)`` and ``(K, r, d)``, that a new MPT prompt's task factors start from.

    First PEFT's draws, N(0, 0.02²) from torch's global RNG, cols then rows (so the RNG moves as in PEFT);
    they stay for ``task_factor_init='PEFT'`` and in ``inference_mode`` (the weights are about to be loaded).
    Otherwise :func:`identity_task_factors`.
    """
    K, T, r = config.num_tasks, config.total_virtual_tokens, config.num_ranks
    u = torch.normal(0.0, 0.02, size=(K, T, r), device=device)  # (K, T, r)
    v = torch.normal(0.0, 0.02, size=(K, r, d), device=device)  # (K, r, d)
    if config.inference_mode or config.task_factor_init != TaskFactorInit.IDENTITY:
        return u, v
    u, v = identity_task_factors(K, T, r, d, config.task_factor_noise, config.seed)
    return u.to(device), v.to(device)  # u v^T = 1: P_k = P* at step 0


def identity_task_factors(K: int, T: int, r: int, d: int, noise: float, seed: int | None):
    """IDENTITY init: ``(u, v)`` of shapes ``(K, T, r)``, ``(K, r, d)`` with ``u_k v_kᵀ = 1`` (on the CPU)."""
    gen = make_generator(None if seed is None else seed + 1)  # not the P* init's stream
    eps = torch.randn(K, T, r, generator=gen) * noise  # (K, T, r)
    eps = eps - eps.mean(dim=-1, keepdim=True)  # zero mean over the ranks: Σ_j ε_ij = 0
    return 1.0 + eps, torch.full((K, r, d), 1.0 / r)  # u: (K, T, r), v: (K, r, d)


def load_source_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a source prompt: a saved prompt directory (ours or PEFT's) or a ``.safetensors`` file.

    Never unpickles: PEFT also accepts a ``torch.save`` file here; we refuse it with the conversion recipe.
    """
    path = Path(path)
    if path.is_dir():
        return load_adapter(path)[1]
    if not path.exists():
        raise ValueError(
            f"prompt_tuning_init_state_dict_path={str(path)!r} does not exist; pass the directory a source "
            f"MPT prompt was saved to (save_pretrained), or its {ADAPTER_WEIGHTS_NAME}."
        )
    if path.suffix != ".safetensors":
        raise ValueError(
            f"{path} is not a .safetensors file; softprompt never unpickles (.bin/.pt can run code). Convert it "
            "once if you trust it: save_file(torch.load(path, weights_only=True), 'adapter_model.safetensors')."
        )
    return load_file(path)


def source_start(tensors: dict[str, torch.Tensor], mode, task: int | None, T: int, r: int, d: int):
    """``(P*, u, v)`` a target prompt of shape T×d, rank r starts from (Wang et al. §3.2); u, v None or ``(1, ·, ·)``.

    ``tensors`` holds ``prompt_embeddings`` (P*) and, except for ONLY_SOURCE_SHARED, the source's
    ``prefix_task_cols`` / ``prefix_task_rows``. AVERAGE_SOURCE_TASKS takes the mean u and the mean v
    over the source tasks (PEFT's rule; note that ``mean(u) mean(v)ᵀ`` is not ``mean(u vᵀ)``),
    EXACT_SOURCE_TASK those of source task ``task``; ONLY_SOURCE_SHARED (u, v = None) takes P* alone,
    so a vanilla prompt file works for it.
    """
    mode = as_enum(MultitaskPromptTuningInit, mode, "mode")
    if mode not in SOURCE_INITS:
        raise ValueError(f"mode={mode.value!r} is not a source init; use one of {[m.value for m in SOURCE_INITS]}.")
    if "prompt_embeddings" not in tensors:
        raise ValueError(f"The source has no 'prompt_embeddings' (P*); its tensors are {sorted(tensors)}.")
    p_star = tensors["prompt_embeddings"]  # (T, d)
    if tuple(p_star.shape) != (T, d):
        raise ValueError(
            f"The source's prompt_embeddings (P*) has shape {tuple(p_star.shape)}, this prompt needs "
            f"{(T, d)} (total_virtual_tokens, token_dim): set num_virtual_tokens "
            "to the source's and use the source's base model."
        )
    if mode == MultitaskPromptTuningInit.ONLY_SOURCE_SHARED:
        return p_star, None, None
    return (p_star, *_source_factors(tensors, mode, task, T, r, d))


def _source_factors(tensors, mode, task, T, r, d):
    """The source's u, v for ``mode``: their means over the source tasks, or those of task ``task``."""
    missing = [k for k in ("prefix_task_cols", "prefix_task_rows") if k not in tensors]
    if missing:
        raise ValueError(
            f"prompt_tuning_init={mode.value!r} needs the source's task factors, but it has no {missing} "
            "(a vanilla prompt?). Use ONLY_SOURCE_SHARED to start from its prompt alone."
        )
    cols, rows = tensors["prefix_task_cols"], tensors["prefix_task_rows"]  # (K_src, T, r), (K_src, r, d)
    if cols.dim() != 3 or rows.dim() != 3 or cols.shape[0] != rows.shape[0]:
        raise ValueError(
            f"The source's prefix_task_cols {tuple(cols.shape)} and prefix_task_rows {tuple(rows.shape)} do not "
            "fit each other: expected (K, T, r) and (K, r, d) with the same K. The file is damaged or not MPT."
        )
    K_src = cols.shape[0]
    if cols.shape[2] != r or rows.shape[1] != r:
        raise ValueError(
            f"The source has num_ranks={cols.shape[2]}, this config num_ranks={r}: set num_ranks={cols.shape[2]}."
        )
    if cols.shape[1] != T or rows.shape[2] != d:
        raise ValueError(
            f"The source's task factors are for T={cols.shape[1]}, d={rows.shape[2]}; this prompt has T={T}, "
            f"d={d}: use the source's num_virtual_tokens and base model."
        )
    if mode == MultitaskPromptTuningInit.AVERAGE_SOURCE_TASKS:
        return cols.mean(0, keepdim=True), rows.mean(0, keepdim=True)  # (1, T, r), (1, r, d)
    if task is None:
        raise ValueError(f"prompt_tuning_init_task=None is not a task of the source, which has num_tasks={K_src}: "
                         f"use a task id in 0..{K_src - 1}.")
    task = check_task_id(task, K_src, "prompt_tuning_init_task", owner="the source")
    return cols[task : task + 1], rows[task : task + 1]  # (1, T, r), (1, r, d)
