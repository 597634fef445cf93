"""The fields of a prompt config that the base model decides: :func:`filled_from_model`.

A leaf: it receives a config and a model, and reads the model's class (:mod:`softprompt.model_kind`)
and config. ``PromptTuningConfig.filled_from_model`` delegates here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .model_kind import check_task_type, model_task_type
from .models import PRESETS, cache_dir

__all__ = ["filled_from_model", "portable_name"]


def filled_from_model(config, model):
    """A copy of ``config`` with the fields a model decides filled in from it; given values are checked against it.

    Fills ``task_type`` (from :func:`softprompt.model_kind.model_task_type`: ``*ForSequenceClassification``
    -> SEQ_CLS, encoder-decoder -> SEQ_2_SEQ_LM, a decoder with an LM head -> CAUSAL_LM), ``token_dim``
    (the input embedding size), ``num_layers``, ``num_attention_heads``,
    ``num_transformer_submodules`` (1: Lester's encoder-only prompt; PEFT uses 2 for seq2seq),
    ``base_model_name_or_path``, and ``tokenizer_name_or_path`` (the model's name) when the init reads
    a tokenizer (see ``config.uses_tokenizer``).

    Raises:
        ValueError: a given ``token_dim`` differs from the model's embedding size, or ``task_type``
            does not fit the model (e.g. CAUSAL_LM on an encoder-decoder or a classifier; see
            :func:`softprompt.model_kind.check_task_type`).
    """
    mc = model.config
    text_cfg = getattr(mc, "text_config", None)  # multimodal models: the language part
    cfg = text_cfg if text_cfg is not None else mc
    changes: dict[str, Any] = {}

    task = config.task_type
    if task is None:
        task = model_task_type(model)
        if task is None:
            raise ValueError(
                f"Cannot tell which task_type {type(model).__name__} serves: it has no language-model head and "
                "no classification head (a bare encoder, a masked LM?). Load it with AutoModelForCausalLM, "
                "AutoModelForSeq2SeqLM or AutoModelForSequenceClassification, or set task_type."
            )
        changes["task_type"] = task
    check_task_type(model, task)  # e.g. CAUSAL_LM on an encoder-decoder or on a BERT classifier

    d_model = _first_attr(cfg, ("hidden_size", "n_embd", "d_model"))
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    d = getattr(emb, "embedding_dim", None) or d_model  # the prompt lives where the input embeddings live
    if d is None:
        raise ValueError(f"Cannot tell the embedding size of {type(model).__name__}; set token_dim yourself.")
    if config.token_dim is None:
        changes["token_dim"] = d
    elif config.token_dim != d:
        raise ValueError(
            f"token_dim={config.token_dim} does not match the model's embedding size {d}; "
            f"set token_dim={d} or leave it None to fill it from the model."
        )
    if config.num_layers is None:
        changes["num_layers"] = _first_attr(cfg, ("num_hidden_layers", "num_layers", "n_layer"))
    if config.num_attention_heads is None:
        changes["num_attention_heads"] = _first_attr(
            cfg, ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
        )
    if config.num_transformer_submodules is None:
        changes["num_transformer_submodules"] = 1
    name = portable_name(getattr(mc, "name_or_path", None) or getattr(mc, "_name_or_path", None) or None)
    if config.base_model_name_or_path is None and name:
        changes["base_model_name_or_path"] = name
    if config.uses_tokenizer and config.tokenizer_name_or_path is None:
        base = changes.get("base_model_name_or_path", config.base_model_name_or_path)
        if base:
            changes["tokenizer_name_or_path"] = base
    return dataclasses.replace(config, **changes)


def portable_name(name: str | None) -> str | None:
    """A preset loaded through softprompt's offline cache is named by its hub id, not by the cache path.

    ``load_model("smollm2-135m-instruct")`` offline loads from ``~/.cache/softprompt/smollm2-...``;
    a saved config should say ``HuggingFaceTB/SmolLM2-135M-Instruct``, which means something elsewhere.
    """
    if not name:
        return name
    path = Path(name)
    if path.parent.resolve() == cache_dir().resolve():
        for key, preset in PRESETS.items():
            if path.name.lower().startswith(key + "-"):
                return preset.hub_id
    return name


def _first_attr(config, names):
    """The first of ``names`` that ``config`` has (None if none): configs spell the same thing differently."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None
