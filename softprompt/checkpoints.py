"""Training checkpoints that resume *exactly*: same prompt, same optimizer, same random numbers.

A checkpoint is one directory per saved step::

    checkpoint_dir/
      checkpoint-000040/
        params.safetensors      trainable parameters by name (the prompt; a SEQ_CLS head too)
        optimizer.safetensors   optimizer state tensors, flattened to "state.<param index>.<name>"
        rng.safetensors         torch CPU generator (uint8), CUDA generators, numpy's Mersenne Twister
        state.json              step, history, config, data-order position, python `random` state,
                                optimizer scalars and param groups

Tensors go to safetensors and everything else to JSON: nothing is pickled, so loading a
checkpoint can never run code. The directory is written under a temporary name and renamed
into place in one step (``os.rename`` is atomic on POSIX), so a process killed at any moment,
even with SIGKILL in the middle of a save, leaves only complete checkpoints behind;
:func:`latest_checkpoint` never sees a half-written one. Saving every N steps therefore
loses at most N steps of work. The temporary directory such a kill leaves behind
(``.checkpoint-<step>.<random>.tmp``) is deleted by the next save or resume into that directory
(one run per checkpoint directory at a time).

A checkpoint damaged after the fact (a truncated file, broken JSON: a full disk, a copy cut
short) is a clear ``ValueError`` naming the file from :func:`load_checkpoint`;
:func:`load_newest_intact` steps back to the newest checkpoint that loads.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .atomic import atomic_save_safetensors, atomic_write_json, fsync_dir

__all__ = [
    "Checkpoint", "DamagedCheckpointError", "save_checkpoint", "load_checkpoint", "load_newest_intact",
    "latest_checkpoint", "list_checkpoints", "remove_checkpoints", "remove_stale_temporaries", "capture_rng",
    "restore_rng", "flatten_optimizer_state", "unflatten_optimizer_state",
]

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TEMPORARY_RE = re.compile(r"^\.checkpoint-\d+\..*\.tmp$")  # what save_checkpoint writes before its rename
FORMAT_VERSION = 1


class DamagedCheckpointError(ValueError):
    """A checkpoint directory that is incomplete or does not load; ``detail`` says which file and why."""

    def __init__(self, path: Path, detail: str, message: str | None = None):
        self.path, self.detail = path, detail
        super().__init__(message or f"{path} is a damaged softprompt checkpoint: {detail}. A full disk or an "
                         "interrupted copy does this; delete the directory to resume from an older checkpoint.")


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    path: Path
    step: int
    params: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]  # ready for ``optimizer.load_state_dict``
    rng: tuple[dict[str, torch.Tensor], dict[str, Any]]  # for :func:`restore_rng`
    state: dict[str, Any]  # the caller's JSON state (history, config, data order, ...)


# ---------------------------------------------------------------------------------------------
# Optimizer state <-> (tensors, JSON)
# ---------------------------------------------------------------------------------------------
def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into safetensors-ready tensors and JSON-ready scalars.

    AdamW keeps ``step``, ``exp_avg``, ``exp_avg_sq`` as tensors; Adafactor keeps ``step`` (int)
    and ``RMS`` (float) as Python numbers. Both round-trip bit-exactly.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state_dict["param_groups"]]
    tuples = sorted({k for g in state_dict["param_groups"] for k, v in g.items() if isinstance(v, tuple)})
    return tensors, {"scalars": scalars, "param_groups": groups, "tuple_keys": tuples}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    tuples = set(meta.get("tuple_keys", ()))  # JSON has no tuples: AdamW's betas, Adafactor's eps
    groups = [{k: tuple(v) if k in tuples else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------------------------
# Random number generators
# ---------------------------------------------------------------------------------------------
def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global generators' states: torch CPU (and CUDA), numpy, python ``random``."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    version, py_state, gauss_next = random.getstate()
    meta = {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss_next": gauss_next},
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Put the generators back exactly as :func:`capture_rng` found them."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    n = meta["numpy"]
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# ---------------------------------------------------------------------------------------------
# Directories
# ---------------------------------------------------------------------------------------------
def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary directories are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def remove_checkpoints(root: str | os.PathLike) -> None:
    """Delete every ``checkpoint-*`` directory (and leftover temporaries) under ``root``; nothing else."""
    root = Path(root)
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.is_dir() and (CHECKPOINT_RE.match(p.name) or p.name.startswith(".checkpoint-")):
            shutil.rmtree(p, ignore_errors=True)


def remove_stale_temporaries(root: str | os.PathLike) -> None:
    """Delete the temporary directories a save killed mid-way left under ``root`` (never a checkpoint)."""
    root = Path(root)
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.is_dir() and TEMPORARY_RE.match(p.name):
            shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    *,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``root/checkpoint-<step>`` atomically, then delete all but the newest ``keep``.

    ``state`` is any JSON-serializable dict (training puts its history, config and data-order
    position there). The global RNG states are captured here, at the moment of saving.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"checkpoint directory {root} is a file, not a directory; pass another checkpoint_dir.")
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    final = root / f"checkpoint-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".checkpoint-{step:06d}.", suffix=".tmp", dir=root))
    try:
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
        rng_tensors, rng_meta = capture_rng()
        atomic_save_safetensors(tmp / "params.safetensors", params)
        atomic_save_safetensors(tmp / "optimizer.safetensors", opt_tensors)
        atomic_save_safetensors(tmp / "rng.safetensors", rng_tensors)
        atomic_write_json(tmp / "state.json", {
            "format_version": FORMAT_VERSION, "step": step, "optimizer": opt_meta, "rng": rng_meta, "state": state,
        })
        if final.exists():  # only when re-saving a step (e.g. after a stop at the same step)
            shutil.rmtree(final)
        os.rename(tmp, final)  # the atomic moment: before it no checkpoint, after it a complete one
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`.

    Raises:
        DamagedCheckpointError: (a ValueError) the directory is incomplete or damaged (a truncated file,
            broken JSON), naming the file.
        ValueError: a checkpoint of another format version.
    """
    path = Path(path)
    missing = [f for f in ("params.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")
               if not (path / f).is_file()]
    if missing:
        detail = f"missing {', '.join(missing)}"
        raise DamagedCheckpointError(path, detail, f"{path} is not a complete softprompt checkpoint: {detail}.")
    current = "state.json"
    try:
        meta = json.loads((path / current).read_text())
        version = meta.get("format_version")
        if version == FORMAT_VERSION:
            tensors = {}
            for name in ("params", "optimizer", "rng"):
                current = f"{name}.safetensors"
                tensors[name] = load_file(path / current)
            current = "state.json"
            return Checkpoint(
                path=path,
                step=int(meta["step"]),
                params=tensors["params"],
                optimizer_state=unflatten_optimizer_state(tensors["optimizer"], meta["optimizer"]),
                rng=(tensors["rng"], meta["rng"]),
                state=meta["state"],
            )
    except (SafetensorError, ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        # ValueError covers json.JSONDecodeError and int() of a mangled step
        raise DamagedCheckpointError(path, f"{current} does not load ({type(exc).__name__}: {_first_line(exc)})") \
            from exc
    raise ValueError(f"{path}: checkpoint format {version!r}, expected {FORMAT_VERSION}.")


def load_newest_intact(root: str | os.PathLike) -> tuple[Checkpoint | None, list[tuple[Path, str]]]:
    """The newest checkpoint under ``root`` that loads, and the damaged ones newer than it (path, what is wrong).

    ``(None, [])`` when ``root`` holds no checkpoint at all.

    Raises:
        ValueError: checkpoints exist but all are damaged (naming ``root`` and each one's problem).
    """
    damaged: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(root)):
        try:
            return load_checkpoint(path), damaged
        except DamagedCheckpointError as exc:
            damaged.append((path, exc.detail))
    if damaged:
        listing = "\n  - ".join(f"{path.name}: {detail}" for path, detail in damaged)
        raise ValueError(f"checkpoint directory {Path(root)} holds no intact checkpoint:\n  - {listing}\n"
                         "Delete the damaged directories (or pass resume=False, which deletes them) to start over, "
                         "or pass another checkpoint_dir.")
    return None, []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


