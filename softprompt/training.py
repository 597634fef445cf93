"""Training a soft prompt: ``softprompt.train(prompt_model, tokenizer, task) -> History``.

Prompt tuning (Lester et al. 2021, §2) freezes the model and learns only the prompt P, maximizing
log p(Y | [P; X]). Each step: a batch (:mod:`softprompt.batching`) -> ``loss = prompt_model(**batch).loss``
(:func:`plain_loss`) -> backward -> clip -> optimizer step at the scheduled lr (:mod:`softprompt.optim`;
Lester §3: Adafactor, constant lr 0.3); now and then evaluate, and checkpoint so that a killed run resumes
exactly (:mod:`softprompt.resume`). Beside it: :mod:`softprompt.training_checks` (error messages),
:mod:`softprompt.shared_prompt` (the default loss's speed-up, same loss and gradient), :mod:`softprompt.precision`
(a bfloat16/float16 model, a float32 prompt) and gradient accumulation (``Batches.split``). A list of tasks
trains one prompt on a mixture (Wang et al. 2023, §3); each row carries its task's index as ``task_ids``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import Enum

import torch

from .batching import Batches, Mixing, model_inputs, training_rows
from .callbacks import Callback, TrainState
from .config_checks import as_enum
from .evaluation import evaluate
from .history import History
from .optim import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, OptimizerName, Schedule, lr_factor, make_optimizer
from .precision import Precision, keep_float32
from .progress import progress_bar
from .resume import save, start_or_resume
from .shared_prompt import shared_prompt_loss
from .task_ids import check_task_id
from .training_checks import (
    check_overrides, check_train_arguments, check_training_config, nonfinite_message, trainable_parameters,
)

__all__ = ["Mixing", "TrainingConfig", "History", "train", "model_inputs", "plain_loss", "default_loss"]


@dataclass
class TrainingConfig:
    """The knobs of :func:`train`; every field has a sensible default for prompt tuning."""

    steps: int = 100  # optimizer steps to take in total (a resumed run counts the steps already done)
    batch_size: int = 8  # rows per optimizer step
    optimizer: OptimizerName = OptimizerName.ADAMW  # "adamw" or "adafactor" (Lester §3)
    lr: float | None = None  # None: 3e-2 for AdamW, 0.3 for Adafactor (Lester §3)
    weight_decay: float | None = None  # None: 0 for AdamW, 1e-5 for Adafactor (Lester §3)
    schedule: Schedule | None = None  # None: "constant" for Adafactor (Lester), "linear" for AdamW
    warmup_steps: int = 0  # steps of linear warmup from lr 0
    max_grad_norm: float | None = 1.0  # clip the prompt's gradient norm; None: no clipping
    seed: int = 0  # seeds torch and python `random` at the start, and the data order
    max_length: int | None = None  # truncate example text so that prompt + text + target fit this
    grad_accum_steps: int = 1  # run each step's batch_size rows as this many micro-batches (less memory, same step)
    train_examples: int | None = None  # few-shot: use only this many (seeded) training examples per task
    mixing: Mixing = Mixing.EXAMPLES  # multitask only: "examples" (pooled) or "tasks" (uniform over tasks)
    task_id: int = 0  # the task id of every row when a single task trains a multitask prompt
    eval_every: int | None = None  # evaluate every N steps (and at step 0 and at the end); None: never
    eval_examples: int | None = None  # evaluate on at most this many validation examples
    eval_split: str = "validation"  # the split evaluation reads
    eval_batch_size: int = 32  # rows per evaluation forward pass (memory only)
    checkpoint_dir: str | None = None  # where checkpoints go; None: no checkpoints
    checkpoint_every: int | None = None  # save every N steps (and at the end); None: at the end only
    keep_checkpoints: int = 2  # how many of the newest checkpoints to keep
    resume: bool = True  # continue from the newest checkpoint in checkpoint_dir (False: delete them, start over)

    def __post_init__(self):
        self.optimizer = as_enum(OptimizerName, self.optimizer, "optimizer")
        self.mixing = as_enum(Mixing, self.mixing, "mixing")
        if self.schedule is None:
            self.schedule = Schedule.CONSTANT if self.optimizer is OptimizerName.ADAFACTOR else Schedule.LINEAR
        self.schedule = as_enum(Schedule, self.schedule, "schedule")
        self.lr = DEFAULT_LR[self.optimizer] if self.lr is None else self.lr
        self.weight_decay = DEFAULT_WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else self.weight_decay
        check_training_config(self)  # ValueErrors naming the field and the fix
        self.checkpoint_dir = None if self.checkpoint_dir is None else str(self.checkpoint_dir)
        self.task_id = check_task_id(self.task_id, None, "task_id")  # an int >= 0; its range: train() checks it

    def to_dict(self) -> dict:
        return {k: v.value if isinstance(v, Enum) else v for k, v in asdict(self).items()}


def plain_loss(prompt_model, batch: dict) -> torch.Tensor:
    """The task loss -log p(Y | [P; X]) of Lester et al. 2021, §2: the prompt model's own forward."""
    return prompt_model(**model_inputs(prompt_model, batch)).loss


def default_loss(prompt_model, batch: dict) -> torch.Tensor:
    """:func:`plain_loss`, faster where it applies: the prompt run once per batch (:mod:`softprompt.shared_prompt`)."""
    fast = shared_prompt_loss(prompt_model, batch)
    return plain_loss(prompt_model, batch) if fast is None else fast


def train(prompt_model, tokenizer, task, config: TrainingConfig | None = None, *, callbacks: Sequence[Callback] = (),
          loss_fn: Callable[..., torch.Tensor] | None = None, progress: bool = True, **overrides) -> History:
    """Train the prompt of ``prompt_model`` on ``task`` (a Task, or a list of Tasks for a mixture).

    Only parameters with ``requires_grad`` train (the prompt; a SEQ_CLS head too). Settings: a :class:`TrainingConfig`
    whose fields keyword ``overrides`` replace (``train(pm, tok, task, steps=20)``; with a ``config``, as
    given: pass ``lr`` too when overriding its ``optimizer``).

    Args:
        callbacks: :class:`softprompt.Callback` objects (live curves, prompt snapshots, early stop).
        loss_fn: ``loss_fn(prompt_model, batch) -> loss`` replaces :func:`default_loss` (MPT's distillation);
            ``batch``: ``input_ids, attention_mask, labels, class_labels, task_ids`` (+ ``logits_to_keep``).
        progress: show a ``tqdm`` progress bar.

    Checkpoints: with ``checkpoint_dir``, one every ``checkpoint_every`` steps and at the end; calling
    ``train`` again with the same settings resumes from the newest and ends exactly where an
    uninterrupted run would (:mod:`softprompt.resume`). Callbacks keep no state in checkpoints.

    Raises TypeError for the wrong kind of argument or an unknown setting, ValueError for a bad value or
    a checkpoint_dir these settings cannot resume. Returns the :class:`History` (a resumed run: all of it).
    """
    check_overrides(overrides, [f.name for f in dataclasses.fields(TrainingConfig)])
    cfg = TrainingConfig(**overrides) if config is None else dataclasses.replace(config, **overrides)
    tasks = check_train_arguments(prompt_model, tokenizer, task, cfg)  # the list of tasks, checked
    named = trainable_parameters(prompt_model)  # [(name, parameter)]: the prompt (+ a SEQ_CLS head)
    keep_float32(prompt_model)  # what trains stays float32 in a bfloat16/float16 model (softprompt.precision)
    amp = Precision(prompt_model)  # autocast for a half-precision model; float16: loss scaling
    params = [p for _, p in named]
    opt = make_optimizer(params, cfg.optimizer, cfg.lr, cfg.weight_decay)
    batches = Batches(prompt_model, tokenizer, tasks, training_rows(tasks, cfg.train_examples, cfg.seed), cfg)
    loss_fn = loss_fn or default_loss
    start, history = start_or_resume(cfg, named, opt, batches.sampler, tasks, amp)
    was_training = prompt_model.training
    state = TrainState(step=start, max_steps=cfg.steps, prompt_model=prompt_model, history=history,
                       metrics=dict(history.metrics[-1][1]) if history.metrics else {})
    for cb in callbacks:
        cb.on_train_begin(state)
    if cfg.eval_every and start == 0:
        _evaluate_into(prompt_model, tokenizer, tasks, cfg, state, callbacks)
    bar = progress_bar(total=cfg.steps, initial=start, disable=not progress, desc="prompt tuning", leave=True)
    prompt_model.train()
    try:
        for step in range(start + 1, cfg.steps + 1):  # step counts optimizer steps done, 1 after the first
            batch = batches(step - 1)
            lr = cfg.lr * lr_factor(step - 1, schedule=cfg.schedule, warmup_steps=cfg.warmup_steps,
                                    total_steps=cfg.steps)
            problem = training_step(prompt_model, loss_fn, batches.split(batch, cfg.grad_accum_steps), opt, params,
                                    cfg, history, step, lr, amp)
            if problem:
                history.stop_reason = problem
                warnings.warn(problem, RuntimeWarning, stacklevel=2)
                break
            state.step, state.loss, state.lr = step, history.loss[-1][1], lr
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss:.4f}", lr=f"{lr:.3g}")
            for cb in callbacks:
                cb.on_step(state)
            last = step == cfg.steps or state.should_stop
            if cfg.eval_every and (step % cfg.eval_every == 0 or last):
                _evaluate_into(prompt_model, tokenizer, tasks, cfg, state, callbacks)
            if state.should_stop and history.stop_reason is None:
                history.stop_reason = f"a callback stopped training at step {step}"
            if cfg.checkpoint_dir is not None and (last or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
                save(cfg, step, named, opt, batches.sampler, history, tasks, amp)
            if state.should_stop:
                break
    finally:
        bar.close()
        prompt_model.train(was_training)
    for cb in callbacks:
        cb.on_train_end(state)
    return history


def training_step(prompt_model, loss_fn, micro_batches, opt, params, cfg, history, step, lr, amp) -> str | None:
    """loss -> backward (summed over the micro-batches) -> clip -> step; a message (the prompt untouched) if anything
    is not finite. ``micro_batches``: ``[(batch, weight)]``, one unweighted batch without accumulation."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    total = None
    for batch, weight in micro_batches:
        with amp.autocast():  # a no-op for a float32 model
            loss = loss_fn(prompt_model, batch)  # a scalar: the (micro-)batch's mean loss
        loss = loss if weight is None else loss * weight  # the weighted means add up to the batch's mean
        if not torch.isfinite(loss.detach()).all():
            opt.zero_grad(set_to_none=True)
            return nonfinite_message("loss", loss.item(), step, cfg)
        amp.backward(loss)  # loss.backward() (float16: of the scaled loss)
        total = loss.detach() if total is None else total + loss.detach()
    amp.unscale_(opt)  # float16: the true gradient, before its norm is read
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or float("inf"))  # the norm before clipping
    finite = bool(torch.isfinite(grad_norm))
    if not finite and not amp.skip_step(opt):  # float16 overflow is no error: the step skipped, the loss scale lowered
        opt.zero_grad(set_to_none=True)
        return nonfinite_message("gradient norm", grad_norm.item(), step, cfg)
    before = [p.detach().clone() for p in params]  # the prompt is small: keep the last good values
    if finite:
        amp.step(opt)
    if not all(torch.isfinite(p).all() for p in params):
        with torch.no_grad():
            for p, b in zip(params, before):
                p.copy_(b)
        return nonfinite_message("prompt after the optimizer step", float("nan"), step, cfg)
    history.loss.append((step, total.item()))
    history.lr.append((step, lr))
    history.grad_norm.append((step, grad_norm.item()))
    return None


def _evaluate_into(prompt_model, tokenizer, tasks, cfg, state, callbacks) -> None:
    """Validation metrics (numbers only) into state and history; a mixture: each task's and the mean accuracy."""
    out: dict[str, float] = {}
    for t, task in enumerate(tasks):  # evaluate() puts the model in eval mode and back
        kw = {"task_id": cfg.task_id if len(tasks) == 1 else t} if prompt_model.needs_task_ids else {}
        result = evaluate(prompt_model, tokenizer, task, split=cfg.eval_split, max_examples=cfg.eval_examples,
                          batch_size=cfg.eval_batch_size, max_length=cfg.max_length, **kw)
        numbers = {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        out.update(numbers if len(tasks) == 1 else {f"{k}/{task.name}": v for k, v in numbers.items()})
    accs = [v for k, v in out.items() if k.startswith("accuracy/")]
    out.update({"accuracy": sum(accs) / len(accs)} if accs else {})
    state.metrics = out
    state.history.metrics.append((state.step, out))
    for cb in callbacks:
        cb.on_evaluate(state)
