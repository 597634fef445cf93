"""The shared-prompt fast path: an optimization of the plain training loss, with the same loss and gradient.

Prompt tuning prepends the *same* prompt P to every input (Lester et al. 2021, §2). In a causal LM
a position attends only to the positions before it, so the prompt's hidden states are the same in
every row of a batch. The plain path runs them ``B`` times::

    plain:  prompt_model(**model_inputs(prompt_model, batch)).loss      B * (T + L) positions
    fast:   shared_prompt_loss(prompt_model, batch)                      T + B * L positions

:func:`~softprompt.prefix_cache.shared_prompt_forward` runs the prompt once per batch and keeps its
autograd graph, so the gradient reaches the prompt through the shared keys and values.
``tests/test_training.py`` checks that loss and gradient equal the plain path's.

It does not apply (and :func:`shared_prompt_loss` returns None) where the rows' prompts differ:

* dropout is active: the plain path draws a fresh mask per row, one shared prompt run would draw one;
* seq2seq or classification models: the prompt goes into a bidirectional encoder;
* an MPT batch mixing tasks (Wang et al. 2023, §3.1): row b's prompt is P_k of its own task.
"""

from __future__ import annotations

import torch
from torch import nn

from .enums import TaskType
from .model_kind import model_task_type
from .prefix_cache import shared_prompt_forward

__all__ = ["shared_prompt_loss", "shared_prompt_task", "dropout_active"]


def shared_prompt_loss(prompt_model, batch: dict) -> torch.Tensor | None:
    """The plain path's loss computed with the prompt run once per batch, or None where that does not apply."""
    task_id = shared_prompt_task(prompt_model, batch)
    if task_id is False:
        return None
    return shared_prompt_forward(prompt_model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                 logits_to_keep=batch.get("logits_to_keep", 0), task_id=task_id).loss


def shared_prompt_task(prompt_model, batch: dict) -> int | None | bool:
    """The task id for the shared-prompt path (None for a vanilla prompt), or False where it does not apply."""
    if model_task_type(prompt_model) != TaskType.CAUSAL_LM or dropout_active(prompt_model.base_model):
        return False
    if not prompt_model.needs_task_ids:
        return None
    ids = batch["task_ids"]  # (B,)
    return int(ids[0]) if bool((ids == ids[0]).all()) else False


def dropout_active(model: nn.Module) -> bool:
    """Whether a forward pass of ``model`` would drop anything (dropout modules or attention dropout)."""
    if not model.training:
        return False
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        return True
    config = getattr(model, "config", None)
    rates = [v for k, v in vars(config).items() if ("dropout" in k or "pdrop" in k) and isinstance(v, float)] \
        if config is not None else []
    return any(r > 0 for r in rates)
