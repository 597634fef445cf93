"""A frozen Hugging Face model with a trainable soft prompt in front: `PromptModel`.

Prompt tuning (Lester et al. 2021, §2) keeps every weight of the model frozen and learns only
``T`` vectors ``P_e ∈ R^{T×d}`` that are prepended to the embedded input ``X_e``: the model reads
``[P_e; X_e]``. This module does the prepending and the bookkeeping it implies:

* **Causal LMs**: the prompt goes *first*, before any left padding: ``[prompt][pad…pad][tokens]``.
  The attention mask gets ``T`` ones in front, labels get ``T`` entries of ``-100``, and position
  ids come from the mask (``cumsum(mask) - 1``), so real token ``j`` of every row sits at position
  ``T + j`` however much padding the row has: a left-padded row gives the same logits as the same
  row unpadded. (PEFT also puts the prompt before the pads but leaves positions to the model, which
  counts the pads; peft #1093.)
* **Seq2seq LMs**: by default the prompt goes to the encoder only, as in Lester et al. With
  ``num_transformer_submodules=2`` a second block of ``T`` vectors is prepended to the decoder
  input, and ``generate`` feeds the decoder the same prompt that training did.
* **Sequence classification**: prompt plus classification head; the head (PEFT's
  ``modules_to_save = ["classifier", "score"]``) is trainable too. Encoders (BERT: ``classifier``)
  keep their own positions. Decoder classifiers (``score`` heads, e.g. LlamaForSequenceClassification)
  read the last position, so they need left padding, and get the causal position ids.

**Misuse is refused, not computed.** :func:`get_prompt_model` checks the task type against the model
(:func:`softprompt.model_kind.check_task_type`: CAUSAL_LM on a BERT classifier would give logits of shape
``(B, 0)``) and refuses weights on the ``meta`` device. ``forward`` and ``generate`` refuse input ids that
are not ``(batch, length)`` integers, ids outside the embedding table (checked where it costs no device sync:
CPU inputs, and ``generate``), and ``T + L`` beyond a learned position table (GPT-2, BERT; rotary models have
none). ``generate`` refuses right-padded causal rows, which would continue from their padding.

**Outputs strip the virtual positions.** ``logits`` has the length of ``input_ids`` (the last
``logits_to_keep`` positions when that is > 0), so labels, logits and input ids line up as in
plain Hugging Face. ``hidden_states`` (when requested) are stripped the same way; ``attentions``
and ``past_key_values`` are returned as the base model gives them, virtual positions included.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .adapter_files import SIDECAR_CONFIG_NAME, load_adapter, save_adapter
from .config import PromptTuningConfig, TaskType, _portable_name
from .context import position_table_size
from .hf_compat import cache_kwargs
from .model_kind import check_task_type
from .task_ids import as_task_ids, num_tasks_of

__all__ = ["PromptModel", "get_prompt_model", "find_classifier_head", "CLASSIFIER_HEAD_NAMES"]

# PEFT's PeftModelForSequenceClassification makes these top-level children trainable and saves them.
CLASSIFIER_HEAD_NAMES = ("classifier", "score")


def find_classifier_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The classification head of a sequence-classification model, found as PEFT finds it:
    the first top-level child whose name contains ``"classifier"`` or ``"score"``."""
    for name, module in model.named_children():
        if any(head in name for head in CLASSIFIER_HEAD_NAMES):
            return name, module
    raise ValueError(
        f"{type(model).__name__} has no child named like {CLASSIFIER_HEAD_NAMES}; task_type='SEQ_CLS' needs a "
        "sequence-classification model (e.g. AutoModelForSequenceClassification)."
    )


def _check_real_weights(model: nn.Module) -> None:
    """Refuse a model whose weights are on the ``meta`` device: shapes without values (nothing can read them)."""
    meta = [name for name, p in model.named_parameters() if p.is_meta]
    if not meta:
        return
    # Accelerate's offloading (device_map=..., hf_device_map set) parks weights on meta and loads them during the
    # forward pass; that works, as long as the input embeddings (which the prompt is built from) are real.
    if getattr(model, "hf_device_map", None) and not model.get_input_embeddings().weight.is_meta:
        return
    raise ValueError(
        f"{type(model).__name__} has {len(meta)} parameters on the meta device (e.g. {meta[0]}): they have shapes "
        "but no values (built under accelerate's init_empty_weights or torch.device('meta')), so neither the "
        "prompt's initialization nor a forward pass can read them. Load the real weights first: "
        "AutoModel...from_pretrained(...) outside init_empty_weights, or model.to_empty(device='cpu') followed by "
        "model.load_state_dict(state_dict)."
    )


def _fill_config(config, model):
    """A copy of ``config`` with the fields the model determines (token_dim, layers, heads...) filled in."""
    if hasattr(config, "filled_from_model"):
        return config.filled_from_model(model)
    return dataclasses.replace(config)


def _build_encoder(config, word_embeddings: nn.Embedding, tokenizer=None) -> nn.Module:
    """The prompt encoder for ``config``: PromptEmbedding, or MultitaskPromptEmbedding for MPT."""
    if config.peft_type == "MULTITASK_PROMPT_TUNING":
        from .multitask import MultitaskPromptEmbedding as encoder_cls
    else:
        from .prompt_embedding import PromptEmbedding as encoder_cls
    if tokenizer is not None and "tokenizer" in inspect.signature(encoder_cls).parameters:
        return encoder_cls(config, word_embeddings, tokenizer=tokenizer)
    return encoder_cls(config, word_embeddings)


def _config_from_dict(d: dict):
    if d.get("peft_type") == "MULTITASK_PROMPT_TUNING":
        from .multitask import MultitaskPromptTuningConfig as config_cls
    else:
        config_cls = PromptTuningConfig
    return config_cls.from_dict(d)


class PromptModel(nn.Module):
    """A frozen base model plus a soft prompt (Lester et al. 2021, §2). Build it with :func:`get_prompt_model`.

    Attributes: ``base_model`` (frozen), ``prompt_config``, ``prompt_encoder`` (the trainable prompt),
    ``word_embeddings`` (``base_model.get_input_embeddings()``), ``task_type``, ``num_virtual_tokens``
    (``T`` per transformer submodule).
    """

    main_input_name = "input_ids"

    def __init__(self, base_model: nn.Module, prompt_config, prompt_encoder: nn.Module):
        super().__init__()
        self.base_model = base_model
        self.prompt_config = prompt_config
        self.prompt_encoder = prompt_encoder
        self.task_type = TaskType(prompt_config.task_type)
        self.num_virtual_tokens = int(prompt_config.num_virtual_tokens)
        self.num_transformer_submodules = int(prompt_config.num_transformer_submodules or 1)
        if self.task_type != TaskType.SEQ_2_SEQ_LM and self.num_transformer_submodules != 1:
            raise ValueError(
                f"num_transformer_submodules={self.num_transformer_submodules} is for seq2seq models only; "
                f"task_type={self.task_type.value} has one transformer stack: use 1."
            )
        total = self.num_virtual_tokens * self.num_transformer_submodules
        # Indices 0..T_total-1 into the prompt encoder (PEFT's `prompt_tokens`).
        device = base_model.get_input_embeddings().weight.device
        self.register_buffer("prompt_tokens", torch.arange(total, device=device), persistent=False)
        self.head_name = find_classifier_head(base_model)[0] if self.task_type == TaskType.SEQ_CLS else None
        forward_params = inspect.signature(base_model.forward).parameters
        self._accepts_position_ids = "position_ids" in forward_params
        self._max_positions = position_table_size(base_model)  # None: no hard limit (rotary / relative positions)

    # ------------------------------------------------------------------ properties
    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.base_model.get_input_embeddings()

    @property
    def config(self):
        """The base model's Hugging Face config (``transformers.Trainer`` and ``generate`` read it)."""
        return self.base_model.config

    @property
    def device(self) -> torch.device:
        return self.word_embeddings.weight.device

    @property
    def needs_task_ids(self) -> bool:
        return bool(getattr(self.prompt_encoder, "needs_task_ids", False))

    @property
    def head(self) -> nn.Module | None:
        """The SEQ_CLS classification head (trainable, saved with the prompt), else None."""
        return getattr(self.base_model, self.head_name) if self.head_name else None

    # ------------------------------------------------------------------ the prompt
    def _check_task_ids(self, task_ids, batch_size: int) -> torch.Tensor | None:
        if not self.needs_task_ids:
            return None  # a single-task prompt ignores task ids, as PEFT's does
        return as_task_ids(task_ids, batch_size, num_tasks_of(self), self.device)  # (B,), checked (Wang et al. §3)

    def get_prompt(self, batch_size: int, task_ids=None) -> torch.Tensor:
        """The prompt vectors for a batch: ``(B, T_total, d)`` with ``T_total = T * num_transformer_submodules``.

        For seq2seq with decoder prompts, ``[:, :T]`` goes to the encoder and ``[:, T:]`` to the decoder.
        """
        task_ids = self._check_task_ids(task_ids, batch_size)
        if task_ids is not None:
            indices = self.prompt_tokens.unsqueeze(0).expand(batch_size, -1)  # (B, T_total)
            return self.prompt_encoder(indices, task_ids)  # (B, T_total, d)
        # One prompt shared by every row: encode it once, broadcast it (no copies).
        prompt = self.prompt_encoder(self.prompt_tokens.unsqueeze(0))  # (1, T_total, d)
        return prompt.expand(batch_size, -1, -1)  # (B, T_total, d)

    def _check_input_ids(self, input_ids, check_vocab: bool | None = None) -> None:
        """Token ids must be a 2-D integer tensor of ids the model has embeddings for.

        The vocabulary check (``aminmax`` over the ids) waits for the device, so it runs where that costs
        nothing: on CPU tensors, and in :meth:`generate` (which waits every token anyway). A CUDA forward with
        an out-of-range id still fails inside the embedding lookup (a device-side assert).
        """
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(
                f"input_ids is a {type(input_ids).__name__}; pass a tensor of token ids of shape (batch, length), "
                "e.g. tokenizer(texts, return_tensors='pt').input_ids."
            )
        if input_ids.ndim != 2:
            hint = ("add a batch dimension with input_ids[None] / input_ids.unsqueeze(0)" if input_ids.ndim == 1
                    else "one row of token ids per example")
            raise ValueError(f"input_ids has shape {tuple(input_ids.shape)}; expected (batch, length): {hint}.")
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise TypeError(
                f"input_ids has dtype {input_ids.dtype}; token ids are integers (torch.long). "
                "To feed vectors, pass inputs_embeds= instead."
            )
        if check_vocab is None:
            check_vocab = input_ids.device.type == "cpu"
        if check_vocab and input_ids.numel():
            lo, hi = (int(x) for x in torch.aminmax(input_ids))
            V = self.word_embeddings.num_embeddings
            if lo < 0 or hi >= V:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"input_ids holds token id {bad}, but {type(self.base_model).__name__} has embeddings for ids "
                    f"0..{V - 1} only (vocabulary size {V}): the tokenizer does not belong to this model, or it has "
                    "tokens added after the model was loaded. Use the model's own tokenizer, or call "
                    "model.resize_token_embeddings(len(tokenizer)) before get_prompt_model."
                )

    def _check_length(self, length: int, what: str = "input tokens") -> None:
        """``T + L`` must fit a learned position table (GPT-2, BERT); no device sync, just the shapes."""
        limit, T = self._max_positions, self.num_virtual_tokens
        if limit is not None and T + length > limit:
            raise ValueError(
                f"The prompt's {T} virtual tokens plus {length} {what} make {T + length} positions, but "
                f"{type(self.base_model).__name__} has position embeddings for {limit} only. Keep the input to "
                f"{limit - T} tokens (tokenizer(..., truncation=True, max_length={limit - T})) or use fewer "
                "virtual tokens."
            )

    def _prepend(self, input_ids, inputs_embeds, attention_mask, task_ids, check_vocab: bool | None = None):
        """``[P_e; X_e]`` and the mask extended by T ones (Lester §2). Returns embeds, mask, B, L."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            self._check_input_ids(input_ids, check_vocab)
            inputs_embeds = self.word_embeddings(input_ids)  # (B, L, d)
        elif inputs_embeds.ndim != 3:
            raise ValueError(f"inputs_embeds has shape {tuple(inputs_embeds.shape)}; expected (batch, length, hidden).")
        B, L = inputs_embeds.shape[:2]
        self._check_length(L)
        if attention_mask is None:
            attention_mask = torch.ones(B, L, dtype=torch.long, device=inputs_embeds.device)
        if attention_mask.shape != (B, L):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected ({B}, {L}).")
        T = self.num_virtual_tokens
        prompt = self.get_prompt(B, task_ids).to(inputs_embeds.dtype)  # (B, T_total, d)
        embeds = torch.cat([prompt[:, :T], inputs_embeds], dim=1)  # (B, T + L, d)
        ones = attention_mask.new_ones(B, T)
        mask = torch.cat([ones, attention_mask], dim=1)  # (B, T + L)
        return embeds, mask, prompt, B, L

    @staticmethod
    def _extend_token_type_ids(kwargs: dict, T: int):
        if kwargs.get("token_type_ids") is not None:
            tt = kwargs["token_type_ids"]  # (B, L)
            kwargs["token_type_ids"] = torch.cat([tt.new_zeros(tt.shape[0], T), tt], dim=1)  # (B, T + L)

    @staticmethod
    def _strip_hidden(hidden_states, T: int):
        return None if hidden_states is None else tuple(h[:, T:] for h in hidden_states)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        task_ids=None,
        inputs_embeds: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ):
        """Run the base model on ``[prompt; input]``; the outputs are aligned with ``input_ids``.

        ``labels`` are aligned with ``input_ids`` as in Hugging Face. ``task_ids`` (B,) is required for
        a multitask (MPT) prompt. ``logits_to_keep=k > 0`` (causal LMs) runs the LM head on the last k
        positions only and computes the loss there: it covers the labels in ``labels[:, -k+1:]``.
        Extra keyword arguments (``output_hidden_states``, ``num_items_in_batch``, ...) go to the base model.
        """
        if self.task_type == TaskType.CAUSAL_LM:
            return self._forward_causal(input_ids, attention_mask, labels, task_ids, inputs_embeds, logits_to_keep,
                                        **kwargs)
        if logits_to_keep:
            raise ValueError(f"logits_to_keep is for causal LMs; task_type={self.task_type.value}: leave it 0.")
        if self.task_type == TaskType.SEQ_2_SEQ_LM:
            return self._forward_seq2seq(input_ids, attention_mask, labels, task_ids, inputs_embeds, **kwargs)
        return self._forward_seq_cls(input_ids, attention_mask, labels, task_ids, inputs_embeds, **kwargs)

    def _causal_position_ids(self, mask: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
        """Positions from the mask: real token j of a row sits at T + j, whatever the left padding."""
        if position_ids is not None:  # caller's positions for the real tokens: shift them past the prompt
            T = self.num_virtual_tokens
            prompt_pos = torch.arange(T, device=position_ids.device).expand(position_ids.shape[0], T)
            return torch.cat([prompt_pos, position_ids + T], dim=1)  # (B, T + L)
        return (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T + L)

    def _forward_causal(self, input_ids, attention_mask, labels, task_ids, inputs_embeds, logits_to_keep, **kwargs):
        T = self.num_virtual_tokens
        embeds, mask, _, B, L = self._prepend(input_ids, inputs_embeds, attention_mask, task_ids)
        position_ids = self._causal_position_ids(mask, kwargs.pop("position_ids", None))
        if self._accepts_position_ids:
            kwargs["position_ids"] = position_ids
        self._extend_token_type_ids(kwargs, T)
        k = int(logits_to_keep)
        if k < 0 or k > L:
            raise ValueError(f"logits_to_keep={k} is outside 0..{L} (the input length); use 0 for all positions.")
        num_items = kwargs.pop("num_items_in_batch", None)
        if k == 0:
            if labels is not None:  # -100 on the virtual positions; the model shifts and averages as usual
                kwargs["labels"] = torch.cat([labels.new_full((B, T), -100), labels], dim=1)  # (B, T + L)
                if num_items is not None:
                    kwargs["num_items_in_batch"] = num_items
            out = self.base_model(inputs_embeds=embeds, attention_mask=mask, **kwargs)
            out["logits"] = out.logits[:, T:]  # (B, L, V)
        else:
            out = self.base_model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=k, **kwargs)
            if labels is not None:  # logits cover the last k positions; predict the next of each
                out["loss"] = self._causal_loss(out.logits, labels[:, -k:], num_items)  # logits (B, k, V)
        if out.get("hidden_states") is not None:
            out["hidden_states"] = self._strip_hidden(out.hidden_states, T)
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

    def _decoder_prompt_inputs(self, prompt, labels, kwargs):
        """Decoder prompts (num_transformer_submodules=2): ``[P_dec; embed(decoder_input_ids)]``."""
        T = self.num_virtual_tokens
        dec_ids = kwargs.pop("decoder_input_ids", None)
        dec_embeds = kwargs.pop("decoder_inputs_embeds", None)
        if dec_embeds is None:
            if dec_ids is None:
                if labels is None:
                    raise ValueError("Pass labels or decoder_input_ids: the decoder needs an input.")
                dec_ids = self.base_model._shift_right(labels) if hasattr(self.base_model, "_shift_right") else None
                if dec_ids is None:
                    from transformers.models.bart.modeling_bart import shift_tokens_right

                    cfg = self.base_model.config
                    dec_ids = shift_tokens_right(labels, cfg.pad_token_id, cfg.decoder_start_token_id)
            dec_embeds = self.word_embeddings(dec_ids)  # (B, Ld, d)
        B = dec_embeds.shape[0]
        kwargs["decoder_inputs_embeds"] = torch.cat([prompt[:, T:].to(dec_embeds.dtype), dec_embeds], dim=1)
        dec_mask = kwargs.get("decoder_attention_mask")
        if dec_mask is not None:
            kwargs["decoder_attention_mask"] = torch.cat([dec_mask.new_ones(B, T), dec_mask], dim=1)
        if labels is not None:
            labels = torch.cat([labels.new_full((B, T), -100), labels], dim=1)  # (B, T + Ld)
        return labels

    def _forward_seq2seq(self, input_ids, attention_mask, labels, task_ids, inputs_embeds, **kwargs):
        T = self.num_virtual_tokens
        embeds, mask, prompt, _, _ = self._prepend(input_ids, inputs_embeds, attention_mask, task_ids)
        decoder_prompt = self.num_transformer_submodules == 2
        if decoder_prompt:
            labels = self._decoder_prompt_inputs(prompt, labels, kwargs)
        out = self.base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)
        if decoder_prompt:
            out["logits"] = out.logits[:, T:]  # (B, Ld, V)
            if out.get("decoder_hidden_states") is not None:
                out["decoder_hidden_states"] = self._strip_hidden(out.decoder_hidden_states, T)
        if out.get("encoder_last_hidden_state") is not None:
            out["encoder_last_hidden_state"] = out.encoder_last_hidden_state[:, T:]
        if out.get("encoder_hidden_states") is not None:
            out["encoder_hidden_states"] = self._strip_hidden(out.encoder_hidden_states, T)
        return out

    def _forward_seq_cls(self, input_ids, attention_mask, labels, task_ids, inputs_embeds, **kwargs):
        T = self.num_virtual_tokens
        embeds, mask, _, _, _ = self._prepend(input_ids, inputs_embeds, attention_mask, task_ids)
        if self.head_name == "score":
            # A decoder-style classifier (LlamaForSequenceClassification, ...) reads the last position, and given
            # embeddings it cannot look for pads: rows must be left-padded. Positions as for causal LMs.
            if (mask[:, -1] == 0).any():
                raise ValueError(
                    f"{type(self.base_model).__name__} classifies from the last position; with a prompt it "
                    "cannot skip right padding. Pad on the left (tokenizer.padding_side = 'left')."
                )
            if self._accepts_position_ids:
                kwargs["position_ids"] = self._causal_position_ids(mask, kwargs.pop("position_ids", None))
        self._extend_token_type_ids(kwargs, T)
        kwargs.pop("num_items_in_batch", None)  # classification heads average over the batch themselves
        out = self.base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)
        if out.get("hidden_states") is not None:
            out["hidden_states"] = self._strip_hidden(out.hidden_states, T)
        return out

    # ------------------------------------------------------------------ generate
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, task_ids=None,
                 **generate_kwargs) -> torch.Tensor:
        """Generate with the prompt in front; returns only the new tokens, ``(B, new)``.

        Causal LMs: the base model's ``generate`` runs on ``[prompt; embed(input_ids)]`` with the extended
        mask; Hugging Face derives position ids from that mask exactly as :meth:`forward` does. Seq2seq:
        the encoder reads ``[prompt; input]``; with decoder prompts the decoder starts from the same
        ``[P_dec; <start>]`` it was trained on. The decoder start token is not returned.
        Logits processors that look at past tokens (e.g. ``repetition_penalty``) see only generated tokens.
        """
        if self.task_type == TaskType.SEQ_CLS:
            raise ValueError("generate() is for CAUSAL_LM and SEQ_2_SEQ_LM prompts; call the model for SEQ_CLS.")
        embeds, mask, prompt, B, L = self._prepend(input_ids, None, attention_mask, task_ids, check_vocab=True)
        if self.task_type == TaskType.CAUSAL_LM:
            if (mask[:, -1] == 0).any():
                # Generation continues after the last position: a right-padded row would continue from its pads.
                raise ValueError(
                    "attention_mask has rows that end in 0 (right padding): a causal LM generates after the last "
                    "position, so those rows would continue from padding and return wrong tokens. "
                    "Pad on the left: tokenizer.padding_side = 'left'."
                )
            new = generate_kwargs.get("max_new_tokens")
            if new is not None:
                self._check_length(L + int(new), f"input and new tokens ({L} + max_new_tokens={new})")
            return self.base_model.generate(inputs_embeds=embeds, attention_mask=mask, **generate_kwargs)
        if self.num_transformer_submodules == 1:
            out = self.base_model.generate(inputs_embeds=embeds, attention_mask=mask, **generate_kwargs)
            return out[:, 1:]  # drop the decoder start token
        return self._generate_with_decoder_prompt(embeds, mask, prompt, **generate_kwargs)

    def _generate_with_decoder_prompt(self, embeds, mask, prompt, **generate_kwargs):
        """Seq2seq generation whose decoder starts from ``[P_dec; <start>]``, as in training.

        Hugging Face's ``generate`` cannot take decoder embeddings, so we run the decoder once on the
        decoder prompt to fill the key/value cache, then let ``generate`` continue from that cache. The
        cached positions need placeholder ids in ``decoder_input_ids``; they are never embedded (the
        cache stands in for them) and are cut from the result.
        """
        from transformers import DynamicCache, EncoderDecoderCache

        T = self.num_virtual_tokens
        B = embeds.shape[0]
        base = self.base_model
        encoder_outputs = base.get_encoder()(inputs_embeds=embeds, attention_mask=mask, return_dict=True)
        cache = EncoderDecoderCache(DynamicCache(config=base.config), DynamicCache(config=base.config))
        base(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_inputs_embeds=prompt[:, T:].to(embeds.dtype),
             use_cache=True, **cache_kwargs(base, cache))
        start = base.config.decoder_start_token_id
        placeholder = base.config.pad_token_id if base.config.pad_token_id is not None else start
        dec_ids = torch.full((B, T + 1), placeholder, dtype=torch.long, device=embeds.device)
        dec_ids[:, -1] = start
        # A full-length decoder mask tells generate that the first T ids are already in the cache.
        dec_mask = torch.ones_like(dec_ids)  # (B, T + 1)
        out = base.generate(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=dec_ids,
                            decoder_attention_mask=dec_mask, **cache_kwargs(base, cache), **generate_kwargs)
        return out[:, T + 1:]

    # ------------------------------------------------------------------ parameters
    def num_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts (shared tensors counted once)."""
        seen, trainable, total = set(), 0, 0
        for p in self.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
        return trainable, total

    def print_trainable_parameters(self) -> None:
        trainable, total = self.num_trainable_parameters()
        print(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}")

    def set_trainable(self, trainable: bool = True) -> PromptModel:
        """Freeze the base model; make the prompt (and a SEQ_CLS head) trainable or not."""
        self.base_model.requires_grad_(False)
        self.prompt_encoder.requires_grad_(trainable)
        if self.head is not None:
            self.head.requires_grad_(trainable)
        return self

    def gradient_checkpointing_enable(self, **kwargs):
        self.base_model.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self):
        self.base_model.gradient_checkpointing_disable()

    # ------------------------------------------------------------------ files
    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """What ``adapter_model.safetensors`` holds, under PEFT's key names."""
        tensors = {k: v.detach() for k, v in self.prompt_encoder.adapter_tensors().items()}
        if self.head is not None:
            for name, p in self.head.named_parameters():
                tensors[f"base_model.{self.head_name}.{name}"] = p.detach()
        return tensors

    def load_adapter_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load tensors in PEFT's key names, checking every shape against this model."""
        tensors = dict(tensors)
        if self.head is not None:
            prefix = f"base_model.{self.head_name}."
            head_params = dict(self.head.named_parameters())
            head_tensors = {k[len(prefix):]: tensors.pop(k) for k in list(tensors) if k.startswith(prefix)}
            missing = sorted(set(head_params) - set(head_tensors))
            if missing:
                raise ValueError(f"The adapter file has no weights for the classification head ({prefix}{missing}); "
                                 "it was saved from a model without this head.")
            for name, t in head_tensors.items():
                if name not in head_params:
                    raise ValueError(f"The adapter file has {prefix}{name}, which this model's head does not have.")
                if tuple(t.shape) != tuple(head_params[name].shape):
                    raise ValueError(
                        f"{prefix}{name} has shape {tuple(t.shape)} in the file but {tuple(head_params[name].shape)} "
                        "in this model: the head was trained for a different number of labels or hidden size."
                    )
                with torch.no_grad():
                    head_params[name].copy_(t.to(head_params[name].dtype))
        tensors = {k: v for k, v in tensors.items() if not k.startswith("base_model.")}
        self.prompt_encoder.load_adapter_tensors(tensors)

    def save_pretrained(self, save_directory: str | os.PathLike, state_dict=None, safe_serialization: bool = True,
                        **kwargs) -> Path:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT's format) atomically.

        ``state_dict`` and ``safe_serialization`` are accepted for ``transformers.Trainer`` and ignored:
        the file always holds the adapter tensors, always as safetensors. ``peft.PeftModel.from_pretrained``
        loads the directory and computes the same logits, with one exception: PEFT's seq2seq prompt tuning
        never feeds a decoder prompt, so a ``num_transformer_submodules=2`` prompt runs there without its
        decoder half.
        """
        cfg = self.prompt_config
        peft_dict = cfg.peft_dict() if hasattr(cfg, "peft_dict") else cfg.to_dict()
        peft_dict = dict(peft_dict)
        peft_dict.update(peft_type=cfg.peft_type, task_type=self.task_type.value, inference_mode=True)
        if self.head_name is not None:
            peft_dict["modules_to_save"] = list(CLASSIFIER_HEAD_NAMES)
        full = dict(cfg.to_dict(), peft_type=cfg.peft_type, task_type=self.task_type.value)
        return save_adapter(save_directory, peft_dict, self.adapter_tensors(), extra_config=full)

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: str | os.PathLike, is_trainable: bool = False,
                        ) -> PromptModel:
        """Load a saved prompt (ours or PEFT's) onto ``model``.

        The file must fit the model: its ``token_dim`` must equal the model's hidden size and its tensors
        the configured number of virtual tokens; otherwise a ``ValueError`` says what does not fit.
        ``is_trainable=True`` returns a model you can keep training (PEFT refuses that, peft #2046).
        A PEFT seq2seq prompt saved with PEFT's default ``num_transformer_submodules=2`` is loaded as the
        encoder prompt PEFT actually uses (its decoder half never reaches PEFT's model), with a warning.
        """
        config_dict, tensors = load_adapter(directory)
        d_model = model.get_input_embeddings().embedding_dim
        token_dim = config_dict.get("token_dim")
        if token_dim is not None and int(token_dim) != d_model:
            raise ValueError(
                f"{directory} holds a prompt for token_dim={token_dim}, but this model's hidden size is {d_model}: "
                "the prompt was trained for another model. Load it onto the model it was saved from."
            )
        saved_name = _portable_name(config_dict.get("base_model_name_or_path") or None)
        mc = getattr(model, "config", None)
        model_name = _portable_name(getattr(mc, "name_or_path", None) or getattr(mc, "_name_or_path", None) or None)
        if saved_name and model_name and saved_name.rstrip("/") != model_name.rstrip("/"):
            warnings.warn(
                f"{directory} holds a prompt trained on {saved_name!r}, but this model is {model_name!r}. The "
                f"hidden sizes match ({d_model}), so it loads, but a soft prompt only means something to the model it "
                "was trained on: expect poor results unless both names are the same model.", UserWarning, stacklevel=2,
            )
        emb = tensors["prompt_embeddings"]
        T = int(config_dict.get("num_virtual_tokens") or 0)
        n_sub = int(config_dict.get("num_transformer_submodules") or 1)
        if emb.ndim != 2 or emb.shape[1] != d_model:
            raise ValueError(f"prompt_embeddings in {directory} has shape {tuple(emb.shape)}; this model needs "
                             f"(num_virtual_tokens, {d_model}).")
        if emb.shape[0] != T * n_sub:
            raise ValueError(
                f"prompt_embeddings in {directory} has {emb.shape[0]} rows but its config says num_virtual_tokens={T} "
                f"x num_transformer_submodules={n_sub} = {T * n_sub}: the files do not belong together."
            )
        from_peft = not (Path(directory) / SIDECAR_CONFIG_NAME).exists()
        if from_peft and n_sub == 2 and config_dict.get("peft_type") == "PROMPT_TUNING":
            # PEFT's seq2seq prompt tuning allocates a decoder half but never feeds it to the model
            # (PeftModelForSeq2SeqLM uses prompts[:, :T] only). Keep the encoder half: we compute what PEFT computes.
            warnings.warn(
                f"{directory} is a PEFT seq2seq prompt with num_transformer_submodules=2; PEFT never uses its "
                "decoder half, so it is dropped and the prompt is loaded as an encoder prompt.", stacklevel=2,
            )
            tensors = dict(tensors, prompt_embeddings=emb[:T])
            config_dict = dict(config_dict, num_transformer_submodules=1)
        config = _config_from_dict(config_dict)
        config = dataclasses.replace(config, inference_mode=True)  # build the encoder without running the init
        prompt_model = get_prompt_model(model, config)
        prompt_model.load_adapter_tensors(tensors)
        prompt_model.prompt_config = dataclasses.replace(prompt_model.prompt_config, inference_mode=not is_trainable)
        return prompt_model.set_trainable(is_trainable)

    def extra_repr(self) -> str:
        return (f"task_type={self.task_type.value}, num_virtual_tokens={self.num_virtual_tokens}, "
                f"num_transformer_submodules={self.num_transformer_submodules}")


def get_prompt_model(model: nn.Module, config, tokenizer=None) -> PromptModel:
    """Attach a soft prompt to ``model`` (Lester et al. 2021, §2): the base model is frozen, the prompt trains.

    ``config`` is a :class:`~softprompt.PromptTuningConfig` (or a MultitaskPromptTuningConfig, which builds
    the MPT encoder of Wang et al. 2023). Fields the model determines (``token_dim``, layers, heads) are
    filled in from it. ``tokenizer`` serves the TEXT and CLASS_LABELS inits (else the config's
    ``tokenizer_name_or_path`` is loaded). For ``SEQ_CLS`` the classification head trains too.
    """
    if not hasattr(model, "get_input_embeddings") or model.get_input_embeddings() is None:
        raise ValueError(f"{type(model).__name__} has no get_input_embeddings(); pass a Hugging Face model.")
    _check_real_weights(model)
    config = _fill_config(config, model)
    if config.task_type is not None:
        check_task_type(model, config.task_type)  # e.g. CAUSAL_LM on a BERT classifier: logits of shape (B, 0)
    word_embeddings = model.get_input_embeddings()
    model.requires_grad_(False)
    encoder = _build_encoder(config, word_embeddings, tokenizer=tokenizer)
    encoder = encoder.to(word_embeddings.weight.device)
    prompt_model = PromptModel(model, config, encoder)
    return prompt_model.set_trainable(not config.inference_mode)
