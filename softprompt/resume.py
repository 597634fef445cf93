"""Exact resume: a killed :func:`softprompt.train` run continues as if it had never stopped.

A checkpoint (:mod:`softprompt.checkpoints`) holds what the next step depends on: the trainable
parameters, the optimizer state, the global random generators (dropout masks), the data order
(:class:`~softprompt.batching.ExampleOrder` positions), the :class:`~softprompt.History` so far and, for a
float16 model, the loss scaler's state (:mod:`softprompt.precision`). The learning rate needs no state: it is a
pure function of the step (:mod:`softprompt.optim`).

A *fingerprint* of the settings that shape the trajectory is saved too, and a run with other
settings refuses to resume rather than silently mixing two trajectories. The model's dtype is part of it
(float32, bfloat16 and float16 runs follow different trajectories). ``grad_accum_steps`` is not: it changes
how a step's rows are run, not its gradient (to float rounding), so a run checkpointed with one value may
continue with another (e.g. on a smaller GPU); the resumed steps then match an uninterrupted run to float
rounding rather than bit for bit.
"""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from .checkpoints import (
    load_newest_intact, remove_checkpoints, remove_stale_temporaries, restore_rng, save_checkpoint,
)
from .history import History
from .optim import Schedule

__all__ = ["TRAJECTORY_FIELDS", "fingerprint", "start_or_resume", "save", "resume"]

# TrainingConfig fields that change the trajectory: a checkpoint made under other values cannot be resumed.
TRAJECTORY_FIELDS = ("batch_size", "optimizer", "lr", "weight_decay", "schedule", "warmup_steps", "max_grad_norm",
                     "seed", "max_length", "train_examples", "mixing", "task_id")
_LATER_FINGERPRINT_KEYS = {"task_contents", "dtype"}  # keys that checkpoints from before they were fingerprinted lack


def fingerprint(cfg, tasks, amp=None) -> dict[str, Any]:
    """The settings, task contents and model dtype (``amp``: a :class:`~softprompt.precision.Precision`) a
    checkpoint's trajectory depends on (JSON-ready)."""
    d = {k: cfg.to_dict()[k] for k in TRAJECTORY_FIELDS}
    if amp is not None:
        d["dtype"] = amp.name
    d["tasks"] = [getattr(t, "name", None) for t in tasks]
    # what a task name alone misses: an edited template or label words, a changed training split
    d["task_contents"] = [[t.template, list(t.label_words), len(t.splits["train"])] for t in tasks]
    if cfg.schedule is not Schedule.CONSTANT:
        d["steps"] = cfg.steps  # a decaying schedule depends on the total
    return d


def start_or_resume(cfg, named, opt, sampler, tasks, amp=None) -> tuple[int, History]:
    """``(steps already done, History so far)``: resumed from ``cfg.checkpoint_dir``, or a fresh seeded start.

    ``resume=False`` deletes the directory's checkpoints first. A damaged newest checkpoint is skipped
    with a warning (and deleted); the run resumes from the newest intact one and recomputes the rest.
    """
    ckpt = None
    if cfg.checkpoint_dir is not None:
        root = Path(cfg.checkpoint_dir)
        if root.exists() and not root.is_dir():
            raise ValueError(f"checkpoint_dir={cfg.checkpoint_dir!r} is a file, not a directory; "
                             "pass a directory (it is created if missing).")
        if not cfg.resume:
            remove_checkpoints(root)
        remove_stale_temporaries(root)  # what a save killed mid-way left behind
        ckpt, damaged = load_newest_intact(root)
    if ckpt is None:
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        return 0, History()
    start, history = resume(ckpt, named, opt, sampler, cfg, tasks, amp)
    for path, detail in damaged:  # newer than the one resumed from: the run recomputes them exactly
        warnings.warn(f"the checkpoint {path} is damaged ({detail}); resuming from the newest intact one, "
                      f"{ckpt.path.name} (step {ckpt.step}), and deleting {path.name}: the resumed run "
                      "recomputes its steps exactly.", UserWarning, stacklevel=3)
        shutil.rmtree(path, ignore_errors=True)
    return start, history


def save(cfg, step, named, opt, sampler, history, tasks, amp=None) -> None:
    """Checkpoint ``step`` into ``cfg.checkpoint_dir`` (atomically), keeping the newest ``cfg.keep_checkpoints``."""
    save_checkpoint(
        cfg.checkpoint_dir, step,
        params={n: p.detach() for n, p in named},
        optimizer=opt,
        state={"history": history.to_dict(), "config": cfg.to_dict(), "fingerprint": fingerprint(cfg, tasks, amp),
               "data_order": sampler.state_dict(), "grad_scaler": None if amp is None else amp.state_dict()},
        keep=cfg.keep_checkpoints,
    )


def resume(ckpt, named, opt, sampler, cfg, tasks, amp=None) -> tuple[int, History]:
    """Load a checkpoint into the prompt, optimizer, RNGs and data order; check it fits this run."""
    path = ckpt.path
    saved, now = ckpt.state["fingerprint"], fingerprint(cfg, tasks, amp)
    if ckpt.step > cfg.steps:
        # An error, not a warning: the caller asked for a `steps`-step prompt, and the checkpoint can only
        # give a longer-trained one (the shorter state is gone). Returning it would be a silent wrong result.
        fix = (f"steps>={ckpt.step}" if "steps" not in saved
               else f"steps={saved['steps']} (its {saved.get('schedule')} schedule depends on the total)")
        raise ValueError(f"steps={cfg.steps} but checkpoint_dir {path.parent} already holds a run at step "
                         f"{ckpt.step} ({path.name}); resuming would return that {ckpt.step}-step prompt. Pass "
                         f"{fix} to continue it, resume=False to start over (deletes its checkpoints), or a fresh "
                         "checkpoint_dir.")
    # checkpoints from before a key was fingerprinted are compared on the keys they have
    diff = {k: (saved.get(k), now.get(k)) for k in set(saved) | set(now)
            if saved.get(k) != now.get(k) and (k in saved or k not in _LATER_FINGERPRINT_KEYS)}
    if diff:
        listing = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(f"the checkpoint in {path} was made with other settings ({listing}). Use the same "
                         "settings to resume, or resume=False (deletes its checkpoints) or another checkpoint_dir.")
    names = {n: p for n, p in named}
    if set(ckpt.params) != set(names) or any(ckpt.params[n].shape != names[n].shape for n in names):
        raise ValueError(f"the checkpoint in {path} holds parameters "
                         f"{ {n: tuple(t.shape) for n, t in ckpt.params.items()} } but this model trains "
                         f"{ {n: tuple(p.shape) for n, p in names.items()} }; use a checkpoint_dir of this model.")
    with torch.no_grad():
        for n, p in names.items():
            p.copy_(ckpt.params[n])
    opt.load_state_dict(ckpt.optimizer_state)
    restore_rng(*ckpt.rng)
    sampler.load_state_dict(ckpt.state["data_order"])
    if amp is not None:
        amp.load_state_dict(ckpt.state.get("grad_scaler"))  # float16: the loss scale where it was
    history = History.from_dict(ckpt.state["history"])
    history.stop_reason = None  # the run goes on
    return ckpt.step, history
