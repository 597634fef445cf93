"""Does multitask prompt tuning transfer? Few-shot target accuracy from seven starts, with 95% intervals.

Wang et al. 2023 (MPT) train one prompt per source task (teachers), distil them into a shared prompt
P* with rank-one task factors, and start a new target task from P* and the averaged factors. Their
claim: this start beats vanilla prompt tuning (random init) and SPoT, also few-shot (their Table 4),
and more source tasks help (their Figure 4). This script tests that claim at small scale, offline.

Design (chosen so that transfer is *possible*, not guaranteed):

- sources: five generated yes/no tasks that share an answer format and a skill with the target
  (check a question against a short passage): ``yn_membership``, ``yn_colors``, ``yn_schedule``,
  ``yn_review``, ``entailment`` (see ``softprompt/tasks/builtin.py``);
- main target: ``yn_facts`` (held out: facts about a person), few-shot with 8, 32 and 128 examples;
- control target: ``intent`` (four-way intent classification, another family), 32 examples;
- source-count sweep: MPT with the first 1, 2, 4 and all 5 sources (a fixed nested order, chosen
  before any result) on the main target at 32 examples (the paper's Figure 4 at small scale).

Arms (every one trains the same steps on the same few-shot examples in the same order, per seed):

    random         vanilla prompt, RANDOM init (vocabulary-norm scaled): the paper's PT baseline
    sample_vocab   vanilla prompt, embeddings of sampled vocabulary tokens
    text           vanilla prompt, TEXT init from the task description's first clause
    class_labels   vanilla prompt, CLASS_LABELS init (Lester et al. §3.2; the paper's baselines do not use it)
    spot           vanilla prompt from the one teacher that scores best on the target's *validation*
                   split before training (SPoT-style retrieval, Vu et al. 2022; ties: gold log-probability)
    mpt_plain      MPT source trained without distillation (plain multitask training of P*, u, v)
    mpt_distill    MPT source trained with distillation (task loss + λ(KL + hidden MSE), Wang et al. §3.2)

Two levels of randomness (issue 24). Target seeds change the few-shot sample, the data order and the
random/sampled inits. Source draws change the source stage: draw d trains the teachers, the plain and the
distilled MPT sources (and the sweep's) with recipe seed d (``--draws 0,1,2``; draw 0 is the recipe's seed 0,
the cache's first draw). Every arm built on a source (spot, mpt_plain, mpt_distill, the sweep) runs on every
draw x every target seed (crossed: seed s is the same few-shot sample in every draw); the vanilla arms use no
source and run once per seed. Each arm: the mean over draws x seeds with a 95% two-level percentile bootstrap
interval (``softprompt.stats.two_level_bootstrap``: draws, then the same seeds in each draw; inside [0, 1]),
the variance split between source draws and target seeds (``variance_components``), and, as a conservative
check, the crossed random-effects t interval (``mixed_model_t_interval``, Satterthwaite df, clipped to the
range). Paired by draw and seed, the difference ``mpt_distill - arm`` gets the same. On one machine and
thread count a rerun repeats the numbers (checked for one full-size target run, and for every number of
``--quick`` with one and two workers); another CPU rounds differently, and the sources then come out
different (the first full run, ``mpt_transfer_earlier_run.json``, against the rerun: see the README): that
is what the source draws now measure.

Resumable: every finished target run is one small JSON file, every trained source one safetensors
file (+ JSON), under ``--runs-dir`` (committed: ``benchmarks/results/mpt_runs``). A rerun skips what is
there, even in a fresh clone; a file's name carries a hash of every setting that shapes it. Sources go
first, then the runs draw by draw and, within a draw, seed by seed, so an interrupted benchmark has all arms
for its first seeds; an arm's table holds only its complete draws (a draw still running is left out until it
is done). ``--workers N`` runs the same queue in N one-thread processes (sources first, each trained once
under a file lock; the draws' sources interleaved so that two workers train two draws side by side); every
invocation that trains something leaves its wall time in ``invocation-*.json``; the report quotes the invocation that
did the whole run from an empty cache, if one did (``timing.full_run``), and every invocation that built the
cache, with their summed wall time (``timing.invocations``, ``timing.cache_wall_hours``). A draw's sources
and runs carry ``_d<draw>`` in their names (none for draw 0, so its cached files keep their names and hashes).

    python benchmarks/bench_mpt_transfer.py --workers 2              # the full run on 2 cores (resumes)
    python benchmarks/bench_mpt_transfer.py --report-only            # tables, JSON, figure from the cache
    python benchmarks/bench_mpt_transfer.py --dry-run                # what is cached, what would be trained
    python benchmarks/bench_mpt_transfer.py --quick --out-dir /tmp/q # tiny model, seconds (tests use it)

Results: ``softprompt/data/results/mpt_transfer.json`` and ``benchmarks/results/mpt_transfer.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench_common, also when a test loads this file by path
from bench_common import ints, project_relative  # noqa: E402

ARMS = ("random", "sample_vocab", "text", "class_labels", "spot", "mpt_plain", "mpt_distill")
SOURCE_ARMS = ("spot", "mpt_plain", "mpt_distill")  # the arms built on a trained source: one result per draw
REFERENCE = "mpt_distill"  # the arm every other is compared with, paired by seed
DEFAULT_RUNS = HERE / "results" / "mpt_runs"
DEFAULT_OUT = ROOT / "softprompt" / "data" / "results" / "mpt_transfer.json"
DEFAULT_FIGURE = HERE / "results" / "mpt_transfer.png"
SOURCES = "yn_membership,yn_colors,yn_schedule,yn_review,entailment"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--sources", default=SOURCES, help="comma-separated source tasks, in the sweep's nested order")
    p.add_argument("--main-target", default="yn_facts")
    p.add_argument("--control-target", default="intent")
    p.add_argument("--seeds", default=None, help="target seeds (default 0,1,2,3,4; --quick 0,1)")
    p.add_argument("--draws", default=None, help="source-stage draws (default 0,1,2; --quick 0,1): draw d trains "
                   "the teachers and the MPT sources with recipe seed d")
    p.add_argument("--n-boot", type=int, default=None,
                   help="bootstrap replicates per interval (default 10000; --quick 1000)")
    p.add_argument("--shots", default="8,32,128", help="few-shot sizes on the main target")
    p.add_argument("--control-shots", default="32")
    p.add_argument("--sweep", default="1,2,4", help="source counts for the sweep (all sources = the mpt_distill arm)")
    p.add_argument("--sweep-shots", type=int, default=32)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--target-steps", type=int, default=None, help="default: MPTRecipe().target_steps")
    p.add_argument("--teacher-steps", type=int, default=None, help="default: MPTRecipe().teacher_steps")
    p.add_argument("--distill-steps", type=int, default=None, help="default: MPTRecipe().distill_steps")
    p.add_argument("--num-virtual-tokens", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--test-examples", type=int, default=512, help="test examples per evaluation (>= 512: the spec)")
    p.add_argument("--val-examples", type=int, default=128, help="validation examples: SPoT's choice, source checks")
    p.add_argument("--runs-dir", default=None, help=f"default: {DEFAULT_RUNS.relative_to(ROOT)} (committed)")
    p.add_argument("--out", default=None, help=f"default: {DEFAULT_OUT.relative_to(ROOT)}")
    p.add_argument("--figure", default=None, help=f"default: {DEFAULT_FIGURE.relative_to(ROOT)}")
    p.add_argument("--out-dir", default=None, help="runs, JSON and figure all here (--quick: a temp dir if unset)")
    p.add_argument("--report-only", action="store_true", help="train nothing: summarize the cached runs")
    p.add_argument("--dry-run", action="store_true",
                   help="train and write nothing: count the cached and the pending runs and sources")
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many new target runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1,
                   help="processes sharing the job queue, one thread each (2 on a 2-core machine)")
    p.add_argument("--quick", action="store_true", help="tiny random model, tiny settings: the test suite's run")
    args = p.parse_args(argv)
    if args.quick:
        args.model = "tiny-llama"
        args.sources, args.main_target, args.control_target = "yn_colors,entailment,yn_review", "yn_facts", \
            "sentiment_movies"
        args.seeds, args.shots, args.control_shots, args.sweep = args.seeds or "0,1", "4,8", "8", "1,2"
        args.draws, args.n_boot = args.draws or "0,1", args.n_boot or 1000
        args.sweep_shots = 8
        args.target_steps, args.teacher_steps, args.distill_steps = 2, 2, 2
        args.num_virtual_tokens, args.batch_size = 4, 4
        args.test_examples, args.val_examples = 16, 8
        if args.out_dir is None and args.runs_dir is None:
            args.out_dir = tempfile.mkdtemp(prefix="bench_mpt_quick_")
    out = Path(args.out_dir) if args.out_dir is not None else None
    args.runs_dir = args.runs_dir or str(out / "mpt_runs" if out else DEFAULT_RUNS)
    args.out = args.out or str(out / "mpt_transfer.json" if out else DEFAULT_OUT)
    args.figure = args.figure or str(out / "mpt_transfer.png" if out else DEFAULT_FIGURE)
    committed = {DEFAULT_RUNS.resolve(), DEFAULT_OUT.resolve(), DEFAULT_FIGURE.resolve()}
    if args.quick and {Path(a).resolve() for a in (args.runs_dir, args.out, args.figure)} & committed:
        raise SystemExit("--quick never writes to the committed results (runs dir, JSON, figure); pass --out-dir.")
    args.seeds, args.shots, args.control_shots, args.sweep = (ints(args.seeds or "0,1,2,3,4"), ints(args.shots),
                                                              ints(args.control_shots), ints(args.sweep))
    args.draws, args.n_boot = ints(args.draws or "0,1,2"), args.n_boot or 10_000
    if not args.draws or len(set(args.draws)) != len(args.draws) or min(args.draws) < 0:
        raise SystemExit(f"--draws {args.draws}: give distinct non-negative integers, e.g. 0,1,2")
    args.sources = [s for s in args.sources.split(",") if s]
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1; got {args.workers}.")
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"unknown arms {unknown}; choose from {ARMS}")
    held = sorted({args.main_target, args.control_target} & set(args.sources))
    if held:
        raise SystemExit(f"targets {held} are also sources; a target must be held out")
    if any(k >= len(args.sources) or k < 1 for k in args.sweep):
        raise SystemExit(f"--sweep {args.sweep}: counts must be in 1..{len(args.sources) - 1} "
                         f"(all {len(args.sources)} sources is the mpt_distill arm)")
    return args


def make_recipe(args, draw: int = 0):
    """The MPT recipe of source draw ``draw``: its seed is the draw (the target stage takes each run's seed)."""
    from softprompt.mpt import MPTRecipe

    changes = {k: getattr(args, a) for k, a in (
        ("num_virtual_tokens", "num_virtual_tokens"), ("batch_size", "batch_size"), ("teacher_steps", "teacher_steps"),
        ("distill_steps", "distill_steps"), ("target_steps", "target_steps")) if getattr(args, a) is not None}
    return MPTRecipe(max_length=args.max_length, seed=draw, **changes)


def recipe_dict(recipe) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(recipe).items()}


def digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------- the plan
def plan(args) -> list[dict]:
    """Every target run, in the order they run: draw by draw, and within a draw seed by seed, so a partial
    benchmark is balanced across arms. The first draw holds the vanilla arms too (they use no source, so they
    run once per seed); a later draw only the arms built on its sources. A source arm's job carries its
    ``draw``; a vanilla arm's has none."""
    settings = [(args.main_target, n) for n in args.shots if n == args.sweep_shots]
    settings += [(args.control_target, n) for n in args.control_shots]
    settings += [(args.main_target, n) for n in args.shots if n != args.sweep_shots]
    jobs = []
    for draw in args.draws:
        arms = args.arms if draw == args.draws[0] else [a for a in args.arms if a in SOURCE_ARMS]
        for seed in args.seeds:
            for target, shots in settings:
                jobs += [dict(target=target, arm=arm, shots=shots, seed=seed, num_sources=len(args.sources))
                         | ({"draw": draw} if arm in SOURCE_ARMS else {}) for arm in arms]
                if target == args.main_target and shots == args.sweep_shots and "mpt_distill" in args.arms:
                    jobs += [dict(target=target, arm="mpt_distill", shots=shots, seed=seed, num_sources=k, draw=draw)
                             for k in args.sweep]
    return jobs


def draw_suffix(draw) -> str:
    """``_d<draw>`` in a file name; none for draw 0 (the cache's first draw keeps its names) or no draw."""
    return f"_d{draw}" if draw else ""


def run_name(job: dict, n_all: int) -> str:
    sweep = "" if job["num_sources"] == n_all else f"_k{job['num_sources']}"
    return f"{job['target']}_{job['arm']}{sweep}_n{job['shots']}_s{job['seed']}{draw_suffix(job.get('draw'))}"


def cache_fields(job: dict) -> dict:
    """The job's fields that go into its file's hash: all but the draw, which enters as the recipe's seed (the
    scope's base), so that draw 0's files keep the hashes they had before there were draws."""
    return {k: v for k, v in job.items() if k != "draw"}


# ---------------------------------------------------------------------------------------------- the cache
TARGET_FIELDS = ("num_virtual_tokens", "batch_size", "max_length", "target_steps")
TEACHER_FIELDS = ("num_virtual_tokens", "batch_size", "max_length", "teacher_steps", "teacher_init", "seed")
SOURCE_FIELDS = (*TEACHER_FIELDS, "num_ranks", "distill_steps", "distill_weight", "temperature", "hidden_layers",
                 "student_init", "distill_lr")


class RunsDir:
    """One JSON file per finished run (and one safetensors per trained source); atomic writes. One per source
    draw (its recipe's seed is the draw); a vanilla run's file is the same in all of them.

    A file's name ends in a hash of the settings that shape it (scope ``teachers``: the teachers' recipe
    fields; ``source``: those and the distillation's; ``target``: every setting; ``vanilla``: the target
    stage's fields only, for arms that use no trained source; ``spot``: those and the teachers'), so a
    changed setting never reuses a stale file, a change to the target stage reuses the trained sources,
    and a change to the distillation recipe reuses the arms it cannot affect.
    """

    def __init__(self, path, model: str, recipe: dict, test_examples: int, val_examples: int):
        self.path = Path(path)
        common = {"model": model, "val_examples": val_examples}
        vanilla = common | {k: recipe[k] for k in TARGET_FIELDS} | {"test_examples": test_examples}
        self.bases = {"teachers": common | {k: recipe[k] for k in TEACHER_FIELDS},
                      "source": common | {k: recipe[k] for k in SOURCE_FIELDS},
                      "target": common | {"recipe": recipe, "test_examples": test_examples},
                      "vanilla": vanilla, "spot": vanilla | {k: recipe[k] for k in TEACHER_FIELDS}}

    @staticmethod
    def scope_of(job: dict) -> str:
        """The cache scope of a target run: what its arm's result can depend on."""
        return {"spot": "spot", "mpt_plain": "target", "mpt_distill": "target"}.get(job["arm"], "vanilla")

    def file(self, name: str, fields: dict, suffix=".json", scope="target") -> Path:
        return self.path / f"{name}-{digest(self.bases[scope] | fields)}{suffix}"

    def get(self, name: str, fields: dict, scope="target"):
        f = self.file(name, fields, scope=scope)
        return json.loads(f.read_text()) if f.exists() else None

    def put(self, name: str, fields: dict, value: dict, scope="target") -> None:
        from softprompt.atomic import atomic_write_json

        atomic_write_json(self.file(name, fields, scope=scope), value)


def runs_dirs(args) -> dict[int, RunsDir]:
    """``{draw: its RunsDir}``: the cache seen with each draw's recipe."""
    return {d: RunsDir(args.runs_dir, args.model, recipe_dict(make_recipe(args, d)), args.test_examples,
                       args.val_examples) for d in args.draws}


def cached_run(args, dirs: dict[int, RunsDir], job: dict):
    """The finished run ``job`` from the cache, or None."""
    runs = dirs[job.get("draw", args.draws[0])]
    return runs.get(run_name(job, len(args.sources)), cache_fields(job), scope=RunsDir.scope_of(job))


def store_run(args, dirs: dict[int, RunsDir], job: dict, result: dict) -> None:
    runs = dirs[job.get("draw", args.draws[0])]
    runs.put(run_name(job, len(args.sources)), cache_fields(job), result, scope=RunsDir.scope_of(job))


@contextlib.contextmanager
def locked(runs_dir, name: str):
    """Hold an exclusive lock named ``name`` in ``runs_dir`` (released when the holder exits, even by a kill),
    so that two workers never train the same source: the second waits, then finds it in the cache. Without
    ``fcntl`` (Windows) there is no lock, and no ``--workers`` either: one process needs none."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    folder = Path(runs_dir) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def distill_steps_for(recipe, k: int, n_sources: int) -> int:
    """Stage-2 steps for the first ``k`` of ``n_sources`` sources: the recipe's steps are for all of them, so
    every source task gets the same number of examples whatever ``k`` (the sweep varies tasks, not data per task)."""
    return max(1, round(recipe.distill_steps * k / n_sources))


class StartSnapshot:
    """A train() callback that keeps the trainable tensors as they were at step 0."""

    def __init__(self):
        self.tensors = None

    def on_train_begin(self, state):
        self.tensors = {k: v.detach().clone() for k, v in state.prompt_model.prompt_encoder.adapter_tensors().items()}

    def on_step(self, state):
        pass

    def on_evaluate(self, state):
        pass

    def on_train_end(self, state):
        pass


def best_vocab_cosine(prompt: torch.Tensor, embeddings: torch.Tensor) -> float:
    """Mean over the T prompt vectors of the highest cosine to any vocabulary embedding."""
    p = torch.nn.functional.normalize(prompt.float(), dim=-1)  # (T, d)
    e = torch.nn.functional.normalize(embeddings.float(), dim=-1)  # (V, d)
    return float((p @ e.T).max(dim=-1).values.mean())


def prompt_measures(encoder, start: dict, embeddings) -> dict:
    p_star, p0 = encoder.shared_prompt.detach(), start["prompt_embeddings"]  # (T, d)
    task_prompts = encoder.task_prompts().detach()  # (K, T, d)
    W = encoder.prefix_task_cols.detach() @ encoder.prefix_task_rows.detach()  # (K, T, d)
    cos_k = torch.nn.functional.cosine_similarity(task_prompts.flatten(1), p_star.flatten()[None], dim=-1)  # (K,)
    return {
        "p_star_rel_change": float((p_star - p0).norm() / p0.norm()),
        "p_star_best_vocab_cos": best_vocab_cosine(p_star, embeddings),
        "p_star0_best_vocab_cos": best_vocab_cosine(p0, embeddings),
        "cos_task_prompt_to_p_star": [float(c) for c in cos_k],
        "task_matrix_rel_change": [float((w - 1).norm() / torch.ones_like(w).norm()) for w in W],
        "p_star_norm_per_vector": float(p_star.norm(dim=-1).mean()),
        "p_star0_norm_per_vector": float(p0.norm(dim=-1).mean()),
    }


def load(args):
    if args.model == "tiny-llama":
        from softprompt.testing import tiny_model, tiny_tokenizer

        return tiny_model("llama").to(args.device), tiny_tokenizer()
    from softprompt import load_model

    model, tokenizer = load_model(args.model)
    return model.to(args.device).eval(), tokenizer


def accuracy(pm, tokenizer, task, n, split="test", **kw) -> float:
    from softprompt import evaluate

    return float(evaluate(pm, tokenizer, task, split=split, max_examples=n, **kw)["accuracy"])


class Sources:
    """One draw's trained teachers and MPT sources, each trained once, cached in the runs dir, loaded lazily.

    The draw is ``recipe.seed``; its files are named ``source_<what>_d<draw>`` (no suffix for draw 0).
    """

    def __init__(self, args, runs: RunsDir, model, tokenizer, recipe, tasks: dict | None = None):
        self.args, self.runs, self.model, self.tok, self.recipe = args, runs, model, tokenizer, recipe
        self.suffix = draw_suffix(recipe.seed)
        self.tasks = {} if tasks is None else tasks  # shared between draws: the tasks do not depend on them
        self._teachers, self._students = None, {}
        self.log = {}  # name -> what training it measured (seconds, accuracies, P* measures)

    def task(self, name):
        import softprompt as sp

        if name not in self.tasks:
            self.tasks[name] = sp.load_task(name)
        return self.tasks[name]

    def teachers(self) -> dict[str, torch.Tensor]:
        if self._teachers is not None:
            return self._teachers
        with locked(self.runs.path, f"source_teachers{self.suffix}"):
            return self._load_or_train_teachers()

    def _load_or_train_teachers(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        from softprompt.atomic import atomic_save_safetensors
        from softprompt.mpt import train_teachers, vanilla_prompt_model

        fields = {"kind": "teachers", "sources": self.args.sources}
        name = f"source_teachers{self.suffix}"
        path = self.runs.file(name, fields, ".safetensors", scope="teachers")
        info = self.runs.get(name, fields, scope="teachers")
        if path.exists() and info is not None:
            self._teachers = load_file(path)
        else:
            t0 = time.perf_counter()
            self._teachers = train_teachers(self.model, self.tok, [self.task(n) for n in self.args.sources],
                                            self.recipe, progress=False)
            seconds = time.perf_counter() - t0
            val = {n: accuracy(vanilla_prompt_model(self.model, p), self.tok, self.task(n), self.args.val_examples,
                               "validation") for n, p in self._teachers.items()}
            info = {"seconds": seconds, "val_accuracy": val, "val_examples": self.args.val_examples}
            atomic_save_safetensors(path, self._teachers)
            self.runs.put(name, fields, info, scope="teachers")
            print(f"teachers (draw {self.recipe.seed}): {seconds:.0f} s, validation accuracy {val}", flush=True)
        self.log["teachers"] = info
        return self._teachers

    def student(self, distill: bool, k: int):
        """The MPT source on the first ``k`` sources, with or without distillation."""
        name = f"source_{'mpt_distill' if distill else 'mpt_plain'}_k{k}"
        if name in self._students:
            return self._students[name]
        with locked(self.runs.path, name + self.suffix):
            return self._load_or_train_student(distill, k, name)

    def _load_or_train_student(self, distill: bool, k: int, name: str):
        from safetensors.torch import load_file

        from softprompt.atomic import atomic_save_safetensors
        from softprompt.mpt import distill as run_distill

        names = self.args.sources[:k]
        steps = self.distill_steps(k)
        fields = {"kind": name, "sources": names, "steps": steps}  # the kind without the draw: draw 0's hash
        path = self.runs.file(name + self.suffix, fields, ".safetensors", scope="source")
        info = self.runs.get(name + self.suffix, fields, scope="source")
        if path.exists() and info is not None:
            tensors = load_file(path)
        else:
            tasks = [self.task(n) for n in names]
            teachers = self.teachers()
            snap = StartSnapshot()
            t0 = time.perf_counter()
            student, history, terms = run_distill(self.model, self.tok, tasks, teachers,
                                                  self.recipe.replace(distill=distill, distill_steps=steps),
                                                  progress=False, callbacks=[snap])
            seconds = time.perf_counter() - t0
            tensors = {k_: v.contiguous() for k_, v in student.prompt_encoder.adapter_tensors().items()}
            val = {t.name: accuracy(student, self.tok, t, self.args.val_examples, "validation", task_id=i)
                   for i, t in enumerate(tasks)}
            emb = self.model.get_input_embeddings().weight.detach()
            info = {"seconds": seconds, "sources": names, "steps": steps, "val_accuracy": val,
                    "loss_first_last": [history.loss[0][1], history.loss[-1][1]],
                    "terms_first_last": [terms[0], terms[-1]] if terms else None,
                    **prompt_measures(student.prompt_encoder, snap.tensors, emb)}
            atomic_save_safetensors(path, tensors)
            self.runs.put(name + self.suffix, fields, info, scope="source")
            print(f"{name}{self.suffix}: {seconds:.0f} s, validation accuracy {val}, "
                  f"|ΔP*|/|P*0| {info['p_star_rel_change']:.3f}", flush=True)
        self.log[name] = info
        self._students[name] = tensors
        return tensors

    def distill_steps(self, k: int) -> int:
        return distill_steps_for(self.recipe, k, len(self.args.sources))

    def spot(self, target: str) -> dict:
        """The teacher whose prompt scores best on the target's validation split, before any target training."""
        with locked(self.runs.path, f"spot_{target}{self.suffix}"):
            return self._load_or_choose_spot(target)

    def _load_or_choose_spot(self, target: str) -> dict:
        from softprompt import evaluate
        from softprompt.mpt import vanilla_prompt_model

        fields = {"kind": "spot", "target": target, "sources": self.args.sources}
        cached = self.runs.get(f"spot_{target}{self.suffix}", fields, scope="teachers")
        if cached is not None:
            return cached
        scores = {}
        for name, prompt in self.teachers().items():
            r = evaluate(vanilla_prompt_model(self.model, prompt), self.tok, self.task(target), split="validation",
                         max_examples=self.args.val_examples, return_predictions=True)
            logp = torch.log_softmax(r["scores"].float(), -1)  # (N, K)
            gold = float(logp[torch.arange(len(r["labels"])), torch.tensor(r["labels"])].mean())
            scores[name] = [float(r["accuracy"]), gold]
        choice = {"source": max(scores, key=lambda n: tuple(scores[n])), "scores": scores,
                  "rule": "highest validation accuracy before training, ties by mean gold log-probability"}
        self.runs.put(f"spot_{target}{self.suffix}", fields, choice, scope="teachers")
        return choice


def init_text(task) -> str:
    """The description's first clause, without a 'Generated.' tag or a label list after ':' or '('."""
    text = task.description.removeprefix("Generated.").strip()
    return re.split(r"[.:(]", text, maxsplit=1)[0].strip()


def start(args, sources: Sources, job: dict):
    """The prompt model ``job['arm']`` starts from, and the evaluate/train keywords it needs."""
    from softprompt.mpt import target_prompt_model, vanilla_prompt_model

    model, tok, target, seed, arm = sources.model, sources.tok, sources.task(job["target"]), job["seed"], job["arm"]
    T = sources.recipe.num_virtual_tokens
    if arm in ("mpt_plain", "mpt_distill"):
        tensors = sources.student(arm == "mpt_distill", job["num_sources"])
        return target_prompt_model(model, tensors, init=sources.recipe.target_init, seed=seed), {"task_id": 0}
    if arm == "spot":
        return vanilla_prompt_model(model, sources.teachers()[sources.spot(job["target"])["source"]]), {}
    inits = {"random": {}, "sample_vocab": {"prompt_tuning_init": "SAMPLE_VOCAB"},
             "text": {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": init_text(target)},
             "class_labels": {"prompt_tuning_init": "CLASS_LABELS",
                              "prompt_tuning_class_labels": list(target.label_words)}}
    return vanilla_prompt_model(model, num_virtual_tokens=T, tokenizer=tok, seed=seed, **inits[arm]), {}


def run_one(args, sources: Sources, job: dict) -> dict:
    from softprompt import train

    t_start, cpu_start = time.perf_counter(), time.process_time()
    pm, kw = start(args, sources, job)
    recipe = sources.recipe
    target = sources.task(job["target"])
    t0 = time.perf_counter()
    history = train(pm, sources.tok, target, steps=recipe.target_steps, batch_size=recipe.batch_size,
                    train_examples=job["shots"], seed=job["seed"], max_length=recipe.max_length, progress=False, **kw)
    t1 = time.perf_counter()
    acc = accuracy(pm, sources.tok, target, args.test_examples, **kw)
    t2 = time.perf_counter()
    return dict(job, accuracy=acc, test_examples=min(args.test_examples, len(target.splits["test"])),
                final_loss=history.loss[-1][1], train_seconds=t1 - t0, eval_seconds=t2 - t1,
                wall_seconds=t2 - t_start, cpu_seconds=time.process_time() - cpu_start,
                torch_threads=torch.get_num_threads())


# ---------------------------------------------------------------------------------------------- the report
def by_draw_and_seed(args, runs: list[dict]) -> dict:
    """``{setting: {arm: {draw: {seed: accuracy}}}}``; a vanilla arm's one draw is None (it uses no source).
    Runs cached before there were draws carry no ``draw``: they are draw 0."""
    n_all = len(args.sources)
    out = {}
    for r in runs:
        key = f"{r['target']}/{r['shots']}"
        arm = r["arm"] if r["num_sources"] == n_all else f"{r['arm']}_k{r['num_sources']}"
        draw = r.get("draw", 0) if r["arm"] in SOURCE_ARMS else None
        out.setdefault(key, {}).setdefault(arm, {}).setdefault(draw, {})[r["seed"]] = r["accuracy"]
    return out


def _draw_order(draw):
    return -1 if draw is None else draw


def balanced(by_draw: dict) -> tuple[list, list]:
    """The draws and seeds of the table the statistics read: the draws that have every seed any draw has (a draw
    still running is left out until it is complete), or, if none has, every draw on the seeds they share."""
    order = sorted(by_draw, key=_draw_order)
    every = set().union(*(set(v) for v in by_draw.values()))
    complete = [d for d in order if set(by_draw[d]) == every]
    if complete:
        return complete, sorted(every)
    return order, sorted(set.intersection(*(set(v) for v in by_draw.values())))


def interval_entry(args, table: list[list[float]], draws: list, seeds: list, bounds: tuple) -> dict:
    """Mean, two-level bootstrap interval, variance split and the t check for a draws x seeds table."""
    from softprompt.stats import mixed_model_t_interval, two_level_bootstrap, variance_components

    boot = two_level_bootstrap(table, n_boot=args.n_boot)
    var = variance_components(table)
    t = mixed_model_t_interval(table, bounds=bounds)
    return {"mean": boot["mean"], "low": boot["low"], "high": boot["high"], "n": boot["n"],
            "n_draws": len(draws), "n_seeds": len(seeds), "draws": None if draws == [None] else draws,
            "seeds": seeds, "values": [v for row in table for v in row], "values_by_draw": table,
            "draw_means": var["draw_means"],
            "variance": {k: var[k] for k in ("draw", "seed", "residual", "within_draw", "share_draw")},
            "mixed_t": {k: t[k] for k in ("low", "high", "df", "clipped")}}


def arm_entry(args, by_draw: dict) -> dict:
    draws, seeds = balanced(by_draw)
    return interval_entry(args, [[by_draw[d][s] for s in seeds] for d in draws], draws, seeds, (0.0, 1.0))


def paired_entry(args, a: dict, b: dict) -> dict | None:
    """``a - b`` paired by draw and seed (``{draw: {seed: value}}`` each); a vanilla ``b`` (draw None) pairs with
    every draw of ``a`` by seed. None when fewer than 2 pairs."""
    draws, seeds = balanced(a)
    if None in b:
        other = {d: b[None] for d in draws}
    else:
        draws = [d for d in draws if d in b]
        other = {d: b[d] for d in draws}
    if draws and (full := [d for d in draws if set(seeds) <= set(other[d])]):
        draws = full  # a draw of b still running is left out, as in balanced()
    seeds = [s for s in seeds if all(s in other[d] for d in draws)]
    if len(draws) * len(seeds) < 2:
        return None
    table = [[a[d][s] - other[d][s] for s in seeds] for d in draws]
    flat = [x for row in table for x in row]
    return interval_entry(args, table, draws, seeds, (-1.0, 1.0)) | {
        "wins": sum(x > 0 for x in flat), "ties": sum(x == 0 for x in flat), "losses": sum(x < 0 for x in flat)}


def summarize(args, runs: list[dict], sources_log: dict, spot: dict, timing: dict) -> dict:
    n_all = len(args.sources)
    settings = by_draw_and_seed(args, runs)
    table = {}
    for key, arms in settings.items():
        entry = {"arms": {arm: arm_entry(args, by_draw) for arm, by_draw in arms.items()},
                 "paired_vs_" + REFERENCE: {}}
        if REFERENCE in arms:
            for arm, by_draw in arms.items():
                if arm != REFERENCE and (d := paired_entry(args, arms[REFERENCE], by_draw)) is not None:
                    entry["paired_vs_" + REFERENCE][arm] = d
        table[key] = entry
    sweep = {}
    key = f"{args.main_target}/{args.sweep_shots}"
    if key in settings:
        arms = settings[key]
        for k in [*args.sweep, n_all]:
            arm = REFERENCE if k == n_all else f"{REFERENCE}_k{k}"
            if arm in arms:
                sweep[str(k)] = table[key]["arms"][arm] | {"sources": args.sources[:k]}
                if "random" in arms and (d := paired_entry(args, arms[arm], arms["random"])) is not None:
                    sweep[str(k)]["paired_vs_random"] = d
    return {"settings": table, "source_count_sweep": sweep, "spot": spot, "sources": sources_log,
            "variance_split": variance_split(table), "timing": timing}


def variance_split(table: dict) -> dict:
    """Per setting and source arm: the variance between source draws and within a draw (target seeds), and the
    draw's share; and over all of them, the median share (how much of an arm's spread the source stage makes)."""
    rows, shares = {}, []
    for key, entry in table.items():
        for arm, e in entry["arms"].items():
            v = e["variance"]
            if v["draw"] is not None:
                rows[f"{key} {arm}"] = {"draw": v["draw"], "within_draw": v["within_draw"],
                                        "share_draw": v["share_draw"], "n_draws": e["n_draws"]}
                if v["share_draw"] is not None:
                    shares.append(v["share_draw"])
    shares.sort()
    median = None if not shares else (shares[len(shares) // 2] if len(shares) % 2 else
                                      (shares[len(shares) // 2 - 1] + shares[len(shares) // 2]) / 2)
    return {"by_arm": rows, "median_share_draw": median, "arms_counted": len(shares)}


def _interval(e: dict, sign: str = "") -> str:
    return f"{e['mean']:{sign}.3f} [{e['low']:{sign}.3f}, {e['high']:{sign}.3f}]"


def print_report(args, summary: dict) -> None:
    for key, entry in summary["settings"].items():
        print(f"\n{key} (target/shots): test accuracy, mean over draws x seeds [95% two-level bootstrap], "
              f"[t check], sd between draws / within a draw; paired difference {REFERENCE} - arm")
        print(f"| arm | draws x seeds | mean [95% CI] | t check | sd draw / seed | paired diff vs {REFERENCE} |")
        print("|---|---|---|---|---|---|")
        for arm, s in entry["arms"].items():
            t = s["mixed_t"]
            tc = f"[{t['low']:.3f}, {t['high']:.3f}]" if t["low"] is not None else "[-]"
            v = s["variance"]
            sd = " / ".join("-" if v[k] is None else f"{v[k] ** 0.5:.3f}" for k in ("draw", "within_draw"))
            d = entry["paired_vs_" + REFERENCE].get(arm)
            print(f"| {arm} | {s['n_draws']} x {s['n_seeds']} | {_interval(s)} | {tc} | {sd} | "
                  f"{_interval(d, '+') if d else ''} |")
    if summary["source_count_sweep"]:
        print(f"\nsource-count sweep ({args.main_target}, {args.sweep_shots} examples):")
        for k, s in summary["source_count_sweep"].items():
            print(f"  {k} sources: {_interval(s)} ({s['n_draws']} draws x {s['n_seeds']} seeds)")
    split = summary["variance_split"]
    if split["median_share_draw"] is not None:
        print(f"\nsource draws make a median {split['median_share_draw']:.0%} of a source arm's variance "
              f"({split['arms_counted']} arm x setting tables with 2+ draws)")


def plot(args, summary: dict, path: str) -> None:
    """One panel per setting: each arm's mean with its two-level interval, and one small dot per draw's mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(summary["settings"].items())
    sweep = summary["source_count_sweep"]
    fig, axes = plt.subplots(1, len(panels) + bool(sweep), figsize=(3.3 * (len(panels) + bool(sweep)), 3.6),
                             squeeze=False)

    def bars(ax, xs, entries, **kw):
        ax.errorbar(xs, [e["mean"] for e in entries], yerr=[[e["mean"] - e["low"] for e in entries],
                                                            [e["high"] - e["mean"] for e in entries]],
                    fmt="o", capsize=3, zorder=3, **kw)
        for x, e in zip(xs, entries):
            if e["n_draws"] > 1:
                ax.plot([x + 0.15] * e["n_draws"], e["draw_means"], ".", color="0.45", ms=4, zorder=2)

    for ax, (key, entry) in zip(axes[0], panels):
        arms = [a for a in ARMS if a in entry["arms"]]
        bars(ax, range(len(arms)), [entry["arms"][a] for a in arms])
        ax.set_xticks(range(len(arms)), arms, rotation=60, ha="right", fontsize=7)
        n = max(entry["arms"][a]["n_draws"] for a in arms)
        ax.set_title(f"{key.replace('/', ', ')} shots ({n} source draw{'s' if n != 1 else ''})", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (mean, 95% CI; dots: draws)")
    if sweep:
        ax = axes[0][-1]
        ks = [int(k) for k in sweep]
        bars(ax, ks, [sweep[k] for k in sweep])
        ax.plot(ks, [sweep[k]["mean"] for k in sweep], "-", color="C0", alpha=0.5)
        ax.set_xticks(ks)
        ax.set_xlabel("source tasks")
        ax.set_title(f"MPT, {args.main_target}, {args.sweep_shots} shots", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- the workers
def source_jobs(args, todo: list[dict]) -> list[tuple]:
    """The sources the pending target runs need, as ``(draw, what)``: per draw the teachers first (SPoT uses them,
    and both MPT sources start P* from their mean), then the plain MPT source, then the distilled ones, most
    sources first; the draws interleaved (teachers of draw 1, of draw 2, plain of draw 1, ...), so that two
    workers train two draws' sources side by side instead of one waiting for the other's teachers."""
    per_draw = []
    for d in args.draws:
        mine = [j for j in todo if j.get("draw") == d]
        arms = {j["arm"] for j in mine}
        items = [(d, ("teachers",))] if arms else []
        if "mpt_plain" in arms:
            items.append((d, ("student", False, len(args.sources))))
        ks = sorted({j["num_sources"] for j in mine if j["arm"] == "mpt_distill"}, reverse=True)
        per_draw.append(items + [(d, ("student", True, k)) for k in ks])
    return [item for group in itertools.zip_longest(*per_draw) for item in group if item is not None]


def source_name(item: tuple) -> str:
    draw, what = item
    base = "source_teachers" if what[0] == "teachers" else \
        f"source_{'mpt_distill' if what[1] else 'mpt_plain'}_k{what[2]}"
    return base + draw_suffix(draw)


def work(args, queue, label: str = "") -> None:
    """Take jobs from ``queue`` until a ``None``: sources (trained once, under a lock) and target runs."""
    if args.workers > 1:
        torch.set_num_threads(1)
    dirs = runs_dirs(args)
    model, tokenizer = load(args)
    tasks = {}
    sources = {d: Sources(args, dirs[d], model, tokenizer, make_recipe(args, d), tasks) for d in args.draws}
    n_all = len(args.sources)
    while (item := queue.get()) is not None:
        kind, what = item
        if kind == "source":
            draw, spec = what
            sources[draw].teachers() if spec[0] == "teachers" else sources[draw].student(spec[1], spec[2])
            continue
        index, total, job = what
        if cached_run(args, dirs, job) is not None:
            continue
        result = run_one(args, sources[job.get("draw", args.draws[0])], job)
        store_run(args, dirs, job, result)
        print(f"{label}  [{index}/{total}] {run_name(job, n_all)}: {result['accuracy']:.3f} "
              f"({result['train_seconds']:.0f} s train, {result['eval_seconds']:.0f} s eval)", flush=True)


def run_queue(args, items: list) -> None:
    """Run ``items`` in this process (``--workers 1``) or in ``args.workers`` forked one-thread processes."""
    import multiprocessing
    import queue as queues

    if args.workers == 1:
        q = queues.SimpleQueue()
        for item in [*items, None]:
            q.put(item)
        work(args, q)
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        raise SystemExit("--workers > 1 needs the 'fork' start method (Linux, macOS); on this system run "
                         "--workers 1.")
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    for item in [*items, *[None] * args.workers]:
        q.put(item)
    procs = [ctx.Process(target=work, args=(args, q, f"[worker {w}]"), daemon=False) for w in range(args.workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    failed = [w for w, proc in enumerate(procs) if proc.exitcode != 0]
    if failed:
        raise SystemExit(f"workers {failed} failed (exit codes {[procs[w].exitcode for w in failed]}); what "
                         "finished is cached: rerun the same command to continue.")


def _source_fields(args, name: str, recipe) -> dict:
    """The hashed fields of source ``name`` (without its draw suffix: the draw is the recipe's seed)."""
    if name == "source_teachers":
        return {"kind": "teachers", "sources": args.sources}
    k = int(name.rsplit("_k", 1)[1])
    return {"kind": name, "sources": args.sources[:k], "steps": distill_steps_for(recipe, k, len(args.sources))}


def current_sources(args, dirs: dict[int, RunsDir]) -> dict:
    """``{source name: its info}`` for the trained sources in the cache that match the current settings:
    ``source_teachers``, ``source_mpt_plain_k5``, ``source_mpt_distill_k<k>``, with ``_d<draw>`` after draw 0."""
    n = len(args.sources)
    logs = {}
    for d, runs in dirs.items():
        recipe = make_recipe(args, d)
        for base in ["source_teachers", f"source_mpt_plain_k{n}", *[f"source_mpt_distill_k{k}" for k in
                                                                     [*args.sweep, n]]]:
            scope = "teachers" if base == "source_teachers" else "source"
            fields = _source_fields(args, base, recipe)
            name = base + draw_suffix(d)
            if (runs.file(name, fields, ".safetensors", scope=scope).exists()
                    and (info := runs.get(name, fields, scope=scope)) is not None):
                logs[name] = info
    return dict(sorted(logs.items()))


def record_invocation(args, t_start: float, *, planned: int, cached: int, new: int, draws_trained: list,
                      sources_before: dict, sources_after: dict) -> None:
    """Leave this invocation's wall time in the runs dir (``invocation-<UTC time>.json``): what it started from,
    what it trained, with how many workers. The report finds the one that did the whole run."""
    from softprompt.atomic import atomic_write_json

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    atomic_write_json(Path(args.runs_dir) / f"invocation-{stamp}.json", {
        "finished_utc": stamp, "wall_seconds": time.perf_counter() - t_start, "workers": args.workers,
        "threads_per_worker": 1 if args.workers > 1 else torch.get_num_threads(), "cpus": os.cpu_count(),
        "cpu": cpu_model(), "settings": settings_key(args), "draws": args.draws, "draws_trained": draws_trained,
        "target_runs_planned": planned, "target_runs_cached_at_start": cached, "target_runs_new": new,
        "sources_cached_at_start": sorted(sources_before),
        "sources_new": sorted(set(sources_after) - set(sources_before)),
    })


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), or what ``platform`` knows: another CPU rounds differently."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def settings_key(args) -> str:
    """A hash of the design (but the draws) and every setting: invocations of another design are not this
    benchmark's clock. Without the draws, so that the invocation that built draw 0 still counts."""
    runs = RunsDir(args.runs_dir, args.model, recipe_dict(make_recipe(args, 0)), args.test_examples,
                   args.val_examples)
    design = {"sources": args.sources, "main": args.main_target, "control": args.control_target, "seeds": args.seeds,
              "shots": args.shots, "control_shots": args.control_shots, "sweep": args.sweep, "arms": args.arms}
    return digest(runs.bases["target"] | {"design": design})


def invocations(args) -> list[dict]:
    """The recorded invocations of this design and these settings, oldest first (before draws: draw 0)."""
    key = settings_key(args)
    files = sorted(Path(args.runs_dir).glob("invocation-*.json")) if Path(args.runs_dir).exists() else []
    return [{"draws": [0]} | r for f in files if (r := json.loads(f.read_text())).get("settings") == key]


def timing_of(args, finished: list[dict], logs: dict, jobs: list[dict], t_invocation: float) -> dict:
    timing = {"target_runs_wall_seconds": sum(r["wall_seconds"] for r in finished),
              # CPU time of this process (1 thread: about the wall time on an otherwise idle core); runs
              # recorded before it was measured are absent from the count
              "target_runs_cpu_seconds": sum(r["cpu_seconds"] for r in finished if "cpu_seconds" in r),
              "runs_with_cpu_seconds": sum("cpu_seconds" in r for r in finished),
              "source_training_seconds": sum(v.get("seconds", 0.0) for v in logs.values()),
              "runs_finished": len(finished), "runs_planned": len(jobs),
              "this_invocation_seconds": time.perf_counter() - t_invocation,
              "per_run_wall_seconds": {"mean": (sum(r["wall_seconds"] for r in finished) / len(finished))
                                       if finished else None}}
    # a run's wall time includes a source trained inside it (when no worker had trained it first): count
    # training and evaluation only, and the sources once
    timing["target_runs_train_eval_seconds"] = sum(r["train_seconds"] + r["eval_seconds"] for r in finished)
    timing["total_compute_seconds"] = timing["target_runs_train_eval_seconds"] + timing["source_training_seconds"]
    # every run uses one thread, so two workers fill 2 cores: about half the summed time. An estimate, not a clock
    timing["two_workers_wall_hours_estimate"] = timing["total_compute_seconds"] / 2 / 3600
    # the clocks: the invocation that trained every source and every run from an empty cache, if one did; and
    # every invocation that trained part of this cache (e.g. draw 0 in one, the later draws in another)
    recorded = invocations(args)
    whole = [r for r in recorded if r["target_runs_cached_at_start"] == 0 and not r["sources_cached_at_start"]
             and r["target_runs_new"] == r["target_runs_planned"] == len(jobs)]
    timing["full_run"] = whole[-1] | {"wall_hours": whole[-1]["wall_seconds"] / 3600} if whole else None
    timing["invocations"] = [{k: r.get(k) for k in ("finished_utc", "wall_seconds", "workers", "cpus", "cpu",
                                                    "draws", "draws_trained", "target_runs_new", "sources_new")}
                             for r in recorded]
    timing["cache_wall_hours"] = sum(r["wall_seconds"] for r in recorded) / 3600 if recorded else None
    return timing


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_invocation = time.perf_counter()
    from softprompt.atomic import atomic_write_json

    recipe = make_recipe(args, args.draws[0])
    dirs = runs_dirs(args)
    jobs = plan(args)
    n_all = len(args.sources)
    todo = [j for j in jobs if cached_run(args, dirs, j) is None]
    sources_before = current_sources(args, dirs)
    print(f"plan: {len(jobs)} target runs ({len(jobs) - len(todo)} cached), {len(args.draws)} source draws x "
          f"{len(args.seeds)} seeds for the source arms, {len(args.seeds)} seeds for the others, "
          f"{recipe.target_steps} steps each (batch {recipe.batch_size}), {args.test_examples} test examples; "
          f"sources per draw: {len(args.sources)} teachers x {recipe.teacher_steps} steps, "
          f"{2 + len(args.sweep)} MPT sources x {recipe.distill_steps} steps (x k/{len(args.sources)} for k sources)",
          flush=True)
    for d in args.draws:
        mine = [j for j in jobs if j.get("draw", args.draws[0]) == d]
        print(f"  draw {d}: {len(mine)} target runs, {sum(j in todo for j in mine)} to run", flush=True)
    if args.max_runs is not None:
        todo = todo[:args.max_runs]
    to_train = [n for item in source_jobs(args, todo) if (n := source_name(item)) not in sources_before]
    print(f"sources: {len(sources_before)} cached, {len(to_train)} to train"
          + (f" ({', '.join(to_train)})" if to_train else ""), flush=True)
    if args.dry_run:
        return {"planned": len(jobs), "cached": len(jobs) - len(todo), "todo": todo,
                "sources_cached": sorted(sources_before), "sources_to_train": to_train}
    if not args.report_only and todo:
        try:
            run_queue(args, [("source", item) for item in source_jobs(args, todo)]
                      + [("target", (jobs.index(j) + 1, len(jobs), j)) for j in todo])
        finally:  # also when a worker failed: what it finished is cached, and its wall time counts
            new = sum(cached_run(args, dirs, j) is not None for j in todo)
            record_invocation(args, t_invocation, planned=len(jobs), cached=len(jobs) - len(todo), new=new,
                              draws_trained=sorted({j.get("draw", args.draws[0]) for j in todo}),
                              sources_before=sources_before, sources_after=current_sources(args, dirs))

    # the report reads only the cache: the same tables whichever session ran which runs
    finished = [r for j in jobs if (r := cached_run(args, dirs, j)) is not None]
    logs = current_sources(args, dirs)
    spot_by_draw = {}
    for d in args.draws:
        for t in (args.main_target, args.control_target):
            fields = {"kind": "spot", "target": t, "sources": args.sources}
            if (choice := dirs[d].get(f"spot_{t}{draw_suffix(d)}", fields, scope="teachers")) is not None:
                spot_by_draw.setdefault(str(d), {})[t] = choice
    spot = spot_by_draw.get(str(args.draws[0]), {})  # the first draw's, as before there were draws
    timing = timing_of(args, finished, logs, jobs, t_invocation)
    summary = summarize(args, finished, logs, spot, timing)
    summary["spot_by_draw"] = {d: {t: c["source"] for t, c in v.items()} for d, v in spot_by_draw.items()}
    summary["teachers_by_draw"] = {str(d): logs[name]["val_accuracy"] for d in args.draws
                                   if (name := "source_teachers" + draw_suffix(d)) in logs}
    print_report(args, summary)
    print(f"\n{len(finished)}/{len(jobs)} runs finished; compute so far {timing['total_compute_seconds']:.0f} s "
          f"(target runs {timing['target_runs_train_eval_seconds']:.0f} s training and evaluation, sources "
          f"{timing['source_training_seconds']:.0f} s); this invocation {timing['this_invocation_seconds']:.0f} s")
    if timing["full_run"]:
        f = timing["full_run"]
        print(f"the whole run from an empty cache: {f['wall_hours']:.2f} h wall ({f['workers']} workers, "
              f"{f['cpus']} cpus, finished {f['finished_utc']})")
    elif timing["cache_wall_hours"] is not None:
        print(f"the cache was built by {len(timing['invocations'])} invocations, "
              f"{timing['cache_wall_hours']:.2f} h wall in all")
    out = {
        "benchmark": "mpt_transfer",
        "complete": len(finished) == len(jobs),
        "design": {"sources": args.sources, "main_target": args.main_target, "control_target": args.control_target,
                   "seeds": args.seeds, "draws": args.draws, "shots": args.shots, "control_shots": args.control_shots,
                   "sweep": [*args.sweep, n_all], "sweep_shots": args.sweep_shots, "arms": args.arms,
                   "source_arms": [a for a in args.arms if a in SOURCE_ARMS],
                   "reference_arm": REFERENCE, "test_examples": args.test_examples,
                   "val_examples": args.val_examples, "model": args.model, "recipe": recipe_dict(recipe),
                   "source_draws": "draw d trains the teachers and the MPT sources with recipe seed d (the recipe "
                                   "above is the first draw's); every source arm runs on every draw x target seed "
                                   "(crossed), the vanilla arms once per target seed",
                   "interval": "95% two-level percentile bootstrap (softprompt.stats.two_level_bootstrap, "
                               f"{args.n_boot} replicates: draws, then the same seeds in each draw); paired "
                               "differences paired by draw and seed; mixed_t: the crossed random-effects t interval "
                               "(Satterthwaite df) clipped to the range, a conservative check",
                   "n_boot": args.n_boot},
        "machine": {"platform": platform.system(), "cpus": os.cpu_count(), "cpu": cpu_model(),
                    "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
                    "torch": torch.__version__},
        **summary,
        "runs_dir": project_relative(str(Path(args.runs_dir).resolve())),
    }
    atomic_write_json(args.out, out)
    if finished:
        plot(args, summary, args.figure)
    print(f"wrote {project_relative(str(Path(args.out).resolve()))}")
    return out


if __name__ == "__main__":
    main()
