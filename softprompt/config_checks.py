"""The checks behind the prompt configs and prompt tensors: each raises a ``ValueError`` naming the field and the fix.

A leaf: it receives a config (or tensors) and imports no core module. ``PromptTuningConfig.__post_init__``
calls :func:`check_prompt_config`, ``MultitaskPromptTuningConfig.__post_init__`` calls :func:`check_mpt_config`;
both also turn enum strings (any case) into members. :func:`as_enum` is the library's one string-to-Enum helper.
"""

from __future__ import annotations

from enum import Enum

from .enums import SOURCE_INITS, MultitaskPromptTuningInit, PromptTuningInit, RandomInitScale, TaskFactorInit
from .enums import TaskType, TextInitFill
from .task_ids import check_task_id

__all__ = [
    "as_enum", "positive_int", "check_prompt_config", "check_mpt_config", "check_token_dim", "check_prompt_weight",
    "check_prompt_tensors", "check_mpt_tensors",
]


def as_enum(cls: type[Enum], value, name: str):
    """Coerce a string (any case) or enum member into ``cls``; else a ValueError naming the field and the choices."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        for member in cls:
            if value.lower() in (member.value.lower(), member.name.lower()):
                return member
    choices = ", ".join(repr(m.value) for m in cls)
    raise ValueError(f"{name}={value!r} is not valid; use one of {choices}.")


def positive_int(value, name: str, *, optional: bool = True):
    """``value`` if it is a positive int (or None, when ``optional``); else a ValueError naming ``name``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive int.")
    return value


# --------------------------------------------------------------------------------------------- configs
def check_prompt_config(config) -> None:
    """Validate a :class:`~softprompt.PromptTuningConfig` in place (enum strings become members)."""
    if config.task_type is not None:
        config.task_type = as_enum(TaskType, config.task_type, "task_type")
    n = config.num_virtual_tokens
    if n is None:
        raise ValueError("num_virtual_tokens is required: pass a positive int, e.g. num_virtual_tokens=20.")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(
            f"num_virtual_tokens={n!r} must be a positive int (the prompt length), e.g. num_virtual_tokens=20."
        )
    for name in ("token_dim", "num_attention_heads", "num_layers", "sample_vocab_size"):
        positive_int(getattr(config, name), name)
    if config.num_transformer_submodules not in (None, 1, 2):
        raise ValueError(
            f"num_transformer_submodules={config.num_transformer_submodules!r} must be 1 (encoder only) or 2 "
            "(encoder and decoder, SEQ_2_SEQ_LM only)."
        )
    if config.num_transformer_submodules == 2 and config.task_type not in (None, TaskType.SEQ_2_SEQ_LM):
        raise ValueError(
            f"num_transformer_submodules=2 needs task_type='SEQ_2_SEQ_LM', not {config.task_type.value!r}: "
            "a decoder-only or encoder model has one submodule; use num_transformer_submodules=1."
        )
    if config.seed is not None and (isinstance(config.seed, bool) or not isinstance(config.seed, int)):
        raise ValueError(f"seed={config.seed!r} must be an int or None.")
    if not isinstance(config.inference_mode, bool):
        raise ValueError(f"inference_mode={config.inference_mode!r} must be True or False.")

    config.prompt_tuning_init = as_enum(PromptTuningInit, config.prompt_tuning_init, "prompt_tuning_init")
    config.text_init_fill = as_enum(TextInitFill, config.text_init_fill, "text_init_fill")
    config.random_init_scale = as_enum(RandomInitScale, config.random_init_scale, "random_init_scale")
    _check_init(config)


def _check_init(config) -> None:
    """The fields each init mode reads (Lester et al. §3.2): init text, label words, tokenizer kwargs."""
    init = config.prompt_tuning_init
    if init == PromptTuningInit.TEXT:
        text = config.prompt_tuning_init_text
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                "prompt_tuning_init='TEXT' needs prompt_tuning_init_text, a non-empty string, e.g. "
                "prompt_tuning_init_text='Classify the sentiment of this review:'."
            )
    labels = config.prompt_tuning_class_labels
    if init == PromptTuningInit.CLASS_LABELS:
        if isinstance(labels, str) or not labels:
            raise ValueError(
                "prompt_tuning_init='CLASS_LABELS' needs prompt_tuning_class_labels, a non-empty list of label "
                "words, e.g. prompt_tuning_class_labels=['positive', 'negative']."
            )
        bad = [w for w in labels if not isinstance(w, str) or not w.strip()]
        if bad:
            raise ValueError(f"prompt_tuning_class_labels holds empty or non-string label words {bad!r}; remove them.")
        config.prompt_tuning_class_labels = list(labels)
        if len(labels) > config.num_virtual_tokens:
            raise ValueError(
                f"num_virtual_tokens={config.num_virtual_tokens} is smaller than the {len(labels)} class labels: "
                f"CLASS_LABELS init needs one slot per label; raise num_virtual_tokens to at least {len(labels)}."
            )
    elif labels is not None:
        raise ValueError(
            f"prompt_tuning_class_labels is only used with prompt_tuning_init='CLASS_LABELS', not {init.value!r}; "
            "set prompt_tuning_init='CLASS_LABELS' or drop the labels."
        )
    if config.tokenizer_kwargs is not None:
        if not isinstance(config.tokenizer_kwargs, dict):
            raise ValueError(f"tokenizer_kwargs={config.tokenizer_kwargs!r} must be a dict or None.")
        if init not in (PromptTuningInit.TEXT, PromptTuningInit.CLASS_LABELS):
            raise ValueError(
                f"tokenizer_kwargs is only used with prompt_tuning_init='TEXT' or 'CLASS_LABELS', not "
                f"{init.value!r}; drop tokenizer_kwargs."
            )
        if "trust_remote_code" in config.tokenizer_kwargs:
            raise ValueError(
                "tokenizer_kwargs may not hold trust_remote_code: building a prompt must never run code "
                "downloaded with a tokenizer. Remove it."
            )


def check_mpt_config(config) -> None:
    """Validate a :class:`~softprompt.MultitaskPromptTuningConfig` in place (Wang et al. 2023, §3.1-3.2)."""
    init = as_enum(MultitaskPromptTuningInit, config.prompt_tuning_init, "prompt_tuning_init")
    # The vanilla checks cover the init of P*; a source init reads P* from a file, so P* itself is "RANDOM".
    config.prompt_tuning_init = PromptTuningInit.RANDOM if init in SOURCE_INITS else PromptTuningInit(init.value)
    check_prompt_config(config)
    config.prompt_tuning_init = init

    for name in ("num_tasks", "num_ranks"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            what = "the number of tasks K" if name == "num_tasks" else "the rank r of each task matrix"
            raise ValueError(f"{name}={value!r} must be a positive int ({what}), e.g. {name}=1.")
    config.task_factor_init = as_enum(TaskFactorInit, config.task_factor_init, "task_factor_init")
    if not isinstance(config.task_factor_noise, (int, float)) or config.task_factor_noise < 0:
        raise ValueError(f"task_factor_noise={config.task_factor_noise!r} must be a float >= 0, e.g. 0.1.")
    task = config.prompt_tuning_init_task
    if task is not None:  # the index of a source task: an int >= 0 (its range is checked against the source)
        task = config.prompt_tuning_init_task = check_task_id(task, None, "prompt_tuning_init_task", "the source")
    if init in SOURCE_INITS and not config.prompt_tuning_init_state_dict_path:
        raise ValueError(
            f"prompt_tuning_init={init.value!r} reads a source prompt: set prompt_tuning_init_state_dict_path "
            "to a saved MPT prompt directory or its adapter_model.safetensors."
        )
    if init == MultitaskPromptTuningInit.EXACT_SOURCE_TASK and task is None:
        raise ValueError("prompt_tuning_init='EXACT_SOURCE_TASK' needs prompt_tuning_init_task, e.g. 0.")


# --------------------------------------------------------------------------------------------- tensors
def check_token_dim(config, d: int) -> None:
    """A given ``token_dim`` must be the word embeddings' size ``d``."""
    if config.token_dim is not None and config.token_dim != d:
        raise ValueError(
            f"token_dim={config.token_dim} does not match the word embeddings' size {d}; "
            f"set token_dim={d} (or None, to take it from the model)."
        )


def check_prompt_weight(config, weight) -> None:
    """A ready prompt ``weight`` must be ``(total_virtual_tokens, token_dim)``; ``token_dim=None`` takes its d."""
    if weight.dim() != 2:
        raise ValueError(f"Expected a (T_total, d) tensor, got shape {tuple(weight.shape)}.")
    T, d = weight.shape
    wanted = (config.total_virtual_tokens, config.token_dim or d)
    if wanted != (T, d):
        raise ValueError(
            f"The tensor has shape {(T, d)} but the config asks for (total_virtual_tokens, token_dim) = "
            f"{wanted}; use a config that matches the tensor."
        )


def check_prompt_tensors(tensors: dict, expected: tuple) -> None:
    """A vanilla prompt file holds exactly ``prompt_embeddings`` of shape ``expected`` = (T_total, d)."""
    extra = sorted(set(tensors) - {"prompt_embeddings"})
    if "prompt_embeddings" not in tensors or extra:
        raise ValueError(
            f"Expected exactly the tensor 'prompt_embeddings', got {sorted(tensors)}"
            + (" (MPT tensors: load them into a MultitaskPromptEmbedding)." if extra else ".")
        )
    shape = tuple(tensors["prompt_embeddings"].shape)
    if shape != tuple(expected):
        raise ValueError(
            f"prompt_embeddings has shape {shape}, expected {tuple(expected)} "
            "(total_virtual_tokens, token_dim): the file was saved for another prompt length or model."
        )


_MPT_SHAPE_NAMES = {"prompt_embeddings": "(total_virtual_tokens, token_dim)",
                    "prefix_task_cols": "(num_tasks, T, num_ranks)",
                    "prefix_task_rows": "(num_tasks, num_ranks, token_dim)"}


def check_mpt_tensors(tensors: dict, expected: dict[str, tuple]) -> None:
    """An MPT file holds PEFT's three tensors with the ``expected`` shapes (Wang et al. §3.1: P*, u, v)."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        hint = " (a vanilla prompt? load it with ONLY_SOURCE_SHARED init)" if missing else ""
        raise ValueError(f"Expected the tensors {sorted(expected)}; missing {missing}, unexpected {extra}{hint}.")
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise ValueError(
                f"{key} has shape {tuple(tensors[key].shape)}, this prompt needs {shape} {_MPT_SHAPE_NAMES[key]}: "
                "the file was saved with another num_tasks, num_ranks, prompt length or model; match the config to it."
            )
