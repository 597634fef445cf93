"""Training batches: the rows :func:`softprompt.train` and :class:`softprompt.TaskCollator` feed the model.

Prompt tuning (Lester et al. 2021, §2) trains on ordinary task batches; the prompt is prepended
inside the model. A batch here is a dict of tensors:

* causal LMs: ``input_ids, attention_mask, labels`` ``(B, L)``, left padded with the target last,
  plus ``logits_to_keep`` (an int: the LM head runs only at the label positions);
* seq2seq: encoder ``input_ids, attention_mask`` ``(B, L)`` and decoder ``labels`` ``(B, Ld)``;
* classification: ``input_ids, attention_mask`` ``(B, L)`` and the class ids as ``labels`` ``(B,)``;

and, for every task type, ``class_labels`` ``(B,)`` and ``task_ids`` ``(B,)`` (the multitask setting of
Wang et al. 2023, §3: row b belongs to task ``task_ids[b]``).

The order of the examples is a pure function of the seed and the step (a seeded permutation per
epoch, :class:`ExampleOrder`), so a resumed run draws exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from enum import Enum

import torch

from .enums import TaskType
from .context import batch_max_length, check_num_labels, check_token_ids, warn_if_cut
from .model_kind import model_task_type

__all__ = [
    "Mixing", "mix_seed", "ExampleOrder", "MixtureSampler", "training_rows", "task_batch", "check_ids", "merge",
    "trim", "logits_to_keep", "model_inputs", "loss_items", "Batches",
]


class Mixing(str, Enum):
    """How a multitask batch is drawn from a list of tasks."""

    EXAMPLES = "examples"  # uniform over all examples pooled: big tasks appear more often
    TASKS = "tasks"  # each row picks a task uniformly, then the next example of that task


# ---------------------------------------------------------------------------------------------
# Data order: a seeded shuffle per epoch, resumable from (epoch, position)
# ---------------------------------------------------------------------------------------------
def mix_seed(*ints: int) -> int:
    """A generator seed from several integers (a simple, stable hash)."""
    h = 0x9E3779B97F4A7C15
    for i in ints:
        h = (h ^ (i & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


class ExampleOrder:
    """Indices ``0..n-1`` in a fresh seeded permutation each epoch; the state is ``(epoch, pos)``."""

    def __init__(self, n: int, seed: int, stream: int = 0):
        self.n, self.seed, self.stream = n, seed, stream
        self.epoch, self.pos, self._perm = 0, 0, None

    def _permutation(self) -> list[int]:
        if self._perm is None:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.stream, self.epoch))
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


class MixtureSampler:
    """Picks ``(task index, row)`` pairs for each batch; see :class:`Mixing`."""

    def __init__(self, rows: list[list[int]], batch_size: int, seed: int, mixing: Mixing):
        self.rows, self.batch_size, self.seed, self.mixing = rows, batch_size, seed, mixing
        if mixing is Mixing.EXAMPLES or len(rows) == 1:
            self.pool = [(t, r) for t, task_rows in enumerate(rows) for r in task_rows]
            self.orders = [ExampleOrder(len(self.pool), seed)]
        else:
            self.orders = [ExampleOrder(len(task_rows), seed, stream=t + 1) for t, task_rows in enumerate(rows)]

    def batch(self, step: int) -> list[tuple[int, int]]:
        if len(self.orders) == 1:
            return [self.pool[i] for i in self.orders[0].take(self.batch_size)]
        g = torch.Generator().manual_seed(mix_seed(self.seed, 0x7A5C, step))  # a pure function of the step
        picks = torch.randint(len(self.rows), (self.batch_size,), generator=g).tolist()
        return [(t, self.rows[t][self.orders[t].take(1)[0]]) for t in picks]

    def state_dict(self) -> list[dict[str, int]]:
        return [o.state_dict() for o in self.orders]

    def load_state_dict(self, states: list[dict[str, int]]) -> None:
        for o, s in zip(self.orders, states, strict=True):
            o.load_state_dict(s)


def training_rows(tasks, train_examples: int | None, seed: int) -> list[list[int]]:
    """Per task, the training rows to draw from: all, or a seeded few-shot subset of ``train_examples``.

    The tasks are checked first (:func:`softprompt.training_checks.check_tasks`).
    """
    rows = []
    for t, task in enumerate(tasks):
        n = len(task.splits["train"])
        if train_examples is None:
            rows.append(list(range(n)))
            continue
        g = torch.Generator().manual_seed(mix_seed(seed, 0xF5, t))
        rows.append(sorted(torch.randperm(n, generator=g)[:train_examples].tolist()))
    return rows


# ---------------------------------------------------------------------------------------------
# One task's rows -> tensors; several tasks' -> one batch
# ---------------------------------------------------------------------------------------------
def task_batch(task, examples, tokenizer, task_type: str, *, max_length, num_virtual_tokens) -> dict:
    """One task's rows as a batch: causal (left padded, target last), seq2seq, or classification."""
    if task_type == TaskType.CAUSAL_LM:
        return dict(task.causal_batch(examples, tokenizer, with_targets=True, max_length=max_length,
                                      num_virtual_tokens=num_virtual_tokens))
    if task_type == TaskType.SEQ_2_SEQ_LM:
        return dict(task.seq2seq_batch(examples, tokenizer, max_length=max_length,
                                       num_virtual_tokens=num_virtual_tokens))
    # SEQ_CLS: the formatted text in, the class id as the label.
    rows = [dict(zip(examples, values)) for values in zip(*examples.values())]
    limit = None if max_length is None else max_length - num_virtual_tokens
    enc = tokenizer([task.format(r) for r in rows], padding=True, truncation=limit is not None,
                    max_length=limit, return_tensors="pt")
    labels = torch.tensor([int(r["label"]) for r in rows])  # (B,)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels,
            "class_labels": labels}


def check_ids(prompt_model, batch: dict, task_type: str) -> None:
    """Token ids past the model's embeddings get a clear error here, not an IndexError inside torch."""
    check_token_ids(prompt_model, batch["input_ids"])
    if task_type == TaskType.SEQ_2_SEQ_LM:  # the decoder embeds the label words' ids
        check_token_ids(prompt_model, batch["labels"], "labels", ignore_index=-100)


_PAD_VALUE = {"labels": -100, "attention_mask": 0, "decoder_attention_mask": 0}


def merge(batches: list[dict], pad_token_id: int, padding_side: str, task_type: str = "CAUSAL_LM") -> dict:
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
            aligned = key in ("input_ids", "attention_mask") or (key == "labels" and task_type == TaskType.CAUSAL_LM)
            side = padding_side if aligned else "right"
            padded = []
            for p in parts:
                pad = p.new_full((p.shape[0], width - p.shape[1]), value)  # (B_k, width - L_k)
                padded.append(torch.cat([pad, p] if side == "left" else [p, pad], dim=1))  # (B_k, width)
            parts = padded
        out[key] = torch.cat(parts)  # (B, width) or (B,)
    return out


def trim(batch: dict, task_type: str) -> dict:
    """Drop columns that are padding in every row (inputs; causal labels too)."""
    mask = batch["attention_mask"]  # (B, L)
    used = mask.bool().any(0).nonzero().flatten()  # the columns some row uses
    if len(used) == 0 or (used[0] == 0 and used[-1] == mask.shape[1] - 1):
        return batch
    lo, hi = int(used[0]), int(used[-1]) + 1
    keys = ["input_ids", "attention_mask"] + (["labels"] if task_type == TaskType.CAUSAL_LM else [])
    return {k: v[:, lo:hi] if k in keys else v for k, v in batch.items()}


def logits_to_keep(labels: torch.Tensor) -> int:
    """Positions the causal loss needs: from one before the first label token to the end (0 = all)."""
    cols = (labels != -100).any(0).nonzero().flatten()  # labels (B, L): the columns holding a target
    if len(cols) == 0:
        return 0
    k = labels.shape[1] - int(cols[0]) + 1
    return 0 if k >= labels.shape[1] else k


def model_inputs(prompt_model, batch: dict) -> dict:
    """The keys of a training batch that ``prompt_model(**...)`` takes.

    ``class_labels`` stays out; ``task_ids`` goes in only for a multitask prompt encoder.
    """
    keep = {"input_ids", "attention_mask", "labels", "decoder_attention_mask", "logits_to_keep"}
    if prompt_model.needs_task_ids:
        keep.add("task_ids")
    return {k: v for k, v in batch.items() if k in keep}


def loss_items(batch: dict) -> int:
    """What the task loss averages over: label tokens (causal, seq2seq: ``labels != -100``), rows (SEQ_CLS)."""
    return int((batch["labels"] != -100).sum())


class Batches:
    """``batches(step)``: the model-ready batch of optimizer step ``step`` (0-based), from sampled ``(task, row)``.

    ``rows`` are each task's training rows (:func:`training_rows`); ``cfg`` a
    :class:`~softprompt.TrainingConfig` (``batch_size``, ``seed``, ``mixing``, ``max_length``, ``task_id``).
    ``sampler`` holds the data order that a checkpoint saves.
    """

    def __init__(self, prompt_model, tokenizer, tasks, rows, cfg):
        self.tasks, self.tokenizer, self.cfg = tasks, tokenizer, cfg
        self.task_type = model_task_type(prompt_model)
        self.num_virtual_tokens = int(getattr(prompt_model, "num_virtual_tokens", 0) or 0)
        self.max_length = batch_max_length(prompt_model, tokenizer, cfg.max_length, self.num_virtual_tokens)
        warn_if_cut(prompt_model, tokenizer, [(task, task.splits["train"][r]) for task, r in zip(tasks, rows) if r],
                    max_length=cfg.max_length, num_virtual_tokens=self.num_virtual_tokens, training=True,
                    what="training examples", stacklevel=3)  # once, if the cut is ours (stack: train's caller)
        self.model = prompt_model
        if self.task_type == TaskType.SEQ_CLS:
            for task in tasks:
                check_num_labels(prompt_model, task)
        self.single_task_id = cfg.task_id if len(tasks) == 1 else None
        self.sampler = MixtureSampler(rows, cfg.batch_size, cfg.seed, cfg.mixing)
        self.device = next(prompt_model.parameters()).device

    def __call__(self, step: int) -> dict:
        picks = self.sampler.batch(step)
        by_task: dict[int, list[int]] = {}
        for t, r in picks:
            by_task.setdefault(t, []).append(r)
        parts = []
        for t, task_rows in sorted(by_task.items()):
            examples = self.tasks[t].splits["train"][task_rows]  # dict of lists
            b = task_batch(self.tasks[t], examples, self.tokenizer, self.task_type,
                           max_length=self.max_length, num_virtual_tokens=self.num_virtual_tokens)
            b = {k: v for k, v in b.items() if torch.is_tensor(v)}
            tid = self.single_task_id if self.single_task_id is not None else t
            b["task_ids"] = torch.full((len(task_rows),), tid, dtype=torch.long)  # (B_t,)
            parts.append(b)
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        merged = merge(parts, pad, tok.padding_side, self.task_type)
        batch = trim(merged, self.task_type)
        check_ids(self.model, batch, self.task_type)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        if self.task_type == TaskType.CAUSAL_LM:
            batch["logits_to_keep"] = logits_to_keep(batch["labels"])
        return batch

    def split(self, batch: dict, n: int) -> list[tuple[dict, float | None]]:
        """Gradient accumulation: ``batch`` as ``n`` micro-batches of ``B / n`` consecutive rows, each with a weight.

        The task loss is a mean over :func:`loss_items` (label tokens, or rows); micro-batch ``i``'s mean
        times ``weight_i = items_i / items`` sums to the whole batch's mean, so the accumulated gradient is
        the whole batch's (to float rounding). Each micro-batch drops its all-padding columns (memory).
        ``n == 1``: ``[(batch, None)]``, the batch itself, unweighted.
        """
        if n == 1:
            return [(batch, None)]
        B = len(batch["input_ids"])
        size, total = B // n, max(loss_items(batch), 1)
        out = []
        for i in range(n):
            part = {k: v[i * size:(i + 1) * size] if torch.is_tensor(v) else v for k, v in batch.items()}
            part = trim(part, self.task_type)  # (B / n, L_i), L_i <= L
            if self.task_type == TaskType.CAUSAL_LM:
                part["logits_to_keep"] = logits_to_keep(part["labels"])
            out.append((part, loss_items(part) / total))
        return out
