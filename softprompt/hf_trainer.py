"""Training a PromptModel with ``transformers.Trainer``, on one device or several (data parallel).

:func:`softprompt.train` is the readable loop for one device. For data parallelism, mixed
precision or DeepSpeed, hand the same PromptModel to Hugging Face's Trainer; we write no
distributed code of our own. Two small pieces make that smooth:

* :class:`TaskCollator` turns rows of a Task's split into PromptModel inputs (the same batches
  ``train`` uses, with ``logits_to_keep`` so the LM head runs only at the label positions);
* :class:`PromptTrainer` saves what matters, PEFT-compatible adapter files
  (``PromptModel.save_pretrained``), instead of the full model state, and resumes from them.
  A plain ``Trainer`` trains fine but cannot save a PromptModel: it falls back to
  ``safetensors.save_file(model.state_dict())``, which refuses tied embeddings.

    trainer = PromptTrainer(
        model=prompt_model,
        args=TrainingArguments("out", max_steps=100, learning_rate=3e-2, remove_unused_columns=False),
        train_dataset=task.splits["train"],
        data_collator=TaskCollator(task, tokenizer, prompt_model),
    )
    trainer.train()

Several devices: launch the same script with ``torchrun --nproc_per_node N train.py`` (or
``accelerate launch --multi_gpu --num_processes N train.py``). Trainer, through accelerate, wraps the
PromptModel in ``DistributedDataParallel`` and gives each process its share of every global batch
(``per_device_train_batch_size`` x N rows). That is plain data parallelism: each process holds a full
copy of the frozen model, and the only gradient all-reduced is the prompt's (the base model has none),
so the processes' prompts stay identical. Only the main process writes adapter files (``_save``
checks ``args.should_save``); every process reads them on resume. Two settings worth knowing:

* ``ddp_find_unused_parameters=False``: Trainer turns the search on for models that are not a
  ``PreTrainedModel``, and the prompt is used in every forward, so it costs a graph traversal and a warning;
* ``use_cpu=True`` trains CPU processes over gloo (accelerate picks it); passing ``ddp_backend="gloo"``
  as well makes the same script fail when run as one plain process. (``accelerate launch --cpu`` starts
  one process whatever ``--num_processes`` says; ``--multi_gpu`` with ``use_cpu=True`` starts N over gloo.)

tests/test_multiprocess_trainer.py checks this on the CPU, 2 processes over gloo: the prompt matches
a one-process run on the same global batches to float32 rounding. FSDP and DeepSpeed ZeRO (sharding
the model or the optimizer) are not tested here.
"""

from __future__ import annotations

import os

import torch
from transformers import Trainer

from .adapter_files import load_adapter
from .batching import logits_to_keep, task_batch, trim
from .config import TaskType
from .context import batch_max_length, check_token_ids, warn_if_cut
from .model_kind import model_task_type
from .task_ids import check_task_id, num_tasks_of

__all__ = ["TaskCollator", "PromptTrainer"]


class TaskCollator:
    """A ``data_collator``: a list of a Task's dataset rows -> ``prompt_model(**batch)`` inputs.

    Pass ``remove_unused_columns=False`` in ``TrainingArguments``: the collator reads the
    ``text``/``label`` columns itself. ``fast=True`` adds ``logits_to_keep`` for causal LMs.
    A multitask (MPT) prompt gets ``task_ids`` filled with ``task_id`` (default 0).
    """

    def __init__(self, task, tokenizer, prompt_model=None, *, max_length: int | None = None,
                 task_id: int | None = None, fast: bool = True):
        self.task, self.tokenizer, self.fast, self.prompt_model = task, tokenizer, fast, prompt_model
        self.task_type = model_task_type(prompt_model) if prompt_model is not None else TaskType.CAUSAL_LM
        self.num_virtual_tokens = int(getattr(prompt_model, "num_virtual_tokens", 0) or 0)
        # Rows are cut to fit the model's context (keeping the label word), as in train(); a cut the user did not
        # choose (no max_length) is announced once, at the first batch that has one.
        self.max_length = (max_length if prompt_model is None else
                           batch_max_length(prompt_model, tokenizer, max_length, self.num_virtual_tokens))
        self.requested_max_length, self.warned_cut = max_length, prompt_model is None
        needs_ids = prompt_model is not None and prompt_model.needs_task_ids
        if task_id is None and needs_ids:
            task_id = 0
        num_tasks = num_tasks_of(prompt_model) if needs_ids else None
        self.task_id = None if task_id is None else check_task_id(task_id, num_tasks)  # the id of every row

    def __call__(self, features: list[dict]) -> dict:
        examples = {k: [f[k] for f in features] for k in features[0]}
        if not self.warned_cut:
            self.warned_cut = bool(warn_if_cut(
                self.prompt_model, self.tokenizer, [(self.task, examples)], max_length=self.requested_max_length,
                num_virtual_tokens=self.num_virtual_tokens, training=True, what="examples in this batch", stacklevel=2))
        batch = task_batch(self.task, examples, self.tokenizer, self.task_type, max_length=self.max_length,
                           num_virtual_tokens=self.num_virtual_tokens)
        batch = trim({k: v for k, v in batch.items() if torch.is_tensor(v) and k != "class_labels"}, self.task_type)
        if self.prompt_model is not None:
            check_token_ids(self.prompt_model, batch["input_ids"])
        if self.task_id is not None:
            batch["task_ids"] = torch.full((len(features),), self.task_id, dtype=torch.long)  # (B,)
        if self.fast and self.task_type == TaskType.CAUSAL_LM:
            batch["logits_to_keep"] = logits_to_keep(batch["labels"])
        return batch


class PromptTrainer(Trainer):
    """``transformers.Trainer`` that saves and reloads a PromptModel as adapter files.

    ``save_model`` and every checkpoint write ``adapter_config.json`` + ``adapter_model.safetensors``
    (loadable by :meth:`PromptModel.from_pretrained` and by PEFT); ``resume_from_checkpoint``
    reads them back. The optimizer/scheduler/RNG files of a Trainer checkpoint are Trainer's own.
    """

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        _, tensors = load_adapter(resume_from_checkpoint)
        model.load_adapter_tensors(tensors)
