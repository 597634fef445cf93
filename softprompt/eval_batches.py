"""The inputs of an evaluation: a split's examples, batched by length, encoded for the model.

Shared by rank classification (:mod:`softprompt.evaluation`), exact-match generation
(:mod:`softprompt.generation`) and ensemble evaluation (:mod:`softprompt.serving`). A leaf helper: it
takes models and tasks duck-typed and imports no core module.

Batching by length is an optimization only: :func:`length_order` puts examples of similar token length
together (longest first) so rows carry little padding, and :func:`unsort` puts the results back in the
split's order. Padding never changes a row's output, so the results are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .enums import TaskType
from .context import batch_max_length, check_token_ids
from .model_kind import is_prompt_model, model_task_type
from .progress import progress_bar
from .task_ids import task_id_for

__all__ = ["split_examples", "length_order", "unsort", "iter_batches", "ordered_batches", "eval_mode",
           "encode_inputs", "prompt_length", "task_id_inputs", "is_prompt_model", "model_kind_of"]


def model_kind_of(model: nn.Module) -> TaskType:
    """:func:`~softprompt.model_kind.model_task_type`, or a ``ValueError`` for a model evaluation cannot read."""
    kind = model_task_type(model)
    if kind is None:
        raise ValueError(f"{type(model).__name__} is not a causal LM, a seq2seq LM or a sequence classifier; "
                         "evaluation needs one of those (or a PromptModel on one).")
    return kind


def prompt_length(model: nn.Module) -> int:
    """The virtual tokens a model puts before its input: a PromptModel's ``T``, 0 for a plain model."""
    return int(getattr(model, "num_virtual_tokens", 0) or 0) if is_prompt_model(model) else 0


def task_id_inputs(model: nn.Module, task_id: int | None, batch_size: int) -> dict:
    """``{"task_ids": (B,)}`` for a multitask prompt (Wang et al. 2023, §3), ``{}`` otherwise; checked."""
    if not is_prompt_model(model):
        return {}
    task_id = task_id_for(model, task_id, what="this model's prompt")
    if task_id is None:
        return {}
    device = next(model.parameters()).device
    return {"task_ids": torch.full((batch_size,), task_id, dtype=torch.long, device=device)}  # (B,)


def split_examples(task, split: str, max_examples: int | None):
    """``task.splits[split]``, its first ``max_examples`` rows (all if None); clear errors if empty or missing."""
    if split not in task.splits:
        raise ValueError(f"task {task.name!r} has no split {split!r}; its splits are {sorted(task.splits)}.")
    data = task.splits[split]
    if len(data) == 0:
        raise ValueError(f"split {split!r} of task {task.name!r} is empty; nothing to evaluate.")
    if max_examples is not None:
        if max_examples < 1:
            raise ValueError(f"max_examples must be >= 1 or None; got {max_examples}.")
        data = data.select(range(min(max_examples, len(data))))
    return data


def length_order(task, tokenizer, data) -> list[int]:
    """Indices of ``data`` from the longest formatted example to the shortest (in tokens; stable)."""
    lengths = [len(ids) for ids in tokenizer([task.format(ex) for ex in data])["input_ids"]]
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def unsort(values, order: list[int]):
    """Undo ``values = [x[i] for i in order]``: a list, or a tensor along dim 0."""
    if isinstance(values, torch.Tensor):
        out = torch.empty_like(values)
        out[torch.tensor(order, dtype=torch.long)] = values
        return out
    if not values:
        return values
    out = [None] * len(order)
    for v, i in zip(values, order):
        out[i] = v
    return out


def iter_batches(data, batch_size: int) -> Iterator[dict]:
    """Consecutive slices of a ``datasets.Dataset`` (dicts of lists), ``batch_size`` rows each."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    for start in range(0, len(data), batch_size):
        yield data[start:start + batch_size]


def ordered_batches(task, tokenizer, data, batch_size: int, *, sort_by_length: bool = True,
                    progress: str | None = None) -> tuple[Iterator[dict], list[int]]:
    """``(batches, order)``: ``data`` in ``order`` (longest first if ``sort_by_length``), ``batch_size`` rows each.

    ``progress``: a ``tqdm`` bar's description, or None for none. ``unsort(results, order)`` restores the split's order.
    """
    order = length_order(task, tokenizer, data) if sort_by_length else list(range(len(data)))
    batches = iter_batches(data.select(order) if sort_by_length else data, batch_size)
    if progress is not None:
        batches = progress_bar(batches, total=-(-len(data) // batch_size), desc=progress)
    return batches, order


@contextmanager
def eval_mode(model: nn.Module):
    """``model.eval()`` for the block, then every submodule's ``training`` flag restored exactly."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def encode_inputs(model: nn.Module, tokenizer, task, examples: dict, new_tokens: int = 0,
                  max_length: int | None = None) -> dict:
    """The model inputs ``input_ids, attention_mask (B, L)`` for ``examples``, without targets, on the model's device.

    The text is truncated so that the prompt, the text and ``new_tokens`` generated tokens fit the context
    (and ``max_length`` positions, when given: a memory bound, as in training).
    Causal LMs: the Task's left-padded batch, each row ending right after the template (Lester et al. 2021, §2:
    the prompt goes before it). Seq2seq: the Task's encoder batch. SEQ_CLS: the formatted text, right padded.
    """
    kind = model_kind_of(model)
    T = prompt_length(model)
    limit = batch_max_length(model, tokenizer, max_length, T, new_tokens)  # None: no limit known
    if kind == TaskType.CAUSAL_LM:
        if tokenizer.padding_side != "left":
            raise ValueError(
                "causal LMs need a LEFT-padding tokenizer for rank classification and generation; "
                "set tokenizer.padding_side = 'left' (softprompt.load_model does this)."
            )
        batch = task.causal_batch(examples, tokenizer, with_targets=False, max_length=limit, num_virtual_tokens=T)
    elif kind == TaskType.SEQ_2_SEQ_LM:
        batch = task.seq2seq_batch(examples, tokenizer, max_length=limit, num_virtual_tokens=T)
    else:  # SEQ_CLS: the formatted text, right padded like any encoder batch
        texts = [task.format(dict(zip(examples, row))) for row in zip(*examples.values())]
        batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                          max_length=None if limit is None else limit - T)
    check_token_ids(model, batch["input_ids"])
    device = next(model.parameters()).device
    return {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}  # (B, L) each
