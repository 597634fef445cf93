"""Task ids: the one check for every place where a multitask (MPT) task id enters the library.

In multitask prompt tuning (Wang et al. 2023, §3) task ``k`` has the prompt ``P_k = P* ⊙ (u_k v_kᵀ)``:
a task id is an *index* that selects the task factors ``u_k, v_k``. It must be an integer in
``0..K-1``. Anything else would be cast or wrapped silently by tensor indexing (``0.9 -> 0``,
``True -> 1``, ``-1 -> K-1``), so it is refused here with a message that says what came and what to pass:

- :func:`as_task_ids`: per-row ids, one int for the whole batch or a ``(B,)`` integer tensor -> ``(B,)`` long;
- :func:`check_task_id`: one id (``evaluate(task_id=...)``, ``train(task_id=...)``, caches, banks) -> int;
- :func:`task_id_for`: one id for a given prompt: required iff the prompt is multitask, checked against its K.

Accepted: Python ints and numpy integers, and integer tensors (int8/16/32/64, uint8). Refused with
``TypeError``: bools (``bool`` is a subclass of ``int``), floats, strings, float and bool tensors.
Refused with ``ValueError``: ids outside ``0..K-1`` and tensors of the wrong shape.
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["INT_DTYPES", "as_task_ids", "check_task_id", "task_id_for", "num_tasks_of"]

INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
_FIX = "task ids select a task and must be integers, e.g. torch.tensor([0, 1]) or task_id=1"


def _is_int(value) -> bool:
    """A Python or numpy integer, not a bool (``numbers.Integral`` covers ``np.int64``; ``np.bool_`` is not one)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _show(value) -> str:
    """``value`` for a message: as given when short, else its shape."""
    if isinstance(value, torch.Tensor) and value.numel() > 8:
        return f"<a tensor of shape {tuple(value.shape)}>"
    text = repr(value)
    return text if len(text) <= 80 else f"<a {type(value).__name__} of length {len(value)}>"


def _in_range(task_id: int, num_tasks: int | None) -> bool:
    """``0 <= task_id < num_tasks`` (only ``0 <= task_id`` when the task count is unknown)."""
    return task_id >= 0 and (num_tasks is None or task_id < num_tasks)


def _valid_range(num_tasks: int | None, owner: str) -> str:
    if num_tasks is None:
        return "task ids are >= 0 (a negative id would pick a task from the end)"
    return f"{owner} has num_tasks={num_tasks}; use a task id in 0..{num_tasks - 1}"


def check_task_id(task_id, num_tasks: int | None = None, name: str = "task_id", owner: str = "this prompt") -> int:
    """One task id -> a Python int in ``0..num_tasks-1`` (only ``>= 0`` checked when ``num_tasks`` is None).

    Takes an int, a numpy integer or a 0-d integer tensor. ``TypeError`` for anything else (bool, float,
    str, list, float tensor), ``ValueError`` when it is out of range or a tensor with more than one value.
    """
    if isinstance(task_id, torch.Tensor):
        if task_id.dtype not in INT_DTYPES:
            raise TypeError(f"{name}={_show(task_id)} has dtype {task_id.dtype}; {_FIX}.")
        if task_id.ndim != 0:
            raise ValueError(f"{name}={_show(task_id)} has shape {tuple(task_id.shape)}; it names one task: "
                             f"pass one int, e.g. {name}=1 (one id per row goes in task_ids=).")
        task_id = int(task_id)
    if not _is_int(task_id):
        raise TypeError(f"{name}={_show(task_id)} is a {type(task_id).__name__}; {_FIX}.")
    task_id = int(task_id)
    if not _in_range(task_id, num_tasks):
        raise ValueError(f"{name}={task_id} is not a task of {owner}: {_valid_range(num_tasks, owner)}.")
    return task_id


def as_task_ids(task_ids, batch_size: int, num_tasks: int | None = None, device=None,
                name: str = "task_ids", owner: str = "this prompt") -> torch.Tensor:
    """Per-row task ids -> a long tensor ``(batch_size,)`` on ``device``, each in ``0..num_tasks-1``.

    ``task_ids`` is one id for the whole batch (an int, a numpy integer, a 0-d integer tensor) or one
    id per row (an integer tensor, a list or a numpy array of shape ``(batch_size,)``).
    """
    if task_ids is None:
        raise ValueError(f"{name} is missing: this prompt is multitask (MPT) and needs one task id per row, "
                         f"e.g. {name}=torch.zeros(batch_size, dtype=torch.long), or {name}=0 for the whole batch.")
    if _is_int(task_ids):
        task_ids = torch.tensor(int(task_ids))  # one id for the whole batch: ()
    elif not isinstance(task_ids, (torch.Tensor, list, tuple)) and not hasattr(task_ids, "__array__"):
        raise TypeError(f"{name}={_show(task_ids)} is a {type(task_ids).__name__}; {_FIX}.")  # bool, float, str
    try:
        ids = torch.as_tensor(task_ids)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}={_show(task_ids)} does not hold integers; {_FIX}.") from None
    if ids.dtype not in INT_DTYPES:
        raise TypeError(f"{name}={_show(task_ids)} has dtype {ids.dtype}; {_FIX}.")
    if ids.ndim == 0:
        ids = ids.reshape(1).repeat(batch_size)  # (B,)
    if ids.shape != (batch_size,):
        raise ValueError(f"{name}={_show(task_ids)} has shape {tuple(ids.shape)}; expected ({batch_size},), "
                         "one id per row (or one int for the whole batch).")
    bad = sorted({i for i in ids.tolist() if not _in_range(i, num_tasks)})
    if bad:
        where = "" if num_tasks is None else f", outside 0..{num_tasks - 1}"
        raise ValueError(f"{name} holds {bad}{where}: {_valid_range(num_tasks, owner)}.")
    return ids.to(device=device, dtype=torch.long)  # (B,)


def num_tasks_of(prompt) -> int | None:
    """K of a multitask PromptModel (its config) or MPT prompt encoder; None where it has no task count."""
    num_tasks = getattr(getattr(prompt, "prompt_config", None), "num_tasks", None)
    if num_tasks is None:
        num_tasks = getattr(prompt, "num_tasks", None)
    if num_tasks is None:
        num_tasks = getattr(getattr(prompt, "prompt_encoder", None), "num_tasks", None)
    return None if num_tasks is None else int(num_tasks)


def task_id_for(prompt, task_id, name: str = "task_id", what: str = "this prompt") -> int | None:
    """``task_id`` checked for ``prompt`` (a PromptModel or a prompt encoder): an int for a multitask prompt, None else.

    Required iff the prompt needs task ids (MPT); a stray id for a single-task prompt is an error too.
    """
    needs = getattr(prompt, "needs_task_ids", None)  # a PromptModel's property, or an encoder's attribute
    if needs is None:  # a PromptModel-like wrapper without the property
        needs = getattr(getattr(prompt, "prompt_encoder", None), "needs_task_ids", False)
    if not needs:
        if task_id is not None:
            raise ValueError(f"{name}={task_id!r} was given but {what} is not multitask (not MPT): it has no tasks; "
                             f"leave {name}=None.")
        return None
    num_tasks = num_tasks_of(prompt)
    if task_id is None:
        k = f", an int in 0..{num_tasks - 1}," if num_tasks is not None else ", an int,"
        raise ValueError(f"{name} is required: {what} is multitask (MPT), one prompt per task; pass {name}=k{k} "
                         "to pick task k.")
    return check_task_id(task_id, num_tasks, name)
