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
only a pickled ``.bin`` gets an error that says how to convert it.

**Saves are atomic per directory.** Overwriting a saved prompt (say T=4) with another (T=8) and
crashing halfway must leave the old prompt or the new one, never a T=8 weights file next to a T=4
config. So :func:`save_adapter` writes the new files into a staging directory next to the target
(``<parent>/.softprompt-tmp/<name>.tmp-<pid>-<rand>``), fsyncs them, and swaps it in with two
renames: the old directory moves aside (``<name>.old-…``), the new one takes its name, the old one
is deleted. Files in the directory that are not the prompt's (a tokenizer, a README, Trainer's
``checkpoint-*`` folders) are carried over as hard links (copies where links are impossible), so
nothing is lost; adapter files of the old save that the new one does not write (a stale sidecar)
are dropped. Leftovers of a killed save are cleaned up by the next save into the same directory,
and a load that finds the directory missing but its ``.old`` copy present (killed between the two
renames) restores the previous save. The staging folder is hidden so that folder scans
(``PromptBank.add_folder``, Trainer's checkpoint rotation) never see half-written prompts.

Where a directory cannot be swapped (it is the working directory or holds it, it is a mount point,
or its parent is not writable) the files are written in place, each one atomically, weights first;
:meth:`PromptModel.from_pretrained` still refuses a config and weights that do not belong together.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .atomic import atomic_save_safetensors, atomic_write_json, fsync_dir

__all__ = [
    "ADAPTER_CONFIG_NAME", "ADAPTER_WEIGHTS_NAME", "SIDECAR_CONFIG_NAME", "PROMPT_PEFT_TYPES",
    "AdapterFileError", "save_adapter", "load_adapter", "recover_interrupted_save", "adapter_configs",
    "peft_encoder_prompt",
]

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
SIDECAR_CONFIG_NAME = "softprompt_config.json"
PROMPT_PEFT_TYPES = ("PROMPT_TUNING", "MULTITASK_PROMPT_TUNING")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
# What a save owns in its directory (everything else there is the user's and is carried over).
_ADAPTER_NAMES = (ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, SIDECAR_CONFIG_NAME)
_STRAY_WRITE = re.compile(r"^\.(" + "|".join(re.escape(n) for n in _ADAPTER_NAMES) + r")\..*\.tmp$")  # atomic_write
STAGING_DIR_NAME = ".softprompt-tmp"
_LEFTOVER = re.compile(r"^(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
_in_progress: set[str] = set()  # staging paths this process is using right now (other threads' saves)
_lock = threading.Lock()


class AdapterFileError(ValueError):
    """A prompt directory is missing, unreadable, or holds something we refuse to read (pickles)."""


def save_adapter(
    directory: str | os.PathLike,
    config: dict,
    tensors: dict[str, torch.Tensor],
    extra_config: dict | None = None,
) -> Path:
    """Write ``tensors`` and ``config`` (PEFT-valid keys) to ``directory``; return its path.

    ``extra_config``, when given, goes to the ``softprompt_config.json`` sidecar. The files are written
    into a staging directory and swapped in (see the module docstring): an interrupted save leaves the
    previous prompt, never a mix of old and new files. Other files in ``directory`` are kept.
    """
    if config.get("peft_type") not in PROMPT_PEFT_TYPES:
        raise ValueError(f"config['peft_type']={config.get('peft_type')!r}; expected one of {PROMPT_PEFT_TYPES}.")
    if "prompt_embeddings" not in tensors:
        raise ValueError(f"tensors has no 'prompt_embeddings' key (got {sorted(tensors)}); PEFT needs that key.")
    directory = Path(directory)
    target = Path(os.path.realpath(directory))  # a symlinked directory: swap the real one, keep the link
    if target.exists() and not target.is_dir():
        raise AdapterFileError(f"{directory} is a file, not a directory; pass a directory to save the prompt in.")
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_save(target)
    if _can_swap(target):
        _save_swapped(target, config, tensors, extra_config)
    else:
        target.mkdir(parents=True, exist_ok=True)
        _write_files(target, config, tensors, extra_config)
    return directory


def _write_files(directory: Path, config: dict, tensors: dict[str, torch.Tensor], extra_config: dict | None):
    """The prompt's files, each written atomically: weights, then the sidecar, then the config."""
    atomic_save_safetensors(directory / ADAPTER_WEIGHTS_NAME, tensors, metadata={"format": "pt"})
    if extra_config is not None:
        atomic_write_json(directory / SIDECAR_CONFIG_NAME, extra_config)
    atomic_write_json(directory / ADAPTER_CONFIG_NAME, config)


def _can_swap(target: Path) -> bool:
    """Whether ``target`` can be replaced by renames: not the working directory (or above it), not a mount
    point, and its parent writable (the staging folder lives there)."""
    if not os.access(target.parent, os.W_OK):
        return False
    if target.exists():
        if os.path.ismount(target):
            return False
        cwd = os.path.realpath(os.getcwd())
        if cwd == str(target) or cwd.startswith(str(target) + os.sep):
            return False
    return True


def _staging_path(target: Path, kind: str) -> Path:
    return target.parent / STAGING_DIR_NAME / f"{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # no data copied; the old directory's name for it goes when that directory does
    except OSError:
        shutil.copy2(src, dst)


def _carry_over(old: Path, new: Path) -> None:
    """Everything in ``old`` that is not the prompt's own files, into ``new`` (hard links, else copies)."""
    for entry in os.scandir(old):
        if entry.name in _ADAPTER_NAMES or _STRAY_WRITE.match(entry.name):
            continue
        dst = new / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), dst)
        elif entry.is_dir():
            shutil.copytree(entry.path, dst, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry.path, str(dst))


def _save_swapped(target: Path, config: dict, tensors: dict[str, torch.Tensor], extra_config: dict | None):
    """Write into a staging directory, then swap it in: at every moment ``target`` is the old save or the new."""
    staging = target.parent / STAGING_DIR_NAME
    tmp = _staging_path(target, "tmp")
    old = _staging_path(target, "old")
    with _lock:
        _in_progress.update((str(tmp), str(old)))
    try:
        staging.mkdir(exist_ok=True)
        tmp.mkdir()
        _write_files(tmp, config, tensors, extra_config)
        if target.exists():
            shutil.copymode(target, tmp)
            _carry_over(target, tmp)
        fsync_dir(tmp)
        if target.exists():
            try:
                os.rename(target, old)  # from here until the next rename, a load restores `old`
            except OSError:  # cannot be moved after all (busy, permissions): write in place, file by file
                _write_files(target, config, tensors, extra_config)
                return
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with _lock:
            _in_progress.difference_update((str(tmp), str(old)))
        try:
            staging.rmdir()  # only when empty; another save may still be using it
        except OSError:
            pass


def _owner_gone(path: Path, pid: int) -> bool:
    """Whether the save that made ``path`` is over (its process is gone, or it is this process and done)."""
    with _lock:
        if str(path) in _in_progress:
            return False
    if pid == os.getpid():
        return True  # this process is not writing it (a save before a restart that reused the pid)
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there; go by age instead
        return time.time() - path.stat().st_mtime > 3600
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def recover_interrupted_save(directory: str | os.PathLike) -> bool:
    """Clean up after a save into ``directory`` that was killed; return True if the previous save was restored.

    A save killed before its swap leaves a staging copy behind (deleted here). One killed between its
    two renames leaves no ``directory`` but the previous save under ``.softprompt-tmp/<name>.old-…``:
    it is moved back, with a warning. Leftovers of saves still running in other processes are kept.
    """
    target = Path(os.path.realpath(directory))
    staging = target.parent / STAGING_DIR_NAME
    if not staging.is_dir():
        return False
    leftovers: dict[str, list[Path]] = {"tmp": [], "old": []}
    for p in staging.iterdir():
        m = _LEFTOVER.match(p.name)
        if m and m.group("name") == target.name and p.is_dir() and _owner_gone(p, int(m.group("pid"))):
            leftovers[m.group("kind")].append(p)
    restored = False
    if not target.exists() and leftovers["old"]:
        previous = max(leftovers["old"], key=lambda p: p.stat().st_mtime)
        os.rename(previous, target)
        leftovers["old"].remove(previous)
        restored = True
        warnings.warn(f"{directory}: a save into it was interrupted; restored the previous save.", stacklevel=3)
    for p in leftovers["tmp"] + leftovers["old"]:
        shutil.rmtree(p, ignore_errors=True)
    try:
        staging.rmdir()
    except OSError:
        pass
    return restored


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
    if not directory.exists():
        recover_interrupted_save(directory)  # a save killed mid-swap: the previous save comes back
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


def adapter_configs(prompt_config, task_type: str, modules_to_save: list[str] | None = None) -> tuple[dict, dict]:
    """``(adapter_config.json, softprompt_config.json)`` for a prompt config: the keys PEFT's ``PeftConfig``
    understands (``modules_to_save``: a SEQ_CLS head), and all of ours. Both say the model's ``task_type``."""
    cfg = prompt_config
    peft_dict = dict(cfg.peft_dict() if hasattr(cfg, "peft_dict") else cfg.to_dict())
    peft_dict.update(peft_type=cfg.peft_type, task_type=task_type, inference_mode=True)
    if modules_to_save is not None:
        peft_dict["modules_to_save"] = list(modules_to_save)
    return peft_dict, dict(cfg.to_dict(), peft_type=cfg.peft_type, task_type=task_type)


def peft_encoder_prompt(directory: str | os.PathLike, config: dict, tensors: dict[str, torch.Tensor]):
    """``(config, tensors)`` of a loaded prompt, with a PEFT seq2seq prompt's unused decoder half dropped.

    PEFT's seq2seq prompt tuning allocates ``num_transformer_submodules=2`` blocks of ``T`` vectors but
    feeds only the first to the model (PeftModelForSeq2SeqLM uses ``prompts[:, :T]``). We keep that encoder
    half, with a warning, so we compute what PEFT computes. Our own saves (with a sidecar) are left as they are.
    """
    T = int(config.get("num_virtual_tokens") or 0)
    from_peft = not (Path(directory) / SIDECAR_CONFIG_NAME).exists()
    n_sub = int(config.get("num_transformer_submodules") or 1)
    if from_peft and n_sub == 2 and config.get("peft_type") == "PROMPT_TUNING":
        warnings.warn(
            f"{directory} is a PEFT seq2seq prompt with num_transformer_submodules=2; PEFT never uses its "
            "decoder half, so it is dropped and the prompt is loaded as an encoder prompt.", stacklevel=3,
        )
        tensors = dict(tensors, prompt_embeddings=tensors["prompt_embeddings"][:T])
        config = dict(config, num_transformer_submodules=1)
    return config, tensors
