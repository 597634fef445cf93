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

Seeds change the few-shot sample, the data order and the random/sampled inits; the teachers and the MPT
sources are trained once (recipe seed 0) and shared by every seed, so the intervals measure target-stage
variation only. Each arm: mean over seeds with a 95% t interval (``softprompt.stats``) and, paired by
seed, the difference ``mpt_distill - arm`` with its 95% interval. On one machine and thread count a rerun
repeats the numbers (checked for one full-size target run, and for every number of ``--quick`` with one and
two workers); another CPU rounds differently, and the sources, trained once, then come out
different (the first full run, ``mpt_transfer_earlier_run.json``, against this one: see the README).

Resumable: every finished target run is one small JSON file, every trained source one safetensors
file (+ JSON), under ``--runs-dir`` (committed: ``benchmarks/results/mpt_runs``). A rerun skips what is
there, even in a fresh clone; a file's name carries a hash of every setting that shapes it. Runs go
seed by seed, so an interrupted benchmark has all arms for its first seeds. ``--workers N`` runs the same
queue in N one-thread processes (sources first, each trained once under a file lock); every invocation
that trains something leaves its wall time in ``invocation-*.json``, and the report quotes the wall time
of the invocation that did the whole run from an empty cache (``timing.full_run``).

    python benchmarks/bench_mpt_transfer.py --workers 2              # the full run on 2 cores (resumes)
    python benchmarks/bench_mpt_transfer.py --report-only            # tables, JSON, figure from the cache
    python benchmarks/bench_mpt_transfer.py --quick --out-dir /tmp/q # tiny model, seconds (tests use it)

Results: ``softprompt/data/results/mpt_transfer.json`` and ``benchmarks/results/mpt_transfer.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
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
ARMS = ("random", "sample_vocab", "text", "class_labels", "spot", "mpt_plain", "mpt_distill")
REFERENCE = "mpt_distill"  # the arm every other is compared with, paired by seed
DEFAULT_RUNS = HERE / "results" / "mpt_runs"
DEFAULT_OUT = ROOT / "softprompt" / "data" / "results" / "mpt_transfer.json"
DEFAULT_FIGURE = HERE / "results" / "mpt_transfer.png"
SOURCES = "yn_membership,yn_colors,yn_schedule,yn_review,entailment"


def project_relative(value):
    """A path under the project as a relative path (results files must not name this machine's directories)."""
    if isinstance(value, str) and Path(value).is_absolute():
        p = Path(value).resolve()
        return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else "<outside the project>"
    return value


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--sources", default=SOURCES, help="comma-separated source tasks, in the sweep's nested order")
    p.add_argument("--main-target", default="yn_facts")
    p.add_argument("--control-target", default="intent")
    p.add_argument("--seeds", default="0,1,2,3,4")
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
        args.seeds, args.shots, args.control_shots, args.sweep = "0,1", "4,8", "8", "1,2"
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
    args.seeds, args.shots, args.control_shots, args.sweep = (_ints(args.seeds), _ints(args.shots),
                                                              _ints(args.control_shots), _ints(args.sweep))
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


def make_recipe(args):
    from softprompt.mpt import MPTRecipe

    changes = {k: getattr(args, a) for k, a in (
        ("num_virtual_tokens", "num_virtual_tokens"), ("batch_size", "batch_size"), ("teacher_steps", "teacher_steps"),
        ("distill_steps", "distill_steps"), ("target_steps", "target_steps")) if getattr(args, a) is not None}
    return MPTRecipe(max_length=args.max_length, seed=0, **changes)


def recipe_dict(recipe) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(recipe).items()}


def digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------- the plan
def plan(args) -> list[dict]:
    """Every target run, in the order they run: seed by seed, so a partial benchmark is balanced across arms."""
    settings = [(args.main_target, n) for n in args.shots if n == args.sweep_shots]
    settings += [(args.control_target, n) for n in args.control_shots]
    settings += [(args.main_target, n) for n in args.shots if n != args.sweep_shots]
    jobs = []
    for seed in args.seeds:
        for target, shots in settings:
            jobs += [dict(target=target, arm=arm, shots=shots, seed=seed, num_sources=len(args.sources))
                     for arm in args.arms]
            if target == args.main_target and shots == args.sweep_shots and "mpt_distill" in args.arms:
                jobs += [dict(target=target, arm="mpt_distill", shots=shots, seed=seed, num_sources=k)
                         for k in args.sweep]
    return jobs


def run_name(job: dict, n_all: int) -> str:
    sweep = "" if job["num_sources"] == n_all else f"_k{job['num_sources']}"
    return f"{job['target']}_{job['arm']}{sweep}_n{job['shots']}_s{job['seed']}"


# ---------------------------------------------------------------------------------------------- the cache
TARGET_FIELDS = ("num_virtual_tokens", "batch_size", "max_length", "target_steps")
TEACHER_FIELDS = ("num_virtual_tokens", "batch_size", "max_length", "teacher_steps", "teacher_init", "seed")
SOURCE_FIELDS = (*TEACHER_FIELDS, "num_ranks", "distill_steps", "distill_weight", "temperature", "hidden_layers",
                 "student_init", "distill_lr")


class RunsDir:
    """One JSON file per finished run (and one safetensors per trained source); atomic writes.

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
    """The trained teachers and MPT sources, each trained once, cached in the runs dir, loaded lazily."""

    def __init__(self, args, runs: RunsDir, model, tokenizer, recipe):
        self.args, self.runs, self.model, self.tok, self.recipe = args, runs, model, tokenizer, recipe
        self.tasks = {}
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
        with locked(self.runs.path, "source_teachers"):
            return self._load_or_train_teachers()

    def _load_or_train_teachers(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        from softprompt.atomic import atomic_save_safetensors
        from softprompt.mpt import train_teachers, vanilla_prompt_model

        fields = {"kind": "teachers", "sources": self.args.sources}
        path = self.runs.file("source_teachers", fields, ".safetensors", scope="teachers")
        info = self.runs.get("source_teachers", fields, scope="teachers")
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
            self.runs.put("source_teachers", fields, info, scope="teachers")
            print(f"teachers: {seconds:.0f} s, validation accuracy {val}", flush=True)
        self.log["teachers"] = info
        return self._teachers

    def student(self, distill: bool, k: int):
        """The MPT source on the first ``k`` sources, with or without distillation."""
        name = f"source_{'mpt_distill' if distill else 'mpt_plain'}_k{k}"
        if name in self._students:
            return self._students[name]
        with locked(self.runs.path, name):
            return self._load_or_train_student(distill, k, name)

    def _load_or_train_student(self, distill: bool, k: int, name: str):
        from safetensors.torch import load_file

        from softprompt.atomic import atomic_save_safetensors
        from softprompt.mpt import distill as run_distill

        names = self.args.sources[:k]
        steps = self.distill_steps(k)
        fields = {"kind": name, "sources": names, "steps": steps}
        path = self.runs.file(name, fields, ".safetensors", scope="source")
        info = self.runs.get(name, fields, scope="source")
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
            self.runs.put(name, fields, info, scope="source")
            print(f"{name}: {seconds:.0f} s, validation accuracy {val}, "
                  f"|ΔP*|/|P*0| {info['p_star_rel_change']:.3f}", flush=True)
        self.log[name] = info
        self._students[name] = tensors
        return tensors

    def distill_steps(self, k: int) -> int:
        return distill_steps_for(self.recipe, k, len(self.args.sources))

    def spot(self, target: str) -> dict:
        """The teacher whose prompt scores best on the target's validation split, before any target training."""
        with locked(self.runs.path, f"spot_{target}"):
            return self._load_or_choose_spot(target)

    def _load_or_choose_spot(self, target: str) -> dict:
        from softprompt import evaluate
        from softprompt.mpt import vanilla_prompt_model

        fields = {"kind": "spot", "target": target, "sources": self.args.sources}
        cached = self.runs.get(f"spot_{target}", fields, scope="teachers")
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
        self.runs.put(f"spot_{target}", fields, choice, scope="teachers")
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
def summarize(args, runs: list[dict], sources_log: dict, spot: dict, timing: dict) -> dict:
    from softprompt.stats import mean_ci, paired_difference

    n_all = len(args.sources)
    settings = {}
    for r in runs:
        key = f"{r['target']}/{r['shots']}"
        arm = r["arm"] if r["num_sources"] == n_all else f"{r['arm']}_k{r['num_sources']}"
        settings.setdefault(key, {}).setdefault(arm, {})[r["seed"]] = r["accuracy"]
    table = {}
    for key, arms in settings.items():
        entry = {"arms": {}, "paired_vs_" + REFERENCE: {}}
        for arm, by_seed in arms.items():
            seeds = sorted(by_seed)
            entry["arms"][arm] = mean_ci([by_seed[s] for s in seeds]) | {"seeds": seeds,
                                                                          "values": [by_seed[s] for s in seeds]}
        ref = arms.get(REFERENCE, {})
        for arm, by_seed in arms.items():
            common = sorted(set(ref) & set(by_seed))
            if arm != REFERENCE and len(common) >= 2:
                entry["paired_vs_" + REFERENCE][arm] = paired_difference(
                    [ref[s] for s in common], [by_seed[s] for s in common]) | {"seeds": common}
        table[key] = entry
    sweep = {}
    key = f"{args.main_target}/{args.sweep_shots}"
    if key in settings:
        arms = settings[key]
        for k in [*args.sweep, n_all]:
            arm = REFERENCE if k == n_all else f"{REFERENCE}_k{k}"
            if arm in arms:
                sweep[str(k)] = table[key]["arms"][arm] | {"sources": args.sources[:k]}
                rand = arms.get("random", {})
                common = sorted(set(rand) & set(arms[arm]))
                if len(common) >= 2:
                    sweep[str(k)]["paired_vs_random"] = paired_difference(
                        [arms[arm][s] for s in common], [rand[s] for s in common])
    return {"settings": table, "source_count_sweep": sweep, "spot": spot, "sources": sources_log,
            "timing": timing}


def print_report(args, summary: dict) -> None:
    for key, entry in summary["settings"].items():
        print(f"\n{key} (target/shots): test accuracy, mean [95% CI] over seeds; "
              f"paired difference {REFERENCE} - arm [95% CI]")
        print("| arm | n | mean [95% CI] | paired diff vs mpt_distill [95% CI] |")
        print("|---|---|---|---|")
        for arm, s in entry["arms"].items():
            ci = f"[{s['low']:.3f}, {s['high']:.3f}]" if s["low"] is not None else "[-]"
            d = entry["paired_vs_" + REFERENCE].get(arm)
            ds = f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else ""
            print(f"| {arm} | {s['n']} | {s['mean']:.3f} {ci} | {ds} |")
    if summary["source_count_sweep"]:
        print(f"\nsource-count sweep ({args.main_target}, {args.sweep_shots} examples):")
        for k, s in summary["source_count_sweep"].items():
            ci = f"[{s['low']:.3f}, {s['high']:.3f}]" if s["low"] is not None else "[-]"
            print(f"  {k} sources: {s['mean']:.3f} {ci} (n={s['n']})")


def plot(args, summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(summary["settings"].items())
    sweep = summary["source_count_sweep"]
    fig, axes = plt.subplots(1, len(panels) + bool(sweep), figsize=(3.3 * (len(panels) + bool(sweep)), 3.6),
                             squeeze=False)
    for ax, (key, entry) in zip(axes[0], panels):
        arms = [a for a in ARMS if a in entry["arms"]]
        means = [entry["arms"][a]["mean"] for a in arms]
        errs = [entry["arms"][a]["half_width"] or 0.0 for a in arms]
        ax.errorbar(range(len(arms)), means, yerr=errs, fmt="o", capsize=3)
        ax.set_xticks(range(len(arms)), arms, rotation=60, ha="right", fontsize=7)
        n = max(entry["arms"][a]["n"] for a in arms)
        ax.set_title(f"{key.replace('/', ', ')} shots (n≤{n})", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (mean, 95% CI)")
    if sweep:
        ax = axes[0][-1]
        ks = [int(k) for k in sweep]
        ax.errorbar(ks, [sweep[k]["mean"] for k in sweep], yerr=[sweep[k]["half_width"] or 0.0 for k in sweep],
                    fmt="o-", capsize=3)
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
    """The sources the pending target runs need: the teachers first (SPoT uses them, and both MPT sources start
    P* from their mean, so a second worker waits for them, about 5 of the run's ~90 minutes on 2 cores), then
    the plain MPT source, then the distilled ones, most sources first."""
    arms = {j["arm"] for j in todo}
    items = [("teachers",)] if arms & {"spot", "mpt_plain", "mpt_distill"} else []
    if "mpt_plain" in arms:
        items.append(("student", False, len(args.sources)))
    ks = sorted({j["num_sources"] for j in todo if j["arm"] == "mpt_distill"}, reverse=True)
    return items + [("student", True, k) for k in ks]


def work(args, queue, label: str = "") -> None:
    """Take jobs from ``queue`` until a ``None``: sources (trained once, under a lock) and target runs."""
    if args.workers > 1:
        torch.set_num_threads(1)
    recipe = make_recipe(args)
    runs_dir = RunsDir(args.runs_dir, args.model, recipe_dict(recipe), args.test_examples, args.val_examples)
    model, tokenizer = load(args)
    sources = Sources(args, runs_dir, model, tokenizer, recipe)
    n_all = len(args.sources)
    while (item := queue.get()) is not None:
        kind, what = item
        if kind == "source":
            sources.teachers() if what[0] == "teachers" else sources.student(what[1], what[2])
            continue
        index, total, job = what
        name = run_name(job, n_all)
        if runs_dir.get(name, job, scope=RunsDir.scope_of(job)) is not None:
            continue
        result = run_one(args, sources, job)
        runs_dir.put(name, job, result, scope=RunsDir.scope_of(job))
        print(f"{label}  [{index}/{total}] {name}: {result['accuracy']:.3f} "
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


def current_sources(args, runs_dir: RunsDir, recipe) -> dict:
    """``{source name: its info}`` for the trained sources in the cache that match the current settings."""
    logs = {}
    for f in sorted(Path(args.runs_dir).glob("source_*.json")) if Path(args.runs_dir).exists() else []:
        stem = f.stem.rsplit("-", 1)
        scope = "teachers" if stem[0] == "source_teachers" else "source"
        if len(stem) == 2 and runs_dir.file(stem[0], _source_fields(args, stem[0], recipe), scope=scope).name == f.name:
            logs[stem[0]] = json.loads(f.read_text())
    return logs


def record_invocation(args, runs_dir: RunsDir, recipe, t_start: float, *, planned: int, cached: int, new: int,
                      sources_before: dict) -> None:
    """Leave this invocation's wall time in the runs dir (``invocation-<UTC time>.json``): what it started from,
    what it trained, with how many workers. The report finds the one that did the whole run."""
    from softprompt.atomic import atomic_write_json

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    sources_after = current_sources(args, runs_dir, recipe)
    atomic_write_json(Path(args.runs_dir) / f"invocation-{stamp}.json", {
        "finished_utc": stamp, "wall_seconds": time.perf_counter() - t_start, "workers": args.workers,
        "threads_per_worker": 1 if args.workers > 1 else torch.get_num_threads(), "cpus": os.cpu_count(),
        "settings": settings_key(args, runs_dir),
        "target_runs_planned": planned, "target_runs_cached_at_start": cached, "target_runs_new": new,
        "sources_cached_at_start": sorted(sources_before),
        "sources_new": sorted(set(sources_after) - set(sources_before)),
    })


def settings_key(args, runs_dir: RunsDir) -> str:
    """A hash of the design and every setting: invocations of another design are not this benchmark's clock."""
    design = {"sources": args.sources, "main": args.main_target, "control": args.control_target, "seeds": args.seeds,
              "shots": args.shots, "control_shots": args.control_shots, "sweep": args.sweep, "arms": args.arms}
    return digest(runs_dir.bases["target"] | {"design": design})


def invocations(args, runs_dir: RunsDir) -> list[dict]:
    """The recorded invocations of this design and these settings, oldest first."""
    key = settings_key(args, runs_dir)
    files = sorted(Path(args.runs_dir).glob("invocation-*.json")) if Path(args.runs_dir).exists() else []
    return [r for f in files if (r := json.loads(f.read_text())).get("settings") == key]


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_invocation = time.perf_counter()
    from softprompt.atomic import atomic_write_json

    recipe = make_recipe(args)
    runs_dir = RunsDir(args.runs_dir, args.model, recipe_dict(recipe), args.test_examples, args.val_examples)
    jobs = plan(args)
    n_all = len(args.sources)
    todo = [j for j in jobs if runs_dir.get(run_name(j, n_all), j, scope=RunsDir.scope_of(j)) is None]
    print(f"plan: {len(jobs)} target runs ({len(jobs) - len(todo)} cached), {len(args.seeds)} seeds, "
          f"{recipe.target_steps} steps each (batch {recipe.batch_size}), {args.test_examples} test examples; "
          f"sources: {len(args.sources)} teachers x {recipe.teacher_steps} steps, "
          f"{2 + len(args.sweep)} MPT sources x {recipe.distill_steps} steps (x k/{len(args.sources)} for k sources)",
          flush=True)
    if args.max_runs is not None:
        todo = todo[:args.max_runs]
    sources_before = current_sources(args, runs_dir, recipe)
    if not args.report_only and todo:
        queue = [("source", item) for item in source_jobs(args, todo)]
        queue += [("target", (jobs.index(j) + 1, len(jobs), j)) for j in todo]
        run_queue(args, queue)
        record_invocation(args, runs_dir, recipe, t_invocation, planned=len(jobs), cached=len(jobs) - len(todo),
                          new=len(todo), sources_before=sources_before)

    # the report reads only the cache: the same tables whichever session ran which runs
    finished = [r for j in jobs if (r := runs_dir.get(run_name(j, n_all), j, scope=RunsDir.scope_of(j))) is not None]
    logs = current_sources(args, runs_dir, recipe)
    spot = {t: runs_dir.get(f"spot_{t}", {"kind": "spot", "target": t, "sources": args.sources}, scope="teachers")
            for t in (args.main_target, args.control_target)}
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
    # the clock: the invocation that trained every source and every run from an empty cache, if one did
    whole = [r for r in invocations(args, runs_dir) if r["target_runs_cached_at_start"] == 0
             and not r["sources_cached_at_start"] and r["target_runs_new"] == r["target_runs_planned"] == len(jobs)]
    timing["full_run"] = whole[-1] | {"wall_hours": whole[-1]["wall_seconds"] / 3600} if whole else None
    summary = summarize(args, finished, logs, spot, timing)
    print_report(args, summary)
    print(f"\n{len(finished)}/{len(jobs)} runs finished; compute so far {timing['total_compute_seconds']:.0f} s "
          f"(target runs {timing['target_runs_train_eval_seconds']:.0f} s training and evaluation, sources "
          f"{timing['source_training_seconds']:.0f} s); this invocation {timing['this_invocation_seconds']:.0f} s")
    if timing["full_run"]:
        f = timing["full_run"]
        print(f"the whole run from an empty cache: {f['wall_hours']:.2f} h wall ({f['workers']} workers, "
              f"{f['cpus']} cpus, finished {f['finished_utc']})")
    out = {
        "benchmark": "mpt_transfer",
        "complete": len(finished) == len(jobs),
        "design": {"sources": args.sources, "main_target": args.main_target, "control_target": args.control_target,
                   "seeds": args.seeds, "shots": args.shots, "control_shots": args.control_shots,
                   "sweep": [*args.sweep, n_all], "sweep_shots": args.sweep_shots, "arms": args.arms,
                   "reference_arm": REFERENCE, "test_examples": args.test_examples,
                   "val_examples": args.val_examples, "model": args.model, "recipe": recipe_dict(recipe),
                   "shared_across_seeds": "teachers and MPT sources are trained once (recipe seed 0)",
                   "interval": "95% Student t interval over seeds; paired differences paired by seed"},
        "machine": {"platform": platform.system(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": sys.version.split()[0], "torch": torch.__version__},
        **summary,
        "runs_dir": project_relative(str(Path(args.runs_dir).resolve())),
    }
    atomic_write_json(args.out, out)
    if finished:
        plot(args, summary, args.figure)
    print(f"wrote {project_relative(str(Path(args.out).resolve()))}")
    return out


def _source_fields(args, name: str, recipe) -> dict:
    if name == "source_teachers":
        return {"kind": "teachers", "sources": args.sources}
    k = int(name.rsplit("_k", 1)[1])
    return {"kind": name, "sources": args.sources[:k], "steps": distill_steps_for(recipe, k, len(args.sources))}


if __name__ == "__main__":
    main()
