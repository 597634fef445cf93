"""Tasks: labelled data cast as text-to-text, built in (offline) or from the hub.

>>> from softprompt import load_task, list_tasks
>>> list_tasks()                      # built-in tasks first, then hub recipes
>>> task = load_task("sentiment_movies")
>>> task.causal_batch(task["train"][:8], tokenizer)

Built-in tasks (``builtin.py``) are generated offline in a fraction of a second and cached
for the process. Hub recipes (``hub.py``: SST-2, rotten_tomatoes, AG News, BoolQ, MNLI,
QNLI, QQP, the source tasks of Wang et al. 2023) download with ``datasets`` or read a
local copy given by ``data_dir=`` / ``data_files=``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .builtin import BUILTIN_TASKS, build_splits
from .hub import HUB_RECIPES, load_hub_task
from .task import Task

__all__ = ["Task", "load_task", "list_tasks", "TaskNotFoundError"]


class TaskNotFoundError(KeyError):
    """An unknown task name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def _hub_recipes() -> dict:
    return HUB_RECIPES


def list_tasks(family: str | None = None, source: str | None = None) -> list[str]:
    """Names of the known tasks: built-in ones first, then hub recipes; optionally one family or source."""
    if source not in (None, "builtin", "hub"):
        raise ValueError(f"source={source!r}: use 'builtin', 'hub' or None (both).")
    entries = []
    if source in (None, "builtin"):
        entries += [(n, s.family) for n, s in BUILTIN_TASKS.items()]
    if source in (None, "hub"):
        entries += [(n, r.family) for n, r in _hub_recipes().items()]
    return [n for n, fam in entries if family is None or fam == family]


def load_task(name: str, **kwargs) -> Task:
    """The task called ``name`` (see :func:`list_tasks`).

    Built-in tasks take no arguments. Hub recipes accept ``data_dir=`` (a local copy laid out
    like the hub repository) or ``data_files=`` (split -> file(s)), and ``validation_size=``.
    Without either, ``$SOFTPROMPT_DATA_DIR`` (when set) points at local copies, one folder per
    task: ``$SOFTPROMPT_DATA_DIR/<name>/``.
    """
    if name in BUILTIN_TASKS:
        if kwargs:
            raise TypeError(f"built-in task {name!r} takes no options (got {sorted(kwargs)}).")
        spec = BUILTIN_TASKS[name]
        return Task(
            name=spec.name, family=spec.family, description=spec.description, splits=dict(build_splits(name)),
            template=spec.template, label_words=list(spec.label_words), source="builtin",
            metadata={"seed": spec.seed},
        )
    recipes = _hub_recipes()
    if name in recipes:
        root = os.environ.get("SOFTPROMPT_DATA_DIR", "").strip()
        if root and "data_dir" not in kwargs and "data_files" not in kwargs:
            kwargs["data_dir"] = Path(root) / name
        return load_hub_task(recipes[name], **kwargs)
    raise TaskNotFoundError(
        f"unknown task {name!r}. Built-in (offline): {', '.join(BUILTIN_TASKS)}. "
        f"Hub recipes (need the hub or data_dir=): {', '.join(recipes)}."
    )
