"""A frozen Hugging Face model with a trainable soft prompt in front: `PromptModel`.

Prompt tuning (Lester et al. 2021, §2) freezes the model and learns only ``T`` vectors ``P_e ∈ R^{T×d}``,
prepended to the embedded input ``X_e``: the model reads ``[P_e; X_e]``. For a causal LM the prompt goes
*first*, before any left padding: ``[prompt][pad…pad][tokens]``. The mask gets ``T`` ones in front, labels
``T`` entries of ``-100``, positions come from the mask (real token ``j`` at ``T + j``: ``positions.py``), and
outputs strip the virtual positions. Other task types are subclasses beside this file (``seq2seq.py``,
``seq_cls.py``), picked by :func:`get_prompt_model`; misuse is refused by the checks in ``input_checks.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path

import torch
from torch import nn

from .adapter_files import adapter_configs, load_adapter, peft_encoder_prompt, save_adapter
from .config import PromptTuningConfig, TaskType
from .context import position_table_size
from .input_checks import (check_generate_inputs, check_inputs, check_logits_to_keep, check_model_class,
                           check_prompt_fits, check_real_weights, check_saved_prompt)
from .model_kind import check_task_type
from .multitask import MultitaskPromptEmbedding, MultitaskPromptTuningConfig
from .positions import causal_position_ids, extend_token_type_ids, shifted_position_ids, strip_prompt
from .prompt_embedding import PromptEmbedding
from .task_ids import as_task_ids, num_tasks_of

__all__ = ["PromptModel", "get_prompt_model", "prompt_model_class"]

_CLASSES: dict[TaskType, type] = {}  # task type -> PromptModel subclass (seq2seq.py, seq_cls.py register theirs)


class PromptModel(nn.Module):
    """A frozen causal LM plus a soft prompt (Lester et al. 2021, §2); build it with :func:`get_prompt_model`.
    Attributes: ``base_model`` (frozen), ``prompt_config``, ``prompt_encoder`` (the trainable prompt),
    ``word_embeddings``, ``task_type``, ``num_virtual_tokens`` (``T`` per transformer submodule)."""

    main_input_name = "input_ids"
    modules_to_save: tuple[str, ...] | None = None  # base-model children saved with the prompt (a SEQ_CLS head)

    def __init_subclass__(cls, task_type: TaskType | str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if task_type is not None:
            _CLASSES[TaskType(task_type)] = cls

    def __init__(self, base_model: nn.Module, prompt_config, prompt_encoder: nn.Module):
        super().__init__()
        self.base_model = base_model
        self.prompt_config = prompt_config
        self.prompt_encoder = prompt_encoder
        self.task_type = TaskType(prompt_config.task_type)
        self.num_virtual_tokens = int(prompt_config.num_virtual_tokens)
        self.num_transformer_submodules = int(prompt_config.num_transformer_submodules or 1)
        check_model_class(self, prompt_model_class(self.task_type))  # and the number of transformer submodules
        total = self.num_virtual_tokens * self.num_transformer_submodules  # indices 0..T_total-1: PEFT's prompt_tokens
        self.register_buffer("prompt_tokens", torch.arange(total, device=self.device), persistent=False)  # (T_total,)
        self._accepts_position_ids = "position_ids" in inspect.signature(base_model.forward).parameters
        self._max_positions = position_table_size(base_model)  # None: no hard limit (rotary / relative positions)

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.base_model.get_input_embeddings()

    @property
    def config(self):  # the base model's Hugging Face config (transformers.Trainer and generate read it)
        return self.base_model.config

    @property
    def device(self) -> torch.device:
        return self.word_embeddings.weight.device

    @property
    def needs_task_ids(self) -> bool:
        return bool(getattr(self.prompt_encoder, "needs_task_ids", False))

    def get_prompt(self, batch_size: int, task_ids=None) -> torch.Tensor:
        """The prompt vectors ``(B, T_total, d)``, ``T_total = T * num_transformer_submodules``; an MPT prompt
        (Wang et al. 2023, §3.1) needs ``task_ids`` ``(B,)``. Seq2seq: ``[:, :T]`` encoder, ``[:, T:]`` decoder."""
        if self.needs_task_ids:  # a single-task prompt ignores task ids, as PEFT's does
            task_ids = as_task_ids(task_ids, batch_size, num_tasks_of(self), self.device)  # (B,), checked
            indices = self.prompt_tokens.unsqueeze(0).expand(batch_size, -1)  # (B, T_total)
            return self.prompt_encoder(indices, task_ids)  # (B, T_total, d)
        prompt = self.prompt_encoder(self.prompt_tokens.unsqueeze(0))  # (1, T_total, d): encoded once for all rows
        return prompt.expand(batch_size, -1, -1)  # (B, T_total, d), broadcast (no copies)

    def _prepend(self, input_ids, inputs_embeds, attention_mask, task_ids, check_vocab: bool | None = None):
        """``[P_e; X_e]`` and the mask extended by T ones (Lester §2). Returns embeds, mask, prompt, B, L."""
        check_inputs(self, input_ids, inputs_embeds, attention_mask, check_vocab)  # ids/embeds, T + L, mask shape
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, L, d)
        B, L = inputs_embeds.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(B, L, dtype=torch.long, device=inputs_embeds.device)  # (B, L)
        T = self.num_virtual_tokens
        prompt = self.get_prompt(B, task_ids).to(inputs_embeds.dtype)  # (B, T_total, d)
        embeds = torch.cat([prompt[:, :T], inputs_embeds], dim=1)  # (B, T + L, d)
        mask = torch.cat([attention_mask.new_ones(B, T), attention_mask], dim=1)  # (B, T + L)
        return embeds, mask, prompt, B, L

    def _position_ids(self, mask: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
        """Positions from the mask ``(B, T + L)``; a caller's positions ``(B, L)`` are shifted past the prompt."""
        if position_ids is None:
            return causal_position_ids(mask)  # (B, T + L): real token j at T + j
        return shifted_position_ids(position_ids, self.num_virtual_tokens)  # (B, T + L)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, task_ids=None, inputs_embeds: torch.Tensor | None = None,
                logits_to_keep: int = 0, **kwargs):
        """Run the base model on ``[P_e; X_e]`` (Lester §2); outputs and ``labels`` are aligned with ``input_ids``.

        ``task_ids`` (B,) picks each row's MPT prompt. ``logits_to_keep=k > 0`` runs the LM head on the last k
        positions only, with the loss over the labels in ``labels[:, -k+1:]``. Other keywords go to the base model.
        """
        T = self.num_virtual_tokens
        embeds, mask, _, B, L = self._prepend(input_ids, inputs_embeds, attention_mask, task_ids)  # (B, T + L, ·)
        position_ids = self._position_ids(mask, kwargs.pop("position_ids", None))  # (B, T + L)
        if self._accepts_position_ids:
            kwargs["position_ids"] = position_ids
        extend_token_type_ids(kwargs, T)
        k = check_logits_to_keep(logits_to_keep, L)
        num_items = kwargs.pop("num_items_in_batch", None)
        if k == 0:
            if labels is not None:  # -100 on the virtual positions; the model shifts and averages as usual
                kwargs["labels"] = torch.cat([labels.new_full((B, T), -100), labels], dim=1)  # (B, T + L)
                if num_items is not None:
                    kwargs["num_items_in_batch"] = num_items
            out = self.base_model(inputs_embeds=embeds, attention_mask=mask, **kwargs)
            out["logits"] = out.logits[:, T:]  # (B, L, V)
        else:
            out = self.base_model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=k, **kwargs)  # (B, k, V)
            if labels is not None:  # logits cover the last k positions; predict the next of each
                out["loss"] = self._causal_loss(out.logits, labels[:, -k:], num_items)
        if out.get("hidden_states") is not None:
            out["hidden_states"] = strip_prompt(out.hidden_states, T)
        return out

    def _causal_loss(self, logits, labels, num_items_in_batch=None):
        """Next-token cross-entropy of ``logits`` (B, k, V) against ``labels`` (B, k), shifted by one."""
        loss_fn = getattr(self.base_model, "loss_function", None)
        if loss_fn is not None:
            return loss_fn(logits=logits, labels=labels, vocab_size=logits.shape[-1],
                           num_items_in_batch=num_items_in_batch)
        shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])  # (B·(k-1), V)
        shift_labels = labels[:, 1:].reshape(-1).to(logits.device)  # (B·(k-1),)
        reduction = "sum" if num_items_in_batch is not None else "mean"
        loss = nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction=reduction)
        return loss / num_items_in_batch if num_items_in_batch is not None else loss

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, task_ids=None,
                 **generate_kwargs) -> torch.Tensor:
        """The base model's ``generate`` on ``[P_e; X_e]`` (left-padded rows); returns the new tokens ``(B, new)``.
        Logits processors that look at past tokens (e.g. ``repetition_penalty``) see only generated tokens."""
        embeds, mask, _, _, L = self._prepend(input_ids, None, attention_mask, task_ids, check_vocab=True)
        check_generate_inputs(self, mask, L, generate_kwargs.get("max_new_tokens"))  # left padding, T + L + new
        return self.base_model.generate(inputs_embeds=embeds, attention_mask=mask, **generate_kwargs)

    def num_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts (shared tensors counted once)."""
        params = {id(p): p for p in self.parameters()}.values()
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def print_trainable_parameters(self) -> None:
        trainable, total = self.num_trainable_parameters()
        print(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}")

    def set_trainable(self, trainable: bool = True) -> PromptModel:
        """Freeze the base model; make the prompt trainable or not."""
        self.base_model.requires_grad_(False)
        self.prompt_encoder.requires_grad_(trainable)
        return self

    def gradient_checkpointing_enable(self, **kwargs):
        self.base_model.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self):
        self.base_model.gradient_checkpointing_disable()

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """What ``adapter_model.safetensors`` holds, under PEFT's key names."""
        return {k: v.detach() for k, v in self.prompt_encoder.adapter_tensors().items()}

    def load_adapter_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load tensors in PEFT's key names, checking every shape against this model."""
        self.prompt_encoder.load_adapter_tensors({k: v for k, v in tensors.items() if not k.startswith("base_model.")})

    def save_pretrained(self, save_directory: str | os.PathLike, state_dict=None, safe_serialization: bool = True,
                        **kwargs) -> Path:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT's format, which PEFT loads) atomically.

        ``state_dict`` and ``safe_serialization`` are accepted for ``transformers.Trainer`` and ignored."""
        peft_dict, full = adapter_configs(self.prompt_config, self.task_type.value, self.modules_to_save)
        return save_adapter(save_directory, peft_dict, self.adapter_tensors(), extra_config=full)

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: str | os.PathLike, is_trainable: bool = False,
                        ) -> PromptModel:
        """Load a saved prompt (ours or PEFT's) onto ``model``; a ``ValueError`` says what does not fit.
        ``is_trainable=True`` returns a model you can keep training (PEFT refuses that, peft #2046)."""
        config_dict, tensors = load_adapter(directory)
        check_saved_prompt(model, directory, config_dict, tensors)  # token_dim, base model name, tensor shapes
        config_dict, tensors = peft_encoder_prompt(directory, config_dict, tensors)
        is_mpt = config_dict.get("peft_type") == "MULTITASK_PROMPT_TUNING"
        config = (MultitaskPromptTuningConfig if is_mpt else PromptTuningConfig).from_dict(config_dict)
        prompt_model = get_prompt_model(model, dataclasses.replace(config, inference_mode=True))  # no init run
        prompt_model.load_adapter_tensors(tensors)
        prompt_model.prompt_config = dataclasses.replace(prompt_model.prompt_config, inference_mode=not is_trainable)
        return prompt_model.set_trainable(is_trainable)

    def extra_repr(self) -> str:
        return (f"task_type={self.task_type.value}, num_virtual_tokens={self.num_virtual_tokens}, "
                f"num_transformer_submodules={self.num_transformer_submodules}")


def prompt_model_class(task_type: TaskType | str) -> type[PromptModel]:
    """The PromptModel class for ``task_type``: PromptModel for CAUSAL_LM, else the subclass that registered it."""
    return _CLASSES.get(TaskType(task_type), PromptModel)


def get_prompt_model(model: nn.Module, config, tokenizer=None) -> PromptModel:
    """Attach a soft prompt to ``model`` (Lester et al. 2021, §2): the base model is frozen, the prompt trains.

    ``config``: a :class:`~softprompt.PromptTuningConfig`, or a MultitaskPromptTuningConfig for MPT (Wang et al.
    2023, §3.1), filled in from the model. ``tokenizer`` serves the TEXT and CLASS_LABELS inits (else
    ``config.tokenizer_name_or_path`` is loaded)."""
    check_real_weights(model)
    config = config.filled_from_model(model) if hasattr(config, "filled_from_model") else dataclasses.replace(config)
    if config.task_type is not None:
        check_task_type(model, config.task_type)  # e.g. CAUSAL_LM on a BERT classifier: logits of shape (B, 0)
    check_prompt_fits(model, config.num_virtual_tokens)  # T virtual tokens past the model's context: no room for text
    word_embeddings = model.get_input_embeddings()
    model.requires_grad_(False)
    is_mpt = config.peft_type == "MULTITASK_PROMPT_TUNING"
    encoder = (MultitaskPromptEmbedding if is_mpt else PromptEmbedding)(config, word_embeddings, tokenizer=tokenizer)
    encoder = encoder.to(word_embeddings.weight.device)
    prompt_model = prompt_model_class(config.task_type)(model, config, encoder)
    return prompt_model.set_trainable(not config.inference_mode)
