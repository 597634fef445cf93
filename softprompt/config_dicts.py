"""A prompt config as a dict: all our fields (:func:`config_to_dict`), or PEFT's ``adapter_config.json`` keys.

A leaf: it receives a config object (or its class, for :func:`config_from_dict`) and imports no core module.
``PromptTuningConfig.to_dict`` / ``peft_dict`` / ``from_dict`` and ``MultitaskPromptTuningConfig.peft_dict``
delegate here, so the file PEFT reads and the sidecar we read back are written in one place.
"""

from __future__ import annotations

import dataclasses
import warnings
from enum import Enum

from .enums import MultitaskPromptTuningInit, PromptTuningInit

__all__ = ["config_to_dict", "config_peft_dict", "mpt_peft_dict", "config_from_dict"]

# Keys PEFT writes into adapter_config.json that hold no information for us.
_PEFT_BOOKKEEPING = ("peft_type", "auto_mapping", "peft_version", "modules_to_save")

# The keys of PEFT's PromptTuningConfig.to_dict() (peft 0.21), peft_version aside: PEFT fills that in.
_PEFT_KEYS = (
    "task_type", "peft_type", "auto_mapping", "base_model_name_or_path", "revision", "inference_mode",
    "num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers",
    "modules_to_save", "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs",
)

# The keys PEFT's MultitaskPromptTuningConfig adds to those.
_MPT_PEFT_KEYS = ("prompt_tuning_init_state_dict_path", "prompt_tuning_init_task", "num_ranks", "num_tasks")


def config_to_dict(config) -> dict:
    """All fields, ours included, as JSON-able values (enums as strings), plus ``peft_type``."""
    out = {"peft_type": config.peft_type}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, (list, dict)):
            value = type(value)(value)  # a copy: editing the dict must not edit the config
        out[f.name] = value
    return out


def config_peft_dict(config) -> dict:
    """Only PEFT's keys, with values PEFT's ``PromptTuningConfig`` accepts.

    Init fields matter only before training, so where ours have no PEFT equivalent the file says
    ``RANDOM``: CLASS_LABELS init, and TEXT init without a tokenizer name. ``tokenizer_kwargs``
    is kept for TEXT only (PEFT rejects it otherwise). ``num_transformer_submodules`` is written
    out (1 when unset) so that PEFT does not pick its seq2seq default of 2.
    """
    d = config_to_dict(config)
    out = {k: d.get(k) for k in _PEFT_KEYS}
    init = config.prompt_tuning_init
    if init == PromptTuningInit.CLASS_LABELS or (init == PromptTuningInit.TEXT and not config.tokenizer_name_or_path):
        out["prompt_tuning_init"] = PromptTuningInit.RANDOM.value
    if out["prompt_tuning_init"] != PromptTuningInit.TEXT.value:
        out["tokenizer_kwargs"] = None
    if out["num_transformer_submodules"] is None:
        out["num_transformer_submodules"] = 1
    return out


def mpt_peft_dict(config) -> dict:
    """PEFT's keys only, with values PEFT's ``MultitaskPromptTuningConfig`` accepts.

    PEFT re-reads ``prompt_tuning_init_state_dict_path`` whenever the init is a source init, also when
    it loads a trained prompt; the init has done its work once the prompt is trained, so the file says
    ``RANDOM`` then (the full config is in the sidecar). CLASS_LABELS and SAMPLE_VOCAB are not MPT inits
    in PEFT: ``RANDOM`` too.
    """
    shared = config.shared_prompt_config
    if config.prompt_tuning_init == MultitaskPromptTuningInit.TEXT:
        out = config_peft_dict(shared)
    else:
        out = config_peft_dict(dataclasses.replace(shared, prompt_tuning_init=PromptTuningInit.RANDOM,
                                                   tokenizer_kwargs=None, prompt_tuning_class_labels=None))
    out.update({k: getattr(config, k) for k in _MPT_PEFT_KEYS})
    out["prompt_tuning_init_state_dict_path"] = None
    out["peft_type"] = config.peft_type
    return out


def config_from_dict(cls, d: dict):
    """Build a ``cls`` from :func:`config_to_dict` output or a PEFT ``adapter_config.json``.

    PEFT's bookkeeping keys (``peft_type``, ``auto_mapping``, ``peft_version``, ``modules_to_save``)
    are dropped; ``trust_remote_code`` is removed from ``tokenizer_kwargs`` with a warning; unknown
    keys (a newer file) are dropped with a warning, as PEFT does.
    """
    d = dict(d)
    peft_type = d.get("peft_type")
    if peft_type is not None and str(getattr(peft_type, "value", peft_type)) != cls.peft_type:
        raise ValueError(
            f"This config has peft_type={peft_type!r}, not {cls.peft_type!r}: load it with the config class "
            f"for that method (e.g. MultitaskPromptTuningConfig for 'MULTITASK_PROMPT_TUNING')."
        )
    for key in _PEFT_BOOKKEEPING:
        d.pop(key, None)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        warnings.warn(f"{cls.__name__}.from_dict: ignoring unknown keys {unknown}.", stacklevel=3)
    kwargs = {k: v for k, v in d.items() if k in names}
    tk = kwargs.get("tokenizer_kwargs")
    if isinstance(tk, dict) and "trust_remote_code" in tk:
        warnings.warn("from_dict: removed trust_remote_code from tokenizer_kwargs (never passed on).", stacklevel=3)
        kwargs["tokenizer_kwargs"] = {k: v for k, v in tk.items() if k != "trust_remote_code"} or None
    init = str(kwargs.get("prompt_tuning_init", "RANDOM")).upper()
    if kwargs.get("tokenizer_kwargs") and init not in ("TEXT", "CLASS_LABELS"):
        kwargs["tokenizer_kwargs"] = None
    return cls(**kwargs)
