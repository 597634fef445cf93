"""The checks behind :func:`softprompt.train` and :class:`softprompt.TrainingConfig`: error messages only.

Each check raises a ``ValueError`` (a bad value) or ``TypeError`` (the wrong kind of object) that
names the field or argument and the fix, before any training starts; nothing here changes what
training computes. Kept beside :mod:`softprompt.training` so the loop reads short.
"""

from __future__ import annotations

import math

import torch

from .model_kind import is_prompt_model
from .task_ids import as_task_ids, check_task_id, num_tasks_of
from .tasks.task import Task

__all__ = [
    "check_training_config", "check_overrides", "check_train_arguments", "check_task_ids", "check_tasks",
    "trainable_parameters", "nonfinite_message",
]


def check_training_config(cfg) -> None:
    """The numbers of a TrainingConfig (after its defaults are filled in): each names its field and the fix."""
    for name in ("steps", "batch_size", "eval_batch_size"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)!r}: must be a positive integer.")
    n = cfg.grad_accum_steps
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"grad_accum_steps={n!r}: must be a positive integer (1: no accumulation).")
    if cfg.batch_size % n:
        fits = [k for k in range(1, cfg.batch_size + 1) if cfg.batch_size % k == 0]
        raise ValueError(f"grad_accum_steps={n} does not divide batch_size={cfg.batch_size}: each optimizer step's "
                         f"rows are split into grad_accum_steps equal micro-batches; use one of {fits}, or change "
                         "batch_size.")
    for name in ("eval_every", "checkpoint_every", "train_examples", "eval_examples", "max_length"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}={value!r}: must be a positive integer, or None to turn it off.")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ValueError(f"lr={cfg.lr!r}: must be a positive number (prompt tuning likes 1e-2..0.3).")
    if cfg.weight_decay < 0:
        raise ValueError(f"weight_decay={cfg.weight_decay!r}: must be >= 0.")
    if cfg.warmup_steps < 0 or cfg.warmup_steps > cfg.steps:
        raise ValueError(f"warmup_steps={cfg.warmup_steps!r}: must be between 0 and steps={cfg.steps}.")
    if cfg.max_grad_norm is not None and not cfg.max_grad_norm > 0:
        raise ValueError(f"max_grad_norm={cfg.max_grad_norm!r}: must be > 0, or None for no clipping.")
    if cfg.checkpoint_every is not None and cfg.checkpoint_dir is None:
        raise ValueError("checkpoint_every is set but checkpoint_dir is None: give a checkpoint_dir to save into.")
    if cfg.keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints={cfg.keep_checkpoints!r}: must be >= 1.")


def check_overrides(overrides: dict, valid: list[str]) -> None:
    """``train(..., steps=20)``: every keyword setting must be a TrainingConfig field."""
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise TypeError(f"train() got unknown settings {unknown}; the settings are the fields of TrainingConfig: "
                        f"{', '.join(valid)} (and callbacks=, loss_fn=, progress=, config=).")


def check_train_arguments(prompt_model, tokenizer, task, cfg) -> list:
    """train()'s three positional arguments (TypeErrors for the wrong kind of object), then its tasks and
    task ids against ``cfg`` (ValueErrors); returns the list of tasks."""
    if not is_prompt_model(prompt_model):
        # a plain model would fail deep inside (or, with a loss_fn, silently train all its weights)
        raise TypeError(f"train() needs a PromptModel; got {type(prompt_model).__name__}. Wrap it first: "
                        "prompt_model = get_prompt_model(model, PromptTuningConfig(...)).")
    if tokenizer is None or not callable(tokenizer) or not hasattr(tokenizer, "padding_side"):
        raise TypeError(f"train() needs the model's tokenizer as its second argument; got "
                        f"{type(tokenizer).__name__}. load_model returns both: model, tokenizer = load_model(...).")
    tasks = task if isinstance(task, (list, tuple)) else [task]
    wrong = [t for t in tasks if not isinstance(t, Task)]
    if wrong:
        got = type(wrong[0]).__name__ + (f" {wrong[0]!r}" if isinstance(wrong[0], str) else "")
        raise TypeError(f"train() needs a Task or a list of Tasks as task; got {got}. Load one with "
                        "softprompt.load_task('sst2'), or build one: Task(name=..., splits={'train': dataset}, ...).")
    tasks = list(tasks)
    check_task_ids(prompt_model, tasks, cfg)
    check_tasks(tasks, cfg)
    return tasks


def check_task_ids(prompt_model, tasks, cfg) -> None:
    """A multitask (MPT) prompt: ``cfg.task_id`` (one task) or the ids ``0..len(tasks)-1`` must be its tasks."""
    if not prompt_model.needs_task_ids:
        return
    num_tasks = num_tasks_of(prompt_model)
    if len(tasks) == 1:
        check_task_id(cfg.task_id, num_tasks, "task_id")
    else:  # task t of the list trains task id t
        as_task_ids(torch.arange(len(tasks)), len(tasks), num_tasks, name="task_ids (task k of the list trains id k)")


def check_tasks(tasks, cfg) -> None:
    """Every task has a non-empty 'train' split (and the eval split, when evaluating), big enough for few-shot."""
    if not tasks:
        raise ValueError("task is an empty list: give a Task or a non-empty list of Tasks.")
    for t, task in enumerate(tasks):
        splits = getattr(task, "splits", None)
        name = getattr(task, "name", f"task {t}")
        if not splits or "train" not in splits:
            raise ValueError(f"task {name!r} has no 'train' split (splits: {sorted(splits or {})}); "
                             "train needs one with columns text and label.")
        if cfg.eval_every and cfg.eval_split not in splits:
            raise ValueError(f"eval_every is set but task {name!r} has no {cfg.eval_split!r} split (splits: "
                             f"{sorted(splits)}); pass eval_split= one of them, or eval_every=None.")
        n = len(splits["train"])
        if n == 0:
            raise ValueError(f"task {name!r}: the 'train' split is empty; give it examples, or drop the task.")
        if cfg.train_examples is not None and cfg.train_examples > n:
            raise ValueError(f"train_examples={cfg.train_examples} but task {name!r} has only {n} training "
                             "examples; lower train_examples or use None for all.")


def trainable_parameters(prompt_model) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` of what trains (the prompt; a SEQ_CLS head too), or a ValueError if nothing does."""
    named = [(n, p) for n, p in prompt_model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("prompt_model has no trainable parameters: build it with softprompt.get_prompt_model, "
                         "or load it with PromptModel.from_pretrained(..., is_trainable=True).")
    return named


def nonfinite_message(what: str, value: float, step: int, cfg) -> str:
    """Why training stopped at ``step``: the loss, gradient or updated prompt is NaN or infinite."""
    return (f"training stopped at step {step}: the {what} is {value} (not finite). The prompt keeps its values "
            f"from step {step - 1}. Try a lower lr (now {cfg.lr}), gradient clipping (max_grad_norm, now "
            f"{cfg.max_grad_norm}), or float32 weights.")
