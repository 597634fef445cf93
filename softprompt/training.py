"""Training a soft prompt: ``softprompt.train(prompt_model, tokenizer, task) -> History``.

Prompt tuning (Lester et al. 2021, §2) freezes the whole model and learns only the prompt:
maximize log p(Y | [P; X]) over the prompt P by gradient descent. The loop here is the
plainest one that does that well:

1. draw a batch (a seeded shuffle of the training split, epoch after epoch);
2. run the model, computing LM-head logits only at the label positions (``logits_to_keep``);
3. backpropagate into the prompt, clip the gradient, take an optimizer step at the
   scheduled learning rate (:mod:`softprompt.optim`; Lester §3: Adafactor, constant lr 0.3);
4. now and then evaluate on the validation split and save a checkpoint
   (:mod:`softprompt.checkpoints`) from which a killed run resumes *exactly*.

A NaN or infinite loss (or gradient, or prompt after the step) stops training with a
warning that says what to change; the prompt keeps its last good values.

A list of tasks trains one prompt on a mixture (the multitask setting of Wang et al. 2023, §3):
each row carries its task's index in the list as ``task_ids``.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from .callbacks import Callback, TrainState
from .checkpoints import (
    load_newest_intact, remove_checkpoints, remove_stale_temporaries, restore_rng, save_checkpoint,
)
from .context import batch_max_length, check_num_labels, check_token_ids
from .optim import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, OptimizerName, Schedule, lr_factor, make_optimizer
from .task_ids import as_task_ids, check_task_id, num_tasks_of

__all__ = ["Mixing", "TrainingConfig", "History", "train", "model_inputs"]


class Mixing(str, Enum):
    """How a multitask batch is drawn from a list of tasks."""

    EXAMPLES = "examples"  # uniform over all examples pooled: big tasks appear more often
    TASKS = "tasks"  # each row picks a task uniformly, then the next example of that task


@dataclass
class TrainingConfig:
    """The knobs of :func:`train`; every field has a sensible default for prompt tuning."""

    steps: int = 100  # optimizer steps to take in total (a resumed run counts the steps already done)
    batch_size: int = 8
    optimizer: OptimizerName = OptimizerName.ADAMW  # "adamw" or "adafactor" (Lester §3)
    lr: float | None = None  # None: 3e-2 for AdamW, 0.3 for Adafactor (Lester §3)
    weight_decay: float | None = None  # None: 0 for AdamW, 1e-5 for Adafactor (Lester §3)
    schedule: Schedule | None = None  # None: "constant" for Adafactor (Lester), "linear" for AdamW
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0  # clip the prompt's gradient norm; None: no clipping
    seed: int = 0  # seeds torch and python `random` at the start, and the data order
    max_length: int | None = None  # truncate example text so that prompt + text + target fit this
    train_examples: int | None = None  # few-shot: use only this many (seeded) training examples per task
    mixing: Mixing = Mixing.EXAMPLES  # multitask only
    task_id: int = 0  # the task id of every row when a single task trains a multitask prompt
    eval_every: int | None = None  # evaluate every N steps (and at step 0 and at the end); None: never
    eval_examples: int | None = None  # evaluate on at most this many validation examples
    eval_split: str = "validation"
    checkpoint_dir: str | None = None  # where checkpoints go; None: no checkpoints
    checkpoint_every: int | None = None  # save every N steps (and at the end); None: at the end only
    keep_checkpoints: int = 2  # how many of the newest checkpoints to keep
    resume: bool = True  # continue from the newest checkpoint in checkpoint_dir (False: delete them, start over)

    def __post_init__(self):
        self.optimizer = _enum(OptimizerName, self.optimizer, "optimizer")
        self.mixing = _enum(Mixing, self.mixing, "mixing")
        if self.schedule is None:
            self.schedule = Schedule.CONSTANT if self.optimizer is OptimizerName.ADAFACTOR else Schedule.LINEAR
        self.schedule = _enum(Schedule, self.schedule, "schedule")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if self.weight_decay is None:
            self.weight_decay = DEFAULT_WEIGHT_DECAY[self.optimizer]
        for name in ("steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be a positive integer.")
        for name in ("eval_every", "checkpoint_every", "train_examples", "eval_examples", "max_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r}: must be a positive integer, or None to turn it off.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r}: must be a positive number (prompt tuning likes 1e-2..0.3).")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay!r}: must be >= 0.")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps={self.warmup_steps!r}: must be between 0 and steps={self.steps}.")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm!r}: must be > 0, or None for no clipping.")
        if self.checkpoint_every is not None and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every is set but checkpoint_dir is None: give a checkpoint_dir to save into.")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints={self.keep_checkpoints!r}: must be >= 1.")
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = str(self.checkpoint_dir)
        self.task_id = check_task_id(self.task_id, None, "task_id")  # an int >= 0; its range: train() checks it

    def to_dict(self) -> dict[str, Any]:
        return {k: v.value if isinstance(v, Enum) else v for k, v in asdict(self).items()}

    # Fields that change the trajectory: a checkpoint made under other values cannot be resumed.
    _TRAJECTORY = ("batch_size", "optimizer", "lr", "weight_decay", "schedule", "warmup_steps", "max_grad_norm",
                   "seed", "max_length", "train_examples", "mixing", "task_id")


def _enum(cls, value, name):
    try:
        return cls(value.value if isinstance(value, Enum) else str(value).lower())
    except ValueError:
        raise ValueError(f"{name}={value!r}: choose one of {[m.value for m in cls]}.") from None


# ---------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------
@dataclass
class History:
    """What happened during training: ``(step, value)`` pairs, ready to plot."""

    loss: list[tuple[int, float]] = field(default_factory=list)
    lr: list[tuple[int, float]] = field(default_factory=list)
    grad_norm: list[tuple[int, float]] = field(default_factory=list)
    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # validation results
    stop_reason: str | None = None  # why training ended early (a callback, a NaN loss), or None

    @property
    def steps(self) -> int:
        """Optimizer steps taken."""
        return self.loss[-1][0] if self.loss else 0

    def metric(self, name: str = "accuracy") -> list[tuple[int, float]]:
        """``(step, value)`` of one metric across evaluations."""
        return [(s, m[name]) for s, m in self.metrics if name in m]

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "lr": self.lr, "grad_norm": self.grad_norm, "metrics": self.metrics,
                "stop_reason": self.stop_reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        pairs = lambda xs: [(int(s), v) for s, v in xs]  # noqa: E731  (JSON turns tuples into lists)
        return cls(loss=pairs(d["loss"]), lr=pairs(d["lr"]), grad_norm=pairs(d.get("grad_norm", [])),
                   metrics=pairs(d["metrics"]), stop_reason=d.get("stop_reason"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def plot(self, metric: str = "accuracy", smooth: int = 1):
        """A matplotlib Figure: training loss (left axis) and validation ``metric`` (right axis).

        ``smooth`` > 1 also draws a running mean over that many steps.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 3.5))
        ax = fig.add_subplot()
        if self.loss:
            steps, values = zip(*self.loss)
            ax.plot(steps, values, color="tab:blue", alpha=0.4 if smooth > 1 else 1.0, label="train loss")
            if smooth > 1 and len(values) >= smooth:
                run = [sum(values[i - smooth + 1:i + 1]) / smooth for i in range(smooth - 1, len(values))]
                ax.plot(steps[smooth - 1:], run, color="tab:blue", label=f"train loss ({smooth}-step mean)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss", color="tab:blue")
        points = self.metric(metric)
        if points:
            ax2 = ax.twinx()
            ax2.plot(*zip(*points), "o-", color="tab:orange", label=f"validation {metric}")
            ax2.set_ylabel(f"validation {metric}", color="tab:orange")
            ax2.set_ylim(0, 1.02)
        ax.set_title("Prompt tuning")
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        if not self.loss:
            return "History(no steps)"
        parts = [f"steps={self.steps}", f"loss {self.loss[0][1]:.3f} -> {self.loss[-1][1]:.3f}"]
        acc = self.metric("accuracy")
        if acc:
            parts.append(f"accuracy {acc[0][1]:.3f} -> {acc[-1][1]:.3f}")
        if self.stop_reason:
            parts.append(f"stopped: {self.stop_reason}")
        return f"History({', '.join(parts)})"


# ---------------------------------------------------------------------------------------------
# Data order: a seeded shuffle per epoch, resumable from (epoch, position)
# ---------------------------------------------------------------------------------------------
def _mix(*ints: int) -> int:
    """A generator seed from several integers (a simple, stable hash)."""
    h = 0x9E3779B97F4A7C15
    for i in ints:
        h = (h ^ (i & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


class _ExampleOrder:
    """Indices ``0..n-1`` in a fresh seeded permutation each epoch; the state is ``(epoch, pos)``."""

    def __init__(self, n: int, seed: int, stream: int = 0):
        self.n, self.seed, self.stream = n, seed, stream
        self.epoch, self.pos, self._perm = 0, 0, None

    def _permutation(self) -> list[int]:
        if self._perm is None:
            g = torch.Generator().manual_seed(_mix(self.seed, self.stream, self.epoch))
            self._perm = torch.randperm(self.n, generator=g).tolist()
        return self._perm

    def take(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            perm = self._permutation()
            grab = perm[self.pos:self.pos + k - len(out)]
            out += grab
            self.pos += len(grab)
            if self.pos == self.n:
                self.epoch, self.pos, self._perm = self.epoch + 1, 0, None
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.epoch, self.pos, self._perm = int(d["epoch"]), int(d["pos"]), None


class _MixtureSampler:
    """Picks ``(task index, row)`` pairs for each batch; see :class:`Mixing`."""

    def __init__(self, rows: list[list[int]], batch_size: int, seed: int, mixing: Mixing):
        self.rows, self.batch_size, self.seed, self.mixing = rows, batch_size, seed, mixing
        if mixing is Mixing.EXAMPLES or len(rows) == 1:
            self.pool = [(t, r) for t, task_rows in enumerate(rows) for r in task_rows]
            self.orders = [_ExampleOrder(len(self.pool), seed)]
        else:
            self.orders = [_ExampleOrder(len(task_rows), seed, stream=t + 1) for t, task_rows in enumerate(rows)]

    def batch(self, step: int) -> list[tuple[int, int]]:
        if len(self.orders) == 1:
            return [self.pool[i] for i in self.orders[0].take(self.batch_size)]
        g = torch.Generator().manual_seed(_mix(self.seed, 0x7A5C, step))  # a pure function of the step
        picks = torch.randint(len(self.rows), (self.batch_size,), generator=g).tolist()
        return [(t, self.rows[t][self.orders[t].take(1)[0]]) for t in picks]

    def state_dict(self) -> list[dict[str, int]]:
        return [o.state_dict() for o in self.orders]

    def load_state_dict(self, states: list[dict[str, int]]) -> None:
        for o, s in zip(self.orders, states, strict=True):
            o.load_state_dict(s)


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------
def _task_type(prompt_model) -> str:
    t = getattr(prompt_model, "task_type", "CAUSAL_LM")
    return t.value if isinstance(t, Enum) else str(t)


def _task_batch(task, examples, tokenizer, task_type: str, *, max_length, num_virtual_tokens) -> dict:
    """One task's rows as a batch: causal (left padded, target last), seq2seq, or classification."""
    if task_type == "CAUSAL_LM":
        return dict(task.causal_batch(examples, tokenizer, with_targets=True, max_length=max_length,
                                      num_virtual_tokens=num_virtual_tokens))
    if task_type == "SEQ_2_SEQ_LM":
        return dict(task.seq2seq_batch(examples, tokenizer, max_length=max_length,
                                       num_virtual_tokens=num_virtual_tokens))
    # SEQ_CLS: the formatted text in, the class id as the label.
    rows = [dict(zip(examples, values)) for values in zip(*examples.values())]
    limit = None if max_length is None else max_length - num_virtual_tokens
    enc = tokenizer([task.format(r) for r in rows], padding=True, truncation=limit is not None,
                    max_length=limit, return_tensors="pt")
    labels = torch.tensor([int(r["label"]) for r in rows])
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels,
            "class_labels": labels}


def _check_ids(prompt_model, batch: dict, task_type: str) -> None:
    """Token ids past the model's embeddings get a clear error here, not an IndexError inside torch."""
    check_token_ids(prompt_model, batch["input_ids"])
    if task_type == "SEQ_2_SEQ_LM":  # the decoder embeds the label words' ids
        check_token_ids(prompt_model, batch["labels"], "labels")


_PAD_VALUE = {"labels": -100, "attention_mask": 0, "decoder_attention_mask": 0}


def _merge(batches: list[dict], pad_token_id: int, padding_side: str, task_type: str = "CAUSAL_LM") -> dict:
    """Stack sub-batches (one per task) into one, padding 2-D tensors to a common length.

    Inputs pad on the tokenizer's side; causal labels follow them (they are aligned with
    ``input_ids``), seq2seq labels pad on the right.
    """
    if len(batches) == 1:
        return batches[0]
    out = {}
    for key in batches[0]:
        parts = [b[key] for b in batches]
        if parts[0].dim() == 2:
            width = max(p.shape[1] for p in parts)
            value = _PAD_VALUE.get(key, pad_token_id if "input_ids" in key else 0)
            aligned = key in ("input_ids", "attention_mask") or (key == "labels" and task_type == "CAUSAL_LM")
            side = padding_side if aligned else "right"
            padded = []
            for p in parts:
                pad = p.new_full((p.shape[0], width - p.shape[1]), value)
                padded.append(torch.cat([pad, p] if side == "left" else [p, pad], dim=1))
            parts = padded
        out[key] = torch.cat(parts)
    return out


def _trim(batch: dict, task_type: str) -> dict:
    """Drop columns that are padding in every row (inputs; causal labels too)."""
    mask = batch["attention_mask"]
    used = mask.bool().any(0).nonzero().flatten()
    if len(used) == 0 or (used[0] == 0 and used[-1] == mask.shape[1] - 1):
        return batch
    lo, hi = int(used[0]), int(used[-1]) + 1
    keys = ["input_ids", "attention_mask"] + (["labels"] if task_type == "CAUSAL_LM" else [])
    return {k: v[:, lo:hi] if k in keys else v for k, v in batch.items()}


def _logits_to_keep(labels: torch.Tensor) -> int:
    """Positions the causal loss needs: from one before the first label token to the end (0 = all)."""
    cols = (labels != -100).any(0).nonzero().flatten()
    if len(cols) == 0:
        return 0
    k = labels.shape[1] - int(cols[0]) + 1
    return 0 if k >= labels.shape[1] else k


def model_inputs(prompt_model, batch: dict) -> dict:
    """The keys of a training batch that ``prompt_model(**...)`` takes.

    ``class_labels`` stays out; ``task_ids`` goes in only for a multitask prompt encoder.
    """
    keep = {"input_ids", "attention_mask", "labels", "decoder_attention_mask", "logits_to_keep"}
    if getattr(getattr(prompt_model, "prompt_encoder", None), "needs_task_ids", False):
        keep.add("task_ids")
    return {k: v for k, v in batch.items() if k in keep}


def _default_loss(prompt_model, batch: dict) -> torch.Tensor:
    """The task loss. Causal LMs without active dropout take the shared-prompt path.

    Every row starts with the same prompt, so its hidden states are the same in every row:
    :func:`~softprompt.prefix_cache.shared_prompt_forward` runs the prompt once per batch
    (``T + B*L`` positions instead of ``B*(T + L)``), with the same loss and gradients. Dropout
    would draw one mask for all rows' prompt positions, and an MPT batch mixing tasks has
    different prompts per row: both take the plain ``prompt_model(...)`` path.
    """
    task_id = _shared_prompt_task(prompt_model, batch)
    if task_id is not False:
        from .prefix_cache import shared_prompt_forward

        return shared_prompt_forward(prompt_model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                     logits_to_keep=batch.get("logits_to_keep", 0), task_id=task_id).loss
    return prompt_model(**model_inputs(prompt_model, batch)).loss


def _shared_prompt_task(prompt_model, batch: dict):
    """The task id for the shared-prompt path (None for a vanilla prompt), or False where it does not apply."""
    if _task_type(prompt_model) != "CAUSAL_LM" or _dropout_active(prompt_model.base_model):
        return False
    if not getattr(prompt_model.prompt_encoder, "needs_task_ids", False):
        return None
    ids = batch["task_ids"]
    return int(ids[0]) if bool((ids == ids[0]).all()) else False


def _dropout_active(model: torch.nn.Module) -> bool:
    """Whether a forward pass of ``model`` would drop anything (dropout modules or attention dropout)."""
    if not model.training:
        return False
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        return True
    config = getattr(model, "config", None)
    rates = [v for k, v in vars(config).items() if ("dropout" in k or "pdrop" in k) and isinstance(v, float)] \
        if config is not None else []
    return any(r > 0 for r in rates)


class _Batches:
    """Turns sampled ``(task, row)`` picks into model-ready batches."""

    def __init__(self, prompt_model, tokenizer, tasks, rows, cfg: TrainingConfig):
        self.tasks, self.tokenizer, self.cfg = tasks, tokenizer, cfg
        self.task_type = _task_type(prompt_model)
        self.num_virtual_tokens = int(getattr(prompt_model, "num_virtual_tokens", 0) or 0)
        self.max_length = batch_max_length(prompt_model, tokenizer, cfg.max_length, self.num_virtual_tokens)
        self.model = prompt_model
        if self.task_type == "SEQ_CLS":
            for task in tasks:
                check_num_labels(prompt_model, task)
        self.single_task_id = cfg.task_id if len(tasks) == 1 else None
        self.sampler = _MixtureSampler(rows, cfg.batch_size, cfg.seed, cfg.mixing)
        self.device = next(prompt_model.parameters()).device

    def __call__(self, step: int) -> dict:
        picks = self.sampler.batch(step)
        by_task: dict[int, list[int]] = {}
        for t, r in picks:
            by_task.setdefault(t, []).append(r)
        parts = []
        for t, task_rows in sorted(by_task.items()):
            examples = self.tasks[t].splits["train"][task_rows]  # dict of lists
            b = _task_batch(self.tasks[t], examples, self.tokenizer, self.task_type,
                            max_length=self.max_length, num_virtual_tokens=self.num_virtual_tokens)
            b = {k: v for k, v in b.items() if torch.is_tensor(v)}
            tid = self.single_task_id if self.single_task_id is not None else t
            b["task_ids"] = torch.full((len(task_rows),), tid, dtype=torch.long)
            parts.append(b)
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        merged = _merge(parts, pad, tok.padding_side, self.task_type)
        batch = _trim(merged, self.task_type)
        _check_ids(self.model, batch, self.task_type)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        if self.task_type == "CAUSAL_LM":
            batch["logits_to_keep"] = _logits_to_keep(batch["labels"])
        return batch


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------
def train(
    prompt_model,
    tokenizer,
    task,
    *,
    steps: int = 100,
    batch_size: int = 8,
    lr: float | None = None,
    optimizer: str = "adamw",
    schedule: str | None = None,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
    weight_decay: float | None = None,
    eval_every: int | None = None,
    eval_examples: int | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    callbacks: Sequence[Callback] = (),
    seed: int = 0,
    progress: bool = True,
    max_length: int | None = None,
    loss_fn: Callable[[Any, dict], torch.Tensor] | None = None,
    train_examples: int | None = None,
    config: TrainingConfig | None = None,
    **more: Any,
) -> History:
    """Train the prompt of ``prompt_model`` on ``task`` (a Task, or a list of Tasks for a mixture).

    Only parameters with ``requires_grad`` train: the prompt (and the head for SEQ_CLS);
    the base model stays frozen. Every keyword is a field of :class:`TrainingConfig`
    (``config=`` gives them all at once); the rest:

    Args:
        callbacks: :class:`softprompt.Callback` objects (live curves, prompt snapshots, early stop).
        progress: show a ``tqdm`` progress bar.
        loss_fn: ``loss_fn(prompt_model, batch) -> loss`` replaces the default loss
            (``prompt_model(**model_inputs(prompt_model, batch)).loss``). ``batch`` holds
            ``input_ids, attention_mask, labels, class_labels, task_ids`` and, for causal LMs,
            ``logits_to_keep``. MPT's distillation uses this.

    Checkpoints: with ``checkpoint_dir``, a checkpoint is saved every ``checkpoint_every`` steps
    and at the end. Calling ``train`` again with the same settings resumes from the newest one
    and ends exactly where an uninterrupted run would have: same prompt, same optimizer state,
    same data order and dropout draws (a killed process loses at most ``checkpoint_every`` steps).
    Callbacks keep no state in checkpoints: a resumed run starts them afresh. A damaged newest
    checkpoint (a truncated file, broken JSON) is skipped with a warning and deleted, and the run
    resumes from the newest intact one (recomputing the lost steps exactly); a checkpoint already
    past ``steps`` is an error, not a silent return of the longer run.

    Raises:
        TypeError: ``prompt_model`` is not a PromptModel, ``tokenizer`` not a tokenizer, or ``task``
            not a Task or a list of Tasks.
        ValueError: bad settings, or a checkpoint_dir that cannot be resumed with them.

    Returns:
        :class:`History` of loss, learning rate, gradient norm and validation metrics.
        A resumed run returns the full history, restored from the checkpoint.
    """
    if config is None:
        config = TrainingConfig(
            steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, schedule=schedule,
            warmup_steps=warmup_steps, max_grad_norm=max_grad_norm, weight_decay=weight_decay,
            eval_every=eval_every, eval_examples=eval_examples, checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every, resume=resume, seed=seed, max_length=max_length,
            train_examples=train_examples, **more,
        )
    elif more:
        raise ValueError(f"give either config= or keyword settings, not both (got {sorted(more)}).")
    cfg = config
    _check_train_arguments(prompt_model, tokenizer, task)
    tasks = list(task) if isinstance(task, (list, tuple)) else [task]
    _check_task_ids(prompt_model, tasks, cfg)
    rows = _training_rows(tasks, cfg)
    named = [(n, p) for n, p in prompt_model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("prompt_model has no trainable parameters: build it with softprompt.get_prompt_model, "
                         "or load it with PromptModel.from_pretrained(..., is_trainable=True).")
    params = [p for _, p in named]
    opt = make_optimizer(params, cfg.optimizer, cfg.lr, cfg.weight_decay)
    batches = _Batches(prompt_model, tokenizer, tasks, rows, cfg)
    loss_fn = loss_fn or _default_loss
    history = History()
    start = 0

    ckpt = None
    if cfg.checkpoint_dir is not None:
        root = Path(cfg.checkpoint_dir)
        if root.exists() and not root.is_dir():
            raise ValueError(f"checkpoint_dir={cfg.checkpoint_dir!r} is a file, not a directory; "
                             "pass a directory (it is created if missing).")
        if not cfg.resume:
            remove_checkpoints(root)
        remove_stale_temporaries(root)  # what a save killed mid-way left behind
        ckpt, damaged = load_newest_intact(root)
    if ckpt is not None:
        start, history = _resume(ckpt, named, opt, batches, cfg, tasks)
        for path, detail in damaged:  # newer than the one resumed from: the run recomputes them exactly
            warnings.warn(f"the checkpoint {path} is damaged ({detail}); resuming from the newest intact one, "
                          f"{ckpt.path.name} (step {ckpt.step}), and deleting {path.name}: the resumed run "
                          "recomputes its steps exactly.", UserWarning, stacklevel=2)
            shutil.rmtree(path, ignore_errors=True)
    else:
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)

    was_training = prompt_model.training
    state = TrainState(step=start, max_steps=cfg.steps, prompt_model=prompt_model, history=history)
    if history.metrics:
        state.metrics = dict(history.metrics[-1][1])
    for cb in callbacks:
        cb.on_train_begin(state)
    if cfg.eval_every and start == 0:
        _evaluate_into(prompt_model, tokenizer, tasks, cfg, state, callbacks)

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc="prompt tuning", leave=True)
    prompt_model.train()
    try:
        for index in range(start, cfg.steps):
            step = index + 1
            batch = batches(index)
            lr_now = cfg.lr * lr_factor(index, schedule=cfg.schedule, warmup_steps=cfg.warmup_steps,
                                        total_steps=cfg.steps)
            for group in opt.param_groups:
                group["lr"] = lr_now
            problem = _step(prompt_model, loss_fn, batch, opt, params, cfg, history, step, lr_now)
            if problem:
                history.stop_reason = problem
                warnings.warn(problem, RuntimeWarning, stacklevel=2)
                break
            state.step, state.loss, state.lr = step, history.loss[-1][1], lr_now
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss:.4f}", lr=f"{lr_now:.3g}")
            for cb in callbacks:
                cb.on_step(state)
            last = step == cfg.steps or state.should_stop
            if cfg.eval_every and (step % cfg.eval_every == 0 or last):
                prompt_model.eval()
                _evaluate_into(prompt_model, tokenizer, tasks, cfg, state, callbacks)
                prompt_model.train()
            if state.should_stop and history.stop_reason is None:
                history.stop_reason = f"a callback stopped training at step {step}"
            if cfg.checkpoint_dir is not None and (last or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
                _save(cfg, step, named, opt, batches, history, tasks)
            if state.should_stop:
                break
    finally:
        bar.close()
        prompt_model.train(was_training)
    for cb in callbacks:
        cb.on_train_end(state)
    return history


def _check_train_arguments(prompt_model, tokenizer, task) -> None:
    """Clear TypeErrors for the wrong kind of object in train()'s three positional arguments."""
    from .prompt_model import PromptModel
    from .tasks.task import Task

    if not isinstance(prompt_model, PromptModel):
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


def _training_rows(tasks, cfg: TrainingConfig) -> list[list[int]]:
    """Per task, the training rows to draw from (all, or a seeded few-shot subset)."""
    if not tasks:
        raise ValueError("task is an empty list: give a Task or a non-empty list of Tasks.")
    rows = []
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
        if cfg.train_examples is None:
            rows.append(list(range(n)))
            continue
        if cfg.train_examples > n:
            raise ValueError(f"train_examples={cfg.train_examples} but task {name!r} has only {n} training "
                             "examples; lower train_examples or use None for all.")
        g = torch.Generator().manual_seed(_mix(cfg.seed, 0xF5, t))
        rows.append(sorted(torch.randperm(n, generator=g)[: cfg.train_examples].tolist()))
    return rows


def _step(prompt_model, loss_fn, batch, opt, params, cfg, history, step, lr_now) -> str | None:
    """One optimizer step. Returns a message (and leaves the prompt untouched) if anything is not finite."""
    loss = loss_fn(prompt_model, batch)
    if not torch.isfinite(loss.detach()).all():
        return _nonfinite("loss", loss.item(), step, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if not torch.isfinite(grad_norm):
        opt.zero_grad(set_to_none=True)
        return _nonfinite("gradient norm", grad_norm.item(), step, cfg)
    before = [p.detach().clone() for p in params]  # the prompt is small: keep the last good values
    opt.step()
    if not all(torch.isfinite(p).all() for p in params):
        with torch.no_grad():
            for p, b in zip(params, before):
                p.copy_(b)
        return _nonfinite("prompt after the optimizer step", float("nan"), step, cfg)
    history.loss.append((step, loss.item()))
    history.lr.append((step, lr_now))
    history.grad_norm.append((step, grad_norm.item()))
    return None


def _nonfinite(what: str, value: float, step: int, cfg: TrainingConfig) -> str:
    return (f"training stopped at step {step}: the {what} is {value} (not finite). The prompt keeps its values "
            f"from step {step - 1}. Try a lower lr (now {cfg.lr}), gradient clipping (max_grad_norm, now "
            f"{cfg.max_grad_norm}), or float32 weights.")


def _check_task_ids(prompt_model, tasks, cfg: TrainingConfig) -> None:
    """A multitask (MPT) prompt: ``cfg.task_id`` (one task) or the ids ``0..len(tasks)-1`` must be its tasks."""
    if not prompt_model.needs_task_ids:
        return
    num_tasks = num_tasks_of(prompt_model)
    if len(tasks) == 1:
        check_task_id(cfg.task_id, num_tasks, "task_id")
    else:  # task t of the list trains task id t
        as_task_ids(torch.arange(len(tasks)), len(tasks), num_tasks, name="task_ids (task k of the list trains id k)")


def _evaluate_into(prompt_model, tokenizer, tasks, cfg, state, callbacks) -> None:
    metrics = _evaluate(prompt_model, tokenizer, tasks, cfg)
    state.metrics = metrics
    state.history.metrics.append((state.step, metrics))
    for cb in callbacks:
        cb.on_evaluate(state)


def _evaluate(prompt_model, tokenizer, tasks, cfg: TrainingConfig) -> dict[str, float]:
    """Validation metrics (numbers only). A mixture reports each task's and their mean accuracy."""
    from .evaluation import evaluate

    needs_ids = prompt_model.needs_task_ids
    was_training = prompt_model.training
    prompt_model.eval()
    out: dict[str, float] = {}
    try:
        for t, task in enumerate(tasks):
            kw = {"task_id": cfg.task_id if len(tasks) == 1 else t} if needs_ids else {}
            result = evaluate(prompt_model, tokenizer, task, split=cfg.eval_split,
                              max_examples=cfg.eval_examples, **kw)
            numbers = {k: float(v) for k, v in result.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if len(tasks) == 1:
                return numbers
            out.update({f"{k}/{task.name}": v for k, v in numbers.items()})
        accs = [v for k, v in out.items() if k.startswith("accuracy/")]
        if accs:
            out["accuracy"] = sum(accs) / len(accs)
        return out
    finally:
        prompt_model.train(was_training)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def _fingerprint(cfg: TrainingConfig, tasks) -> dict[str, Any]:
    d = {k: cfg.to_dict()[k] for k in TrainingConfig._TRAJECTORY}
    d["tasks"] = [getattr(t, "name", None) for t in tasks]
    # what a task name alone misses: an edited template or label words, a changed training split
    d["task_contents"] = [[t.template, list(t.label_words), len(t.splits["train"])] for t in tasks]
    if cfg.schedule is not Schedule.CONSTANT:
        d["steps"] = cfg.steps  # a decaying schedule depends on the total
    return d


_LATER_FINGERPRINT_KEYS = {"task_contents"}


def _save(cfg, step, named, opt, batches, history, tasks) -> None:
    save_checkpoint(
        cfg.checkpoint_dir, step,
        params={n: p.detach() for n, p in named},
        optimizer=opt,
        state={"history": history.to_dict(), "config": cfg.to_dict(), "fingerprint": _fingerprint(cfg, tasks),
               "data_order": batches.sampler.state_dict()},
        keep=cfg.keep_checkpoints,
    )


def _resume(ckpt, named, opt, batches, cfg, tasks) -> tuple[int, History]:
    """Load a checkpoint into the prompt, optimizer, RNGs and data order; check it fits this run."""
    path = ckpt.path
    saved, now = ckpt.state["fingerprint"], _fingerprint(cfg, tasks)
    if ckpt.step > cfg.steps:
        # An error, not a warning: the caller asked for a `steps`-step prompt, and the checkpoint can only
        # give a longer-trained one (the shorter state is gone). Returning it would be a silent wrong result.
        fix = (f"steps>={ckpt.step}" if "steps" not in saved
               else f"steps={saved['steps']} (its {saved.get('schedule')} schedule depends on the total)")
        raise ValueError(f"steps={cfg.steps} but checkpoint_dir {path.parent} already holds a run at step "
                         f"{ckpt.step} ({path.name}); resuming would return that {ckpt.step}-step prompt. Pass "
                         f"{fix} to continue it, resume=False to start over (deletes its checkpoints), or a fresh "
                         "checkpoint_dir.")
    # checkpoints from before a key was fingerprinted are compared on the keys they have
    diff = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now)
            if saved.get(k) != now.get(k) and (k in saved or k not in _LATER_FINGERPRINT_KEYS)}
    if diff:
        listing = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(f"the checkpoint in {path} was made with other settings ({listing}). Use the same "
                         "settings to resume, or resume=False (deletes its checkpoints) or another checkpoint_dir.")
    names = {n: p for n, p in named}
    if set(ckpt.params) != set(names) or any(ckpt.params[n].shape != names[n].shape for n in names):
        raise ValueError(f"the checkpoint in {path} holds parameters "
                         f"{ {n: tuple(t.shape) for n, t in ckpt.params.items()} } but this model trains "
                         f"{ {n: tuple(p.shape) for n, p in names.items()} }; use a checkpoint_dir of this model.")
    with torch.no_grad():
        for n, p in names.items():
            p.copy_(ckpt.params[n])
    opt.load_state_dict(ckpt.optimizer_state)
    restore_rng(*ckpt.rng)
    batches.sampler.load_state_dict(ckpt.state["data_order"])
    history = History.from_dict(ckpt.state["history"])
    history.stop_reason = None  # the run goes on
    return ckpt.step, history
