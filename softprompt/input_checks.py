"""The checks a prompt model runs before it computes anything: each one only produces an error message.

Misuse is refused, not computed. A prompt on the wrong kind of model, weights on the ``meta`` device,
token ids that are not ``(batch, length)`` integers or not in the embedding table, ``T + L`` past a
learned position table, a saved prompt that does not fit the model: each would otherwise fail deep
inside torch, or worse, run and compute nonsense. The functions here receive the prompt model (or
the base model) duck-typed and never import :mod:`softprompt.prompt_model`.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .enums import TaskType
from .config_from_model import portable_name
from .context import check_token_ids, context_size, position_table_size

__all__ = [
    "check_real_weights", "check_model_class", "check_transformer_submodules", "check_prompt_fits", "check_inputs",
    "check_input_ids", "check_length", "check_logits_to_keep", "check_no_logits_to_keep", "check_generate_inputs",
    "check_saved_prompt",
]


def check_real_weights(model: nn.Module) -> None:
    """A Hugging Face model (with input embeddings) whose weights are real, not on the ``meta`` device:
    shapes without values, which neither the prompt's initialization nor a forward pass can read."""
    if not hasattr(model, "get_input_embeddings") or model.get_input_embeddings() is None:
        raise ValueError(f"{type(model).__name__} has no get_input_embeddings(); pass a Hugging Face model.")
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


def check_model_class(prompt_model, cls: type) -> None:
    """A prompt model built directly must be the class for its task type (get_prompt_model picks it), and
    have one transformer submodule unless it is a seq2seq model (:func:`check_transformer_submodules`)."""
    if not isinstance(prompt_model, cls):
        raise TypeError(f"{type(prompt_model).__name__} is for CAUSAL_LM; a {prompt_model.task_type.value} prompt "
                        f"model is a {cls.__name__}: build it with get_prompt_model.")
    check_transformer_submodules(prompt_model.task_type, prompt_model.num_transformer_submodules)


def check_transformer_submodules(task_type: TaskType, num_transformer_submodules: int) -> None:
    """A second block of prompt vectors (a decoder prompt) exists for seq2seq models only."""
    if task_type != TaskType.SEQ_2_SEQ_LM and num_transformer_submodules != 1:
        raise ValueError(
            f"num_transformer_submodules={num_transformer_submodules} is for seq2seq models only; "
            f"task_type={task_type.value} has one transformer stack: use 1."
        )


def check_prompt_fits(model: nn.Module, num_virtual_tokens: int) -> None:
    """The prompt alone must fit ``model``'s context: ``T <= N`` for ``N`` positions (its learned position table or
    its config's context, whichever is smaller). ``T == N`` builds, but leaves no room for text: training and
    evaluation say so (:func:`softprompt.context.batch_max_length`)."""
    limits = [n for n in (position_table_size(model), context_size(model)) if n is not None]
    if limits and num_virtual_tokens > min(limits):
        raise ValueError(_prompt_too_long(model, num_virtual_tokens, min(limits)))


def _prompt_too_long(model: nn.Module, T: int, limit: int) -> str:
    verb = "exceed" if T > limit else "fill"
    return (f"num_virtual_tokens={T}: the prompt's {T} virtual tokens alone {verb} {type(model).__name__}'s context "
            f"of {limit} positions, which leaves no room for the text; use at most {limit - 1} virtual tokens "
            "(or a model with a longer context).")


def check_inputs(prompt_model, input_ids, inputs_embeds, attention_mask, check_vocab: bool | None = None) -> None:
    """What a forward pass reads: exactly one of ``input_ids`` (checked by :func:`check_input_ids`) or
    ``inputs_embeds`` ``(B, L, d)``, ``T + L`` positions that fit (:func:`check_length`), a mask ``(B, L)``."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
    if inputs_embeds is None:
        check_input_ids(prompt_model, input_ids, check_vocab)
    elif inputs_embeds.ndim != 3:
        raise ValueError(f"inputs_embeds has shape {tuple(inputs_embeds.shape)}; expected (batch, length, hidden).")
    B, L = (input_ids if inputs_embeds is None else inputs_embeds).shape[:2]
    check_length(prompt_model, L)
    if attention_mask is not None and attention_mask.shape != (B, L):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected ({B}, {L}).")


def check_input_ids(prompt_model, input_ids, check_vocab: bool | None = None) -> None:
    """Token ids must be a 2-D integer tensor of ids the model has embeddings for.

    The vocabulary check (``aminmax`` over the ids) waits for the device, so it runs where that costs
    nothing: on CPU tensors (``check_vocab=None``), and in ``generate`` (which waits every token anyway). A
    CUDA forward with an out-of-range id still fails inside the embedding lookup (a device-side assert).
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
    if check_vocab:
        check_token_ids(prompt_model, input_ids)


def check_length(prompt_model, length: int, what: str = "input tokens") -> None:
    """``T + L`` must fit a learned position table (GPT-2, BERT); no device sync, just the shapes."""
    limit, T = prompt_model._max_positions, prompt_model.num_virtual_tokens
    if limit is not None and T >= limit:  # a PromptModel built directly: get_prompt_model refuses T > limit
        raise ValueError(_prompt_too_long(prompt_model.base_model, T, limit))
    if limit is not None and T + length > limit:
        raise ValueError(
            f"The prompt's {T} virtual tokens plus {length} {what} make {T + length} positions, but "
            f"{type(prompt_model.base_model).__name__} has position embeddings for {limit} only. Keep the input to "
            f"{limit - T} tokens (tokenizer(..., truncation=True, max_length={limit - T})) or use fewer "
            "virtual tokens."
        )


def check_logits_to_keep(logits_to_keep: int, L: int) -> int:
    """``logits_to_keep`` as an int in ``0..L`` (0: all positions)."""
    k = int(logits_to_keep)
    if k < 0 or k > L:
        raise ValueError(f"logits_to_keep={k} is outside 0..{L} (the input length); use 0 for all positions.")
    return k


def check_no_logits_to_keep(prompt_model, logits_to_keep: int) -> None:
    """``logits_to_keep`` is a causal-LM option: other task types refuse anything but 0."""
    if logits_to_keep:
        raise ValueError(f"logits_to_keep is for causal LMs; task_type={prompt_model.task_type.value}: leave it 0.")


def check_generate_inputs(prompt_model, mask: torch.Tensor, L: int, max_new_tokens: int | None) -> None:
    """Causal generation continues after the last position: a right-padded row would continue from its pads.
    And ``T + L + max_new_tokens`` must fit a learned position table (:func:`check_length`)."""
    if (mask[:, -1] == 0).any():
        raise ValueError(
            "attention_mask has rows that end in 0 (right padding): a causal LM generates after the last "
            "position, so those rows would continue from padding and return wrong tokens. "
            "Pad on the left: tokenizer.padding_side = 'left'."
        )
    if max_new_tokens is not None:
        new = max_new_tokens
        check_length(prompt_model, L + int(new), f"input and new tokens ({L} + max_new_tokens={new})")


def check_saved_prompt(model: nn.Module, directory, config_dict: dict, tensors: dict[str, torch.Tensor]) -> None:
    """A saved prompt must fit ``model``: its ``token_dim`` the model's hidden size, its tensor
    ``(num_virtual_tokens * num_transformer_submodules, d)``. A prompt saved from another model of the
    same hidden size loads, with a warning (it only means something to the model it was trained on)."""
    d_model = model.get_input_embeddings().embedding_dim
    token_dim = config_dict.get("token_dim")
    if token_dim is not None and int(token_dim) != d_model:
        raise ValueError(
            f"{directory} holds a prompt for token_dim={token_dim}, but this model's hidden size is {d_model}: "
            "the prompt was trained for another model. Load it onto the model it was saved from."
        )
    saved_name = portable_name(config_dict.get("base_model_name_or_path") or None)
    mc = getattr(model, "config", None)
    model_name = portable_name(getattr(mc, "name_or_path", None) or getattr(mc, "_name_or_path", None) or None)
    if saved_name and model_name and saved_name.rstrip("/") != model_name.rstrip("/"):
        warnings.warn(
            f"{directory} holds a prompt trained on {saved_name!r}, but this model is {model_name!r}. The "
            f"hidden sizes match ({d_model}), so it loads, but a soft prompt only means something to the model it "
            "was trained on: expect poor results unless both names are the same model.", UserWarning, stacklevel=3,
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
