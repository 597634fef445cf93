"""Prompt files on disk, in PEFT's layout: ``adapter_config.json`` + ``adapter_model.safetensors``.

A saved prompt is a directory holding

* ``adapter_config.json``: the configuration, with the keys and values PEFT's ``PeftConfig``
  understands, so ``peft.PeftModel.from_pretrained`` loads our files;
* ``adapter_model.safetensors``: the tensors, under PEFT's key names (``prompt_embeddings``;
  MPT adds ``prefix_task_cols`` / ``prefix_task_rows``; a SEQ_CLS head is saved as
  ``base_model.<head>.<param>``);
* ``softprompt_config.json`` (optional sidecar): our complete configuration, including the
  fields PEFT does not know (class-label init, text fill mode, seed, ...). PEFT never reads it.

Both directions work: we read PEFT's directories too (they simply have no sidecar).

Files are only ever read with ``safetensors``: nothing here unpickles. A directory that holds
only a pickled ``.bin`` gets an error that says how to convert it. Every write is atomic
(:mod:`softprompt.atomic`), so a crash mid-save never leaves a half-written prompt behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .atomic import atomic_save_safetensors, atomic_write_json

__all__ = [
    "ADAPTER_CONFIG_NAME", "ADAPTER_WEIGHTS_NAME", "SIDECAR_CONFIG_NAME", "PROMPT_PEFT_TYPES",
    "AdapterFileError", "save_adapter", "load_adapter",
]

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
SIDECAR_CONFIG_NAME = "softprompt_config.json"
PROMPT_PEFT_TYPES = ("PROMPT_TUNING", "MULTITASK_PROMPT_TUNING")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class AdapterFileError(ValueError):
    """A prompt directory is missing, unreadable, or holds something we refuse to read (pickles)."""


def save_adapter(
    directory: str | os.PathLike,
    config: dict,
    tensors: dict[str, torch.Tensor],
    extra_config: dict | None = None,
) -> Path:
    """Write ``tensors`` and ``config`` (PEFT-valid keys) to ``directory``; return its path.

    ``extra_config``, when given, goes to the ``softprompt_config.json`` sidecar. The weights are
    written before the config, so a directory with a config always has its weights.
    """
    if config.get("peft_type") not in PROMPT_PEFT_TYPES:
        raise ValueError(f"config['peft_type']={config.get('peft_type')!r}; expected one of {PROMPT_PEFT_TYPES}.")
    if "prompt_embeddings" not in tensors:
        raise ValueError(f"tensors has no 'prompt_embeddings' key (got {sorted(tensors)}); PEFT needs that key.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(directory / ADAPTER_WEIGHTS_NAME, tensors, metadata={"format": "pt"})
    if extra_config is not None:
        atomic_write_json(directory / SIDECAR_CONFIG_NAME, extra_config)
    atomic_write_json(directory / ADAPTER_CONFIG_NAME, config)
    return directory


def _read_json(path: Path) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise AdapterFileError(f"{path} is not valid JSON ({err}); the file is damaged: save again.") from err
    if not isinstance(data, dict):
        raise AdapterFileError(f"{path} holds a JSON {type(data).__name__}, not an object; save the prompt again.")
    return data


def _conversion_hint(pickle_file: Path) -> str:
    return (
        f"{pickle_file} is a pickle; softprompt only reads {ADAPTER_WEIGHTS_NAME} (safetensors), because loading "
        "a pickle can run arbitrary code. If you trust the file, convert it once:\n"
        "    python -c \"import torch; from safetensors.torch import save_file; "
        f"save_file(torch.load('{pickle_file}', weights_only=True), "
        f"'{pickle_file.parent / ADAPTER_WEIGHTS_NAME}')\""
    )


def load_adapter(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a prompt directory (ours or PEFT's): ``(config_dict, tensors)``.

    ``config_dict`` is ``adapter_config.json`` updated with the ``softprompt_config.json`` sidecar
    when there is one. Raises :class:`AdapterFileError` (a ``ValueError``) with the reason and the
    fix when the directory is missing, the files are damaged or truncated, the adapter is not a
    prompt-tuning adapter, or the weights exist only as a pickle.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AdapterFileError(f"{directory} is not a directory; pass the directory that save_pretrained wrote.")
    weights = directory / ADAPTER_WEIGHTS_NAME
    if not weights.exists():
        pickles = sorted(p for p in directory.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise AdapterFileError(_conversion_hint(pickles[0]))
        raise AdapterFileError(
            f"{directory} has no {ADAPTER_WEIGHTS_NAME}; found {sorted(p.name for p in directory.iterdir())}. "
            "Pass a directory written by PromptModel.save_pretrained or PeftModel.save_pretrained."
        )
    config_path = directory / ADAPTER_CONFIG_NAME
    if not config_path.exists():
        raise AdapterFileError(f"{directory} has no {ADAPTER_CONFIG_NAME}; the save is incomplete: save it again.")
    config = _read_json(config_path)
    peft_type = config.get("peft_type")
    if peft_type not in PROMPT_PEFT_TYPES:
        raise AdapterFileError(
            f"{config_path} describes a {peft_type!r} adapter; softprompt reads prompt tuning adapters only "
            f"({', '.join(PROMPT_PEFT_TYPES)}). Load other adapter types with peft.PeftModel.from_pretrained."
        )
    sidecar = directory / SIDECAR_CONFIG_NAME
    if sidecar.exists():
        config = {**config, **_read_json(sidecar)}
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterFileError(
            f"{weights} could not be read as safetensors ({err}); the file is corrupted or truncated "
            "(an interrupted copy?). Save the prompt again or copy the file again."
        ) from err
    if "prompt_embeddings" not in tensors:
        raise AdapterFileError(
            f"{weights} has no 'prompt_embeddings' tensor (keys: {sorted(tensors)}); it is not a prompt adapter."
        )
    return config, tensors
