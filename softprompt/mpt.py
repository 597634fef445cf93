"""The MPT pipeline: teachers -> distillation -> target adaptation (Wang et al. 2023, §3).

PEFT has the MPT prompt encoder (:mod:`softprompt.multitask`) but not the method around it.
Here are its three stages, each a function a notebook can call on its own:

1. :func:`train_teachers`: one vanilla prompt per source task (Lester et al. 2021), trained
   with :func:`softprompt.train`.
2. :func:`distill`: a shared prompt P* and per-task factors u_k, v_k, trained on a mixture of the
   source tasks (each row carries its task id) with the loss of Wang et al. §3.2::

       L = L_PLM + λ (L_Logits + L_Hidden)

   ``L_PLM`` is the task loss; ``L_Logits`` the KL divergence from the teacher's output
   distribution to the student's (teacher k for a row of task k); ``L_Hidden`` the mean squared
   error between their hidden states. §3.2 calls λ "a weight to balance the impact of
   distillation loss terms" and softens both distributions with a temperature; it takes the
   hidden-state term from the distillation of PLMs (TinyBERT-style). Our defaults: λ = 1 and
   temperature 1, the plainest choice (each term weighs as much as the task loss; we could not
   check the paper's own value of λ offline, so treat it as a knob). On SmolLM2 with 8 virtual
   tokens the two terms start at KL ≈ 0.5-2 and MSE ≈ 0.4-0.6 against a task loss of 5-10, so
   neither swamps the other. Hidden states: the *last* layer (our reading of §3.2, which
   compares "the hidden states of teacher and student networks"; ``hidden_layers`` picks any),
   compared at the real tokens only (the prompt positions hold different vectors by design).
   With ``distill=False`` this stage is plain multitask prompt training: what PEFT's MPT
   example does.
3. :func:`adapt_to_target`: a new task, not among the sources, starts from P* and the average
   (or one chosen source task's) factors and is trained few-shot.

Ablations are switches on :class:`MPTRecipe`: ``distill`` (on/off), ``num_ranks`` (1 or r).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .batching import model_inputs
from .config import PromptTuningConfig, TaskType
from .history import History
from .model_kind import model_task_type
from .multitask import (
    MultitaskPromptEmbedding, MultitaskPromptTuningConfig, MultitaskPromptTuningInit, load_source_tensors,
)
from .prompt_model import PromptModel, get_prompt_model, prompt_model_class
from .task_ids import as_task_ids, check_task_id
from .training import train

__all__ = [
    "MPTRecipe", "TeacherBank", "train_teachers", "vanilla_prompt_model", "teacher_model",
    "DistillationLoss", "distillation_terms", "teacher_student_kl", "Distillation", "distill", "target_prompt_model",
    "adapt_to_target",
]


@dataclass
class MPTRecipe:
    """The knobs of the MPT pipeline, with defaults sized for a CPU (8 virtual tokens, tens of steps).

    Teachers and the student use the same prompt length. Training settings not listed here
    (lr, optimizer, schedule, ...) go to :func:`softprompt.train` as keywords of each stage.
    """

    num_virtual_tokens: int = 8
    num_ranks: int = 1  # rank r of each task matrix u_k v_kᵀ (paper: 1); ablation: r > 1
    batch_size: int = 8
    max_length: int | None = None
    # 1. teachers
    teacher_steps: int = 50
    teacher_init: str = "RANDOM"  # a PromptTuningInit for the teachers (RANDOM, TEXT, CLASS_LABELS, ...)
    # 2. distillation
    distill: bool = True  # False: plain multitask training (ablation; PEFT's example)
    distill_steps: int = 320  # 64 per source task for K = 5 sources, at distill_lr: see benchmarks/diagnose_mpt.py
    distill_weight: float = 1.0  # λ in L_PLM + λ(L_Logits + L_Hidden), Wang et al. §3.2
    temperature: float = 1.0  # softens teacher and student distributions in L_Logits (§3.2)
    hidden_layers: tuple[int, ...] = (-1,)  # hidden_states indices for L_Hidden; () turns it off
    student_init: str = "TEACHER_MEAN"  # how P* starts: TEACHER_MEAN (the teachers' mean), RANDOM, SAMPLE_VOCAB
    distill_lr: float | None = 0.1  # AdamW lr of stage 2 (None: train()'s 3e-2); see benchmarks/diagnose_mpt.py
    # 3. target adaptation
    target_steps: int = 25
    target_examples: int | None = 32  # few-shot: training examples of the target task (None: all)
    target_init: str | int = "average"  # "average", "shared" (P* only), or a source task index
    seed: int = 0

    def __post_init__(self):
        for name in ("num_virtual_tokens", "num_ranks", "batch_size", "teacher_steps", "distill_steps",
                     "target_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive int.")
        if self.target_examples is not None and (not isinstance(self.target_examples, int)
                                                 or self.target_examples <= 0):
            raise ValueError(f"target_examples={self.target_examples!r} must be a positive int or None (all).")
        if not self.distill_weight >= 0:
            raise ValueError(f"distill_weight={self.distill_weight!r} must be >= 0 (λ; 0 = task loss only).")
        if self.distill_lr is not None and not (isinstance(self.distill_lr, (int, float)) and 0 < self.distill_lr < 10):
            raise ValueError(f"distill_lr={self.distill_lr!r} must be a positive learning rate (e.g. 0.1) or None.")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature!r} must be > 0, e.g. 1.0.")
        self.hidden_layers = tuple(self.hidden_layers)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in self.hidden_layers):
            raise ValueError(f"hidden_layers={self.hidden_layers!r} must be ints (indices into hidden_states).")
        self.student_init = str(getattr(self.student_init, "value", self.student_init)).upper()
        if self.student_init not in ("RANDOM", "SAMPLE_VOCAB", "TEACHER_MEAN"):
            raise ValueError(f"student_init={self.student_init!r}: use 'RANDOM', 'SAMPLE_VOCAB' or 'TEACHER_MEAN'.")
        _target_mode(self.target_init)  # validates

    def replace(self, **changes) -> MPTRecipe:
        return dataclasses.replace(self, **changes)


def _target_mode(init) -> tuple[MultitaskPromptTuningInit, int]:
    if init is not None and not isinstance(init, str):  # a source task index: an int >= 0 (range: init_from_source)
        return MultitaskPromptTuningInit.EXACT_SOURCE_TASK, check_task_id(init, None, "target_init", "the source")
    modes = {"average": MultitaskPromptTuningInit.AVERAGE_SOURCE_TASKS,
             "shared": MultitaskPromptTuningInit.ONLY_SOURCE_SHARED}
    if str(init).lower() not in modes:
        raise ValueError(f"target_init={init!r}: use 'average', 'shared' or a source task index (int).")
    return modes[str(init).lower()], 0


FROM_RECIPE = "from_recipe"  # a keyword left at this value takes the recipe's setting


def _train_kwargs(recipe: MPTRecipe, **overrides) -> dict:
    kw = dict(batch_size=recipe.batch_size, max_length=recipe.max_length, seed=recipe.seed)
    kw.update(overrides)
    return kw


# ---------------------------------------------------------------------------------------------
# 1. Teachers
# ---------------------------------------------------------------------------------------------
def vanilla_prompt_model(model, prompt: torch.Tensor | None = None, *, num_virtual_tokens: int | None = None,
                         tokenizer=None, **config) -> PromptModel:
    """A vanilla prompt on ``model`` (Lester et al. 2021); ``prompt`` ``(T, d)`` sets its vectors (e.g. a teacher).

    ``config`` holds further :class:`~softprompt.PromptTuningConfig` fields (init mode, seed, ...).
    """
    T = num_virtual_tokens or (prompt.shape[0] if prompt is not None else None)
    cfg = PromptTuningConfig(task_type=config.pop("task_type", model_task_type(model)), num_virtual_tokens=T, **config)
    pm = get_prompt_model(model, cfg, tokenizer=tokenizer)
    if prompt is not None:
        pm.prompt_encoder.load_adapter_tensors({"prompt_embeddings": prompt})
    return pm


def train_teachers(model, tokenizer, tasks: Sequence, recipe: MPTRecipe | None = None, *,
                   progress: bool = True, **train_kw) -> dict[str, torch.Tensor]:
    """Stage 1 (Wang et al. §3.2): one vanilla prompt per source task; returns ``{task name: prompt (T, d)}``.

    Each teacher starts from ``recipe.teacher_init`` (seeded with ``recipe.seed``) and trains
    ``recipe.teacher_steps`` steps on its task alone. ``train_kw`` go to :func:`softprompt.train`.
    """
    recipe = recipe or MPTRecipe()
    teachers = {}
    for task in tasks:
        init = {"prompt_tuning_init": recipe.teacher_init, "seed": recipe.seed}
        if str(recipe.teacher_init).upper() == "CLASS_LABELS":
            init["prompt_tuning_class_labels"] = list(task.label_words)
        pm = vanilla_prompt_model(model, num_virtual_tokens=recipe.num_virtual_tokens, tokenizer=tokenizer, **init)
        train(pm, tokenizer, task, **_train_kwargs(recipe, steps=recipe.teacher_steps, progress=progress,
                                                    **train_kw))
        teachers[task.name] = pm.prompt_encoder.weight.detach().clone()  # (T, d)
    return teachers


class TeacherBank(nn.Module):
    """K frozen vanilla prompts served per row, like an MPT encoder: ``forward(indices, task_ids)``.

    Lets one forward pass run a mixed batch in which row b sees the teacher of its task.
    """

    needs_task_ids = True

    def __init__(self, prompts: torch.Tensor):
        super().__init__()
        self.register_buffer("prompts", prompts.detach().clone())  # (K, T, d)
        self.num_tasks = prompts.shape[0]

    def forward(self, indices: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        task_ids = as_task_ids(task_ids, indices.shape[0], self.num_tasks, self.prompts.device)  # (B,)
        return self.prompts[task_ids.unsqueeze(1), indices]  # (B, T, d)


def teacher_model(model, teachers: dict[str, torch.Tensor] | Sequence[torch.Tensor]) -> PromptModel:
    """The teachers as one frozen PromptModel: row b uses teacher ``task_ids[b]`` (in the given order)."""
    prompts = list(teachers.values()) if isinstance(teachers, dict) else list(teachers)
    stack = torch.stack([p.detach() for p in prompts]).to(model.get_input_embeddings().weight.device)  # (K, T, d)
    K, T, d = stack.shape
    cfg = MultitaskPromptTuningConfig(task_type=model_task_type(model), num_virtual_tokens=T, num_tasks=K,
                                      inference_mode=True).filled_from_model(model)
    model.requires_grad_(False)
    return prompt_model_class(cfg.task_type)(model, cfg, TeacherBank(stack)).eval()


# ---------------------------------------------------------------------------------------------
# 2. Distillation
# ---------------------------------------------------------------------------------------------
def _label_positions(out, batch: dict, causal: bool):
    """Logits at the target positions ``(N, V)``, and the mask that picked them."""
    logits, labels = out.logits, batch["labels"]
    if not causal:
        mask = labels != -100  # (B, Ld): seq2seq logits are aligned with labels
        return logits[mask], mask
    k = logits.shape[1]  # logits_to_keep (or all) positions at the end of each row
    mask = labels[:, -k:][:, 1:] != -100  # (B, k-1): logits[:, i] predicts token i+1
    return logits[:, :-1][mask], mask


def _hidden(out, causal: bool):
    return out.hidden_states if causal else out.encoder_hidden_states


def distillation_terms(student, teacher, batch: dict, *, temperature: float = 1.0,
                       hidden_layers: Sequence[int] = (-1,)) -> dict[str, torch.Tensor]:
    """The three terms of Wang et al. §3.2 on one batch: ``task`` (L_PLM), ``kl`` (L_Logits), ``mse`` (L_Hidden).

    ``kl`` = KL(teacher ‖ student) of the output distributions at the target tokens, both at
    ``temperature`` (scaled by temperature² as in Hinton et al., so gradients keep their size);
    ``mse`` = mean squared difference of the chosen layers' hidden states at the real tokens.
    """
    causal = student.task_type == TaskType.CAUSAL_LM
    inputs = model_inputs(student, batch)
    inputs["task_ids"] = batch["task_ids"]
    want_hidden = len(hidden_layers) > 0
    s_out = student(**inputs, output_hidden_states=want_hidden)
    with torch.no_grad():
        t_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        if not causal:
            t_inputs["labels"] = inputs["labels"]  # seq2seq: labels make the decoder inputs
        t_out = teacher(**t_inputs, output_hidden_states=want_hidden)
    s_logits, _ = _label_positions(s_out, batch, causal)  # (N, V)
    t_logits, _ = _label_positions(t_out, batch, causal)  # (N, V)
    tau = temperature
    kl = F.kl_div(F.log_softmax(s_logits.float() / tau, -1), F.log_softmax(t_logits.float() / tau, -1),
                  log_target=True, reduction="batchmean") * tau**2
    mse = s_logits.new_zeros(())
    if want_hidden:
        real = batch["attention_mask"].bool()  # (B, L): the real tokens, prompt positions already stripped
        s_h, t_h = _hidden(s_out, causal), _hidden(t_out, causal)
        mse = sum(F.mse_loss(s_h[i][real].float(), t_h[i][real].float()) for i in hidden_layers) / len(hidden_layers)
    return {"task": s_out.loss, "kl": kl, "mse": mse}


class DistillationLoss:
    """``loss_fn(student, batch)`` for :func:`softprompt.train`: ``L_PLM + λ(L_Logits + L_Hidden)`` (§3.2).

    Keeps every step's terms in ``log`` (a list of dicts of floats), for plots: one entry per call, so with
    ``grad_accum_steps=n`` one per micro-batch (n per step, each that micro-batch's mean).
    """

    def __init__(self, teacher: PromptModel, *, weight: float = 1.0, temperature: float = 1.0,
                 hidden_layers: Sequence[int] = (-1,)):
        self.teacher, self.weight, self.temperature = teacher, weight, temperature
        self.hidden_layers = tuple(hidden_layers)
        self.log: list[dict[str, float]] = []

    def __call__(self, student, batch: dict) -> torch.Tensor:
        terms = distillation_terms(student, self.teacher, batch, temperature=self.temperature,
                                   hidden_layers=self.hidden_layers)
        loss = terms["task"] + self.weight * (terms["kl"] + terms["mse"])
        self.log.append({k: float(v.detach()) for k, v in terms.items()} | {"loss": float(loss.detach())})
        return loss


@torch.no_grad()
def teacher_student_kl(student, teacher, tokenizer, tasks: Sequence, *, split: str = "validation",
                       max_examples: int = 64, batch_size: int = 16, temperature: float = 1.0,
                       max_length: int | None = None) -> float:
    """Mean KL(teacher ‖ student) at the target tokens over the first ``max_examples`` of each task's split
    (rows cut to ``max_length`` positions, as in training)."""
    was_training = student.training
    student.eval()
    T = student.num_virtual_tokens
    causal = student.task_type == TaskType.CAUSAL_LM
    total, count = 0.0, 0
    try:
        for t, task in enumerate(tasks):
            data = task.splits[split]
            n = min(max_examples, len(data))
            for lo in range(0, n, batch_size):
                rows = data[lo:min(lo + batch_size, n)]
                make = task.causal_batch if causal else task.seq2seq_batch
                batch = {k: v for k, v in make(rows, tokenizer, max_length=max_length, num_virtual_tokens=T).items()
                         if torch.is_tensor(v)}
                device = student.device
                batch = {k: v.to(device) for k, v in batch.items()}
                batch["task_ids"] = torch.full((batch["input_ids"].shape[0],), t, dtype=torch.long, device=device)
                kl = distillation_terms(student, teacher, batch, temperature=temperature, hidden_layers=())["kl"]
                rows_n = int((batch["labels"] != -100).sum())
                total, count = total + float(kl) * rows_n, count + rows_n
    finally:
        student.train(was_training)
    return total / max(count, 1)


class Distillation(NamedTuple):
    """What :func:`distill` returns: ``student, history, log = distill(...)``."""

    student: PromptModel  # the MPT prompt model: P* and u_k, v_k for the source tasks (Wang et al. §3.1)
    history: History  # softprompt.train's record of the distillation run
    log: list[dict[str, float]]  # per step: task (L_PLM), kl (L_Logits), mse (L_Hidden), loss; [] without teachers


def distill(model, tokenizer, tasks: Sequence, teachers: dict[str, torch.Tensor] | None,
            recipe: MPTRecipe | None = None, *, progress: bool = True, **train_kw) -> Distillation:
    """Stage 2 (Wang et al. §3.2): train P* and u_k, v_k on the mixture of ``tasks``.

    The student is an MPT prompt with ``num_tasks = len(tasks)`` (task k = ``tasks[k]``). With
    ``recipe.distill`` (and ``teachers`` for every task) the loss is :class:`DistillationLoss`,
    ``L_PLM + λ(L_Logits + L_Hidden)``, else the plain task loss. Returns a :class:`Distillation`:
    ``(student, history, log)``, ``log`` holding the distillation terms of every step.
    """
    recipe = recipe or MPTRecipe()
    tasks = list(tasks)
    use_teachers = recipe.distill and recipe.distill_weight > 0
    if use_teachers:
        if not teachers:
            raise ValueError("recipe.distill=True needs teachers (train_teachers(...)); or set distill=False.")
        missing = [t.name for t in tasks if t.name not in teachers]
        if missing:
            raise ValueError(f"no teacher for tasks {missing}; teachers has {sorted(teachers)}.")
    init = recipe.student_init
    cfg = MultitaskPromptTuningConfig(
        task_type=model_task_type(model), num_virtual_tokens=recipe.num_virtual_tokens, num_tasks=len(tasks),
        num_ranks=recipe.num_ranks, seed=recipe.seed,
        prompt_tuning_init="RANDOM" if init == "TEACHER_MEAN" else init,
    )
    student = get_prompt_model(model, cfg, tokenizer=tokenizer)
    if init == "TEACHER_MEAN":
        if not teachers:
            raise ValueError("student_init='TEACHER_MEAN' (the default) needs teachers (train_teachers(...)); "
                             "without teachers set student_init='RANDOM' or 'SAMPLE_VOCAB'.")
        with torch.no_grad():
            student.prompt_encoder.embedding.weight.copy_(torch.stack([teachers[t.name] for t in tasks]).mean(0))
    loss_fn = None
    if use_teachers:
        teacher = teacher_model(model, {t.name: teachers[t.name] for t in tasks})
        loss_fn = DistillationLoss(teacher, weight=recipe.distill_weight, temperature=recipe.temperature,
                                   hidden_layers=recipe.hidden_layers)
    stage = {"lr": recipe.distill_lr} if recipe.distill_lr is not None else {}
    history = train(student, tokenizer, tasks, loss_fn=loss_fn,
                    **_train_kwargs(recipe, steps=recipe.distill_steps, progress=progress, **(stage | train_kw)))
    student.source_tasks = [t.name for t in tasks]
    return Distillation(student, history, loss_fn.log if loss_fn is not None else [])


# ---------------------------------------------------------------------------------------------
# 3. Target adaptation
# ---------------------------------------------------------------------------------------------
def target_prompt_model(model, source, *, init: str | int = "average", seed: int = 0) -> PromptModel:
    """The start of target adaptation (Wang et al. §3.2): a one-task MPT prompt built from ``source``.

    Args:
        source: the distilled MPT :class:`~softprompt.PromptModel`, its saved directory, or its
            ``adapter_tensors()`` dict.
        init: ``"average"`` (P*, mean u, mean v: the paper's default), ``"shared"`` (P* alone, fresh
            IDENTITY factors, so the target starts exactly at P*), or a source task index (its u_k, v_k).
    """
    mode, task_index = _target_mode(init)
    tensors = _source_tensors(source)
    if mode == MultitaskPromptTuningInit.EXACT_SOURCE_TASK and "prefix_task_cols" in tensors:
        check_task_id(task_index, tensors["prefix_task_cols"].shape[0], "init", "the source")  # (K_src, T, r)
    num_ranks = tensors["prefix_task_cols"].shape[-1] if "prefix_task_cols" in tensors else 1
    T = tensors["prompt_embeddings"].shape[0]
    cfg = MultitaskPromptTuningConfig(task_type=model_task_type(model), num_virtual_tokens=T, num_tasks=1,
                                      num_ranks=num_ranks, seed=seed)
    target = get_prompt_model(model, cfg)
    encoder: MultitaskPromptEmbedding = target.prompt_encoder
    encoder.init_from_source(tensors, mode, task=task_index)
    return target


def adapt_to_target(model, tokenizer, target_task, source, recipe: MPTRecipe | None = None, *,
                    init: str | int | None = None, steps: int | None = None, train_examples=FROM_RECIPE,
                    seed: int | None = None, progress: bool = True, **train_kw):
    """Stage 3 (Wang et al. §3.2): a new task starts from the source's P* and factors, then trains few-shot.

    Builds the start with :func:`target_prompt_model` (``init`` defaults to ``recipe.target_init``)
    and trains it on ``target_task`` with :func:`softprompt.train`. ``steps``, ``train_examples`` and
    ``seed`` default to the recipe's ``target_steps``, ``target_examples`` (few-shot) and ``seed``.

    Returns ``(target PromptModel with num_tasks=1, History)``; evaluate it with ``task_id=0``.
    """
    recipe = recipe or MPTRecipe()
    seed = recipe.seed if seed is None else seed
    target = target_prompt_model(model, source, init=recipe.target_init if init is None else init, seed=seed)
    examples = recipe.target_examples if train_examples is FROM_RECIPE else train_examples
    history = train(target, tokenizer, target_task, task_id=0, **_train_kwargs(
        recipe, steps=steps or recipe.target_steps, train_examples=examples, seed=seed, progress=progress,
        **train_kw))
    return target, history


def _source_tensors(source) -> dict[str, torch.Tensor]:
    if isinstance(source, dict):
        return source
    if isinstance(source, PromptModel):
        return source.prompt_encoder.adapter_tensors()
    return load_source_tensors(source)

