"""Atomic file writes: a save either happens whole or not at all.

Every file the library writes (prompt files, checkpoints, the model cache) goes through
here: write to a temporary file in the same directory, flush and fsync it, then
``os.replace`` it over the target in one step. A crash or a SIGKILL mid-save leaves the
previous file intact and at worst a stray ``*.tmp`` behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_save_safetensors", "fsync_dir",
           "fsync_tree"]


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a directory's entries (a rename, a new file) durable; best effort where the OS cannot."""
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file below ``path``, then ``path`` itself: a whole directory durable before a rename."""
    for p in Path(path).rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(path)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary sibling of ``path`` for writing; on success move it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata=None) -> None:
    """``safetensors.torch.save_file``, atomically. Tensors are made contiguous CPU copies first."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
