"""Does multitask prompt tuning transfer? Few-shot target accuracy after six different starts.

Wang et al. 2023 (MPT) train one prompt per source task (teachers), distill them into a shared
prompt P* with rank-r task factors, and start a new target task from P* and the averaged
factors. This script runs that pipeline on the offline default model and the built-in tasks and
compares, on a target task that is not among the sources, the test accuracy after the same
few-shot training (same examples, steps, optimizer) from:

    random         vanilla prompt, RANDOM init (vocabulary-norm scaled)
    text           vanilla prompt, TEXT init from the task description's first clause (up to '.' or ':')
    class_labels   vanilla prompt, CLASS_LABELS init (Lester et al. §3.2)
    spot           vanilla prompt, init = the one teacher prompt that scores best on the target's
                   validation split before training (SPoT-style retrieval; Vu et al. 2022 retrieve by
                   task similarity; we retrieve by zero-step accuracy, ties broken by the gold label's
                   mean log-probability)
    mpt_plain      MPT, no distillation (plain multitask training of P*, u, v: PEFT's example)
    mpt_distill    MPT with distillation (task loss + λ(KL + hidden MSE), Wang et al. §3.2)

Mean ± standard deviation over seeds; a seed changes the few-shot examples, the data order and
the random init. The teachers and the two distilled sources are trained once (seed 0) and shared
by every seed; they are cached under ``--cache-dir`` (delete it to retrain).

    python benchmarks/bench_mpt_transfer.py            # the full run (prints its total steps first)
    python benchmarks/bench_mpt_transfer.py --tiny     # a seconds-long smoke run on a tiny random model
    python benchmarks/bench_mpt_transfer.py --methods mpt_distill --ablate-rank 4   # rank 1 vs rank 4

Results: a table on stdout and ``softprompt/data/results/mpt_transfer.json`` (written atomically; shipped in the
package, ``softprompt.results.load_results("mpt_transfer")``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "softprompt" / "data" / "results" / "mpt_transfer.json"  # shipped in the package


def project_relative(value):
    """A path under the project as a relative path (results files must not name this machine's directories)."""
    if isinstance(value, str) and Path(value).is_absolute() and Path(value).resolve().is_relative_to(ROOT):
        return str(Path(value).resolve().relative_to(ROOT))
    return value
METHODS = ("random", "text", "class_labels", "spot", "mpt_plain", "mpt_distill")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--sources", default="sentiment_movies,topic,formality",
                   help="comma-separated source tasks (>= 3)")
    p.add_argument("--targets", default="arbitrary_sentiment", help="comma-separated held-out target tasks")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--num-virtual-tokens", type=int, default=8)
    p.add_argument("--num-ranks", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--teacher-steps", type=int, default=50)
    p.add_argument("--distill-steps", type=int, default=80)
    p.add_argument("--target-steps", type=int, default=25)
    p.add_argument("--target-examples", type=int, default=32)
    p.add_argument("--eval-examples", type=int, default=256, help="test examples per evaluation")
    p.add_argument("--spot-examples", type=int, default=64, help="validation examples to pick the SPoT source")
    p.add_argument("--distill-weight", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=None, help="every stage's lr (default: train()'s AdamW default)")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--cache-dir", default=str(HERE / "results" / "mpt_cache"))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--ablate-rank", type=int, default=0,
                   help="R > 0 adds the start mpt_distill_rankR: MPT with distillation at num_ranks=R (ablation)")
    p.add_argument("--device", default="cpu", help="cpu (the figures the README reports) or cuda")
    p.add_argument("--tiny", action="store_true", help="tiny random model, a few steps: checks the script runs")
    args = p.parse_args(argv)
    if args.tiny:
        args.model = "tiny-llama"
        args.teacher_steps, args.distill_steps, args.target_steps = 3, 3, 2
        args.eval_examples, args.spot_examples, args.target_examples = 16, 8, 8
        args.num_virtual_tokens, args.batch_size = 4, 4
        if args.out == str(OUT):
            args.out = str(HERE / "results" / "mpt_transfer_tiny.json")
    return args


def load(args):
    if args.model == "tiny-llama":
        from softprompt.testing import tiny_model, tiny_tokenizer

        return tiny_model("llama").to(args.device), tiny_tokenizer()
    from softprompt import load_model

    model, tokenizer = load_model(args.model)
    return model.to(args.device).eval(), tokenizer


def plan(args) -> dict:
    """The cost of the run in optimizer steps, printed before anything trains."""
    n_src, n_tgt = len(args.sources), len(args.targets)
    methods = args.methods
    seeds = len(args.seeds)
    distills = sum(m.startswith("mpt") for m in methods)
    teachers = n_src * args.teacher_steps if needs_teachers(methods) else 0
    steps = {
        "teachers": teachers,
        "distillation": distills * args.distill_steps,
        "target": n_tgt * len(methods) * seeds * args.target_steps,
    }
    steps["total"] = sum(steps.values())
    evals = n_tgt * (len(methods) * (seeds + 1) + 1)  # after training per seed, before it once, zero-shot
    return {"optimizer_steps": steps, "evaluations": evals, "examples_per_evaluation": args.eval_examples}


def needs_teachers(methods) -> bool:
    return any(m == "spot" or m.startswith("mpt_distill") for m in methods)


def source_settings(args, method: str) -> tuple[bool, int]:
    """(distill?, num_ranks) of an MPT start's source."""
    if method.startswith("mpt_distill_rank"):
        return True, int(method.removeprefix("mpt_distill_rank"))
    return method == "mpt_distill", args.num_ranks


def cache_key(args, what: str) -> str:
    fields = {k: getattr(args, k) for k in ("model", "sources", "num_virtual_tokens", "batch_size", "teacher_steps",
                                           "lr", "max_length")}
    if what != "teachers":
        fields.update(what=what, distill_steps=args.distill_steps, num_ranks=source_settings(args, what)[1],
                      distill_weight=args.distill_weight)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def get_teachers(args, model, tokenizer, sources, recipe):
    from safetensors.torch import load_file

    from softprompt.atomic import atomic_save_safetensors
    from softprompt.mpt import train_teachers

    path = Path(args.cache_dir) / f"teachers-{cache_key(args, 'teachers')}.safetensors"
    if path.exists():
        print(f"teachers: cached {path}")
        return load_file(path), 0.0
    t0 = time.perf_counter()
    teachers = train_teachers(model, tokenizer, sources, recipe, progress=False, **train_kw(args))
    atomic_save_safetensors(path, teachers)
    return teachers, time.perf_counter() - t0


def get_source(args, model, tokenizer, sources, teachers, recipe, what: str):
    from softprompt import PromptModel
    from softprompt.atomic import atomic_write_json
    from softprompt.mpt import distill as run_distill

    distill, num_ranks = source_settings(args, what)
    path = Path(args.cache_dir) / f"{what}-{cache_key(args, what)}"
    if (path / "adapter_model.safetensors").exists():
        print(f"{what}: cached {path}")
        return PromptModel.from_pretrained(model, path), 0.0, json.loads((path / "distill_log.json").read_text())
    t0 = time.perf_counter()
    student, history, terms = run_distill(model, tokenizer, sources, teachers if distill else None,
                                          recipe.replace(distill=distill, num_ranks=num_ranks), progress=False,
                                          **train_kw(args))
    seconds = time.perf_counter() - t0
    student.save_pretrained(path)
    log = {"loss": history.loss, "terms": terms}
    atomic_write_json(path / "distill_log.json", log)
    return student, seconds, log


def train_kw(args) -> dict:
    return {} if args.lr is None else {"lr": args.lr}


def accuracy(model, tokenizer, task, n, split="test", **kw) -> float:
    from softprompt import evaluate

    return float(evaluate(model, tokenizer, task, split=split, max_examples=n, **kw)["accuracy"])


def spot_score(model, tokenizer, task, n) -> list[float]:
    """How good a start a source prompt is for ``task``: validation accuracy, then the mean log-probability
    of the gold label among the label words (breaks ties, e.g. when every source is at chance)."""
    from softprompt import evaluate

    r = evaluate(model, tokenizer, task, split="validation", max_examples=n, return_predictions=True)
    logp = torch.log_softmax(r["scores"].float(), -1)  # (N, K)
    gold = logp[torch.arange(len(r["labels"])), torch.tensor(r["labels"])].mean()
    return [float(r["accuracy"]), float(gold)]


def run_target(args, model, tokenizer, target, method, seed, teachers, sources_pm, spot_name, recipe,
               eval_before=True):
    """Build the start for ``method``, evaluate it (``eval_before``), train it few-shot, evaluate again."""
    from softprompt import train
    from softprompt.mpt import target_prompt_model, vanilla_prompt_model

    T = args.num_virtual_tokens
    task_kw: dict = {}
    if method.startswith("mpt"):
        pm = target_prompt_model(model, sources_pm[method], init="average", seed=seed)
        task_kw = {"task_id": 0}
    elif method == "spot":
        pm = vanilla_prompt_model(model, teachers[spot_name])
    elif method == "random":
        pm = vanilla_prompt_model(model, num_virtual_tokens=T, seed=seed)
    elif method == "text":
        pm = vanilla_prompt_model(model, num_virtual_tokens=T, tokenizer=tokenizer, prompt_tuning_init="TEXT",
                                  prompt_tuning_init_text=init_text(target), seed=seed)
    elif method == "class_labels":
        pm = vanilla_prompt_model(model, num_virtual_tokens=T, tokenizer=tokenizer,
                                  prompt_tuning_init="CLASS_LABELS",
                                  prompt_tuning_class_labels=list(target.label_words), seed=seed)
    else:
        raise ValueError(f"unknown method {method!r}; use some of {METHODS}")
    before = accuracy(pm, tokenizer, target, args.eval_examples, **task_kw) if eval_before else None
    t0 = time.perf_counter()
    history = train(pm, tokenizer, target, steps=args.target_steps, batch_size=args.batch_size,
                    train_examples=args.target_examples, seed=seed, max_length=args.max_length, progress=False,
                    **task_kw, **train_kw(args))
    seconds = time.perf_counter() - t0
    after = accuracy(pm, tokenizer, target, args.eval_examples, **task_kw)
    return {"before": before, "after": after, "train_seconds": seconds, "final_loss": history.loss[-1][1]}


def init_text(task) -> str:
    """The description's first clause: what a user would write, without any label mapping it may spell out."""
    import re

    return re.split(r"[.:]", task.description, maxsplit=1)[0].strip()


def summarize(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": len(values)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.sources = [s for s in args.sources.split(",") if s]
    args.targets = [s for s in args.targets.split(",") if s]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    if args.ablate_rank > 0:
        args.methods.append(f"mpt_distill_rank{args.ablate_rank}")
    overlap = sorted(set(args.sources) & set(args.targets))
    if overlap:
        raise SystemExit(f"targets {overlap} are also sources; a target must be held out")
    if len(args.sources) < 3 and not args.tiny:
        raise SystemExit("use at least 3 source tasks")

    cost = plan(args)
    print(f"plan: {json.dumps(cost['optimizer_steps'])} optimizer steps (batch {args.batch_size}), "
          f"{cost['evaluations']} evaluations of {args.eval_examples} examples")
    print("      (one SmolLM2 step is about 0.8 s on 2 idle cores; a distillation step costs about 1.5 steps)")

    import softprompt as sp
    from softprompt.atomic import atomic_write_json
    from softprompt.mpt import MPTRecipe

    t_start = time.perf_counter()
    model, tokenizer = load(args)
    sources = [sp.load_task(n) for n in args.sources]
    targets = [sp.load_task(n) for n in args.targets]
    recipe = MPTRecipe(num_virtual_tokens=args.num_virtual_tokens, num_ranks=args.num_ranks,
                       batch_size=args.batch_size, max_length=args.max_length, teacher_steps=args.teacher_steps,
                       distill_steps=args.distill_steps, distill_weight=args.distill_weight,
                       target_steps=args.target_steps, target_examples=args.target_examples, seed=0)
    timings = {}
    teachers = None
    if needs_teachers(args.methods):
        teachers, timings["teachers_s"] = get_teachers(args, model, tokenizer, sources, recipe)
    sources_pm, logs = {}, {}
    for method in args.methods:
        if method.startswith("mpt"):
            sources_pm[method], timings[f"{method}_source_s"], logs[method] = get_source(
                args, model, tokenizer, sources, teachers, recipe, method)

    results = {}
    for target in targets:
        res = {"zero_shot": accuracy(model, tokenizer, target, args.eval_examples)}
        spot_name, spot_scores = None, {}
        if "spot" in args.methods:
            from softprompt.mpt import vanilla_prompt_model

            for name, prompt in teachers.items():
                spot_scores[name] = spot_score(vanilla_prompt_model(model, prompt), tokenizer, target,
                                               args.spot_examples)
            spot_name = max(spot_scores, key=lambda n: tuple(spot_scores[n]))
            res["spot_source"], res["spot_scores"] = spot_name, spot_scores
        runs = {}
        for method in args.methods:
            runs[method] = []
            for seed in args.seeds:
                r = run_target(args, model, tokenizer, target, method, seed, teachers, sources_pm, spot_name, recipe,
                               eval_before=seed == args.seeds[0])
                runs[method].append(dict(seed=seed, **r))
                start = "" if r["before"] is None else f"{r['before']:.3f} -> "
                print(f"  {target.name:22s} {method:13s} seed {seed}: {start}{r['after']:.3f}", flush=True)
        res["runs"] = runs
        res["summary"] = {m: {"after": summarize([r["after"] for r in rs]), "before_seed0": rs[0]["before"]}
                          for m, rs in runs.items()}
        results[target.name] = res
    total = time.perf_counter() - t_start

    print()
    for name, res in results.items():
        print(f"target {name}: zero-shot {res['zero_shot']:.3f}; few-shot {args.target_examples} examples x "
              f"{args.target_steps} steps (batch {args.batch_size}); test accuracy over {len(args.seeds)} seeds"
              + (f"; SPoT source: {res['spot_source']}" if res.get("spot_source") else ""))
        print(f"| start | before training (seed {args.seeds[0]}) | after training (mean ± std) | min | max |")
        print("|---|---|---|---|---|")
        for m, s in res["summary"].items():
            a = s["after"]
            print(f"| {m} | {s['before_seed0']:.3f} | {a['mean']:.3f} ± {a['std']:.3f} | {a['min']:.3f} | "
                  f"{a['max']:.3f} |")
        print()
    print(f"total wall time {total:.0f} s ({os.cpu_count()} cpus, torch threads {torch.get_num_threads()})")

    out = {
        "benchmark": "mpt_transfer",
        "args": {k: project_relative(v) for k, v in vars(args).items()},
        "plan": cost,
        "shared_across_seeds": "teachers and both MPT sources are trained once (seed 0) and shared by every seed",
        "timings_s": dict(timings, total=total),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": sys.version.split()[0], "torch": torch.__version__},
        "source_training": logs,
        "results": results,
    }
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
