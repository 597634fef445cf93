"""Why does MPT's shared prompt P* stay near its start? Measurements of the distillation stage.

Trains one teacher per source task (cached), then distils them with several recipes and measures,
for each: the student's validation accuracy on every source task (task id k) against its teacher's,
how far P* moved (``||P* - P*_0|| / ||P*_0||``), its best cosine to any vocabulary token (mean over
the T vectors; a random prompt scores about the same), the task prompts' cosine to P*
(``cos(P_k, P*)``, 1 while the rank-one factors stay at the identity), how far the task matrices moved
(``||u_k v_kᵀ - 1|| / ||1||``) and the loss terms at the start and the end.

    OMP_NUM_THREADS=1 python benchmarks/diagnose_mpt.py                       # every variant (cached per variant)
    OMP_NUM_THREADS=1 python benchmarks/diagnose_mpt.py --variants old,new    # some of them

The sources, the model and the teachers are ``bench_mpt_transfer.py``'s (its committed runs dir), so the
teachers train once for both. Results: ``softprompt/data/results/mpt_diagnosis.json`` (one entry per
variant; rerunning skips the done ones). The variant that is ``MPTRecipe``'s defaults is the benchmark's distilled
source of draw 0 on all sources (the same teachers, recipe and seed): it is read from the benchmark's cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "softprompt" / "data" / "results" / "mpt_diagnosis.json"
SOURCES = "yn_membership,yn_colors,yn_schedule,yn_review,entailment"

# name -> (MPTRecipe changes, train() keywords); "old" is the recipe before the fix (issue 13).
# ``distill_lr=None`` marks the runs made before MPTRecipe had it (train()'s lr 3e-2, or a train_kw lr).
PRE = dict(distill_lr=None)
VARIANTS = {
    "old": (dict(PRE, distill_steps=80, student_init="RANDOM", distill=True), {}),
    "old_teacher_mean": (dict(PRE, distill_steps=80, student_init="TEACHER_MEAN"), {}),
    "old_steps_x3": (dict(PRE, distill_steps=240, student_init="RANDOM"), {}),
    "old_lr_0.1": (dict(PRE, distill_steps=80, student_init="RANDOM"), {"lr": 0.1}),
    "old_tasks_mixing": (dict(PRE, distill_steps=80, student_init="RANDOM"), {"mixing": "tasks"}),
    "old_no_distill_terms": (dict(PRE, distill_steps=80, student_init="RANDOM", distill=False), {}),
    "new": (dict(PRE, distill_steps=160), {}),  # TEACHER_MEAN, 160 steps at lr 3e-2: the first fix
    "new_lr_0.1": (dict(PRE, distill_steps=160), {"lr": 0.1}),
    "new_no_hidden": (dict(PRE, distill_steps=160, hidden_layers=()), {}),
    "new_steps_x2": (dict(PRE, distill_steps=320), {}),
    "new_tasks_mixing": (dict(PRE, distill_steps=160), {"mixing": "tasks"}),
    "new_lr_0.1_steps_x2": (dict(PRE, distill_steps=320), {"lr": 0.1}),  # = today's MPTRecipe defaults
}


def effective(recipe: dict, train_kw: dict) -> dict:
    """What stage 2 ran with: the recipe's teacher and distillation fields, its lr resolved (a train_kw lr wins;
    None is train()'s 3e-2); the target stage's fields do not matter here."""
    import bench_mpt_transfer as bench

    from softprompt.optim import DEFAULT_LR, OptimizerName

    lr = train_kw.get("lr", recipe.get("distill_lr") or DEFAULT_LR[OptimizerName.ADAMW])
    fields = {k: recipe[k] for k in (*bench.SOURCE_FIELDS, "distill") if k in recipe and k != "distill_lr"}
    return fields | {"lr": lr} | {k: v for k, v in train_kw.items() if k != "lr"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--tiny", action="store_true", help="tiny random model, a few steps, a temp dir")
    return p.parse_args(argv)


def measures_of(source_info: dict) -> dict:
    """The ``bench.prompt_measures`` part of a cached MPT source's log: every entry but the training record."""
    training = ("seconds", "sources", "steps", "val_accuracy", "loss_first_last", "terms_first_last")
    return {k: v for k, v in source_info.items() if k not in training}


def measured_row(recipe, train_kw: dict, seconds: float, accs: dict, loss_first_last, terms_first_last,
                 measures: dict, teacher_acc: dict) -> dict:
    """One variant's entry: its recipe, time, the student's validation accuracy per source against the teachers',
    the loss at the first and last step, and how P* and the task prompts moved (``bench.prompt_measures``)."""
    import bench_mpt_transfer as bench

    teacher_mean = sum(teacher_acc.values()) / len(teacher_acc)
    return {"recipe": bench.recipe_dict(recipe), "train_kw": train_kw, "seconds": seconds,
            "torch_threads": torch.get_num_threads(), "student_val_accuracy": accs,
            "student_mean": sum(accs.values()) / len(accs),
            "every_task_at_least_teacher_mean": all(a >= teacher_mean for a in accs.values()),
            "every_task_at_least_its_teacher": all(accs[n] >= teacher_acc[n] for n in accs),
            "loss_first_last": loss_first_last, "terms_first_last": terms_first_last, **measures}


def main(argv=None):
    """Teachers come from bench_mpt_transfer's cache (its sources, recipe and runs dir): trained once for both."""
    args = parse_args(argv)
    import bench_mpt_transfer as bench

    from softprompt.atomic import atomic_write_json
    from softprompt.mpt import distill

    bargs = bench.parse_args(["--quick"] if args.tiny else [])
    model, tok = bench.load(bargs)
    recipe0 = bench.make_recipe(bargs)
    runs = bench.RunsDir(bargs.runs_dir, bargs.model, bench.recipe_dict(recipe0), bargs.test_examples,
                         bargs.val_examples)
    src = bench.Sources(bargs, runs, model, tok, recipe0)
    teachers = src.teachers()
    tasks = [src.task(n) for n in bargs.sources]
    out_path = Path(args.out)
    done = json.loads(out_path.read_text()) if out_path.exists() and not args.tiny else {}
    teacher_acc = src.log["teachers"]["val_accuracy"]
    teacher_mean = sum(teacher_acc.values()) / len(teacher_acc)
    done["_meta"] = {"sources": bargs.sources, "model": bargs.model, "val_examples": bargs.val_examples,
                     "teacher_steps": recipe0.teacher_steps, "teacher_val_accuracy": teacher_acc,
                     "teacher_mean": teacher_mean,
                     "zero_shot_val_accuracy": done.get("_meta", {}).get("zero_shot_val_accuracy") or {
                         t.name: bench.accuracy(model, tok, t, bargs.val_examples, "validation") for t in tasks}}
    print(f"teachers (val acc): {teacher_acc} mean {teacher_mean:.3f}", flush=True)
    current = effective(bench.recipe_dict(recipe0), {})
    done["_meta"]["current_defaults"] = [n for n, (c, kw) in VARIANTS.items()
                                         if effective(bench.recipe_dict(recipe0.replace(**c)), kw) == current]
    embeddings = model.get_input_embeddings().weight.detach()
    for name in args.variants.split(","):
        changes, train_kw = VARIANTS[name]
        recipe = recipe0.replace(**changes)
        if args.tiny:
            recipe = recipe.replace(distill_steps=2)
        if name in done and effective(done[name]["recipe"], done[name]["train_kw"]) == effective(
                bench.recipe_dict(recipe), train_kw):
            print(f"{name}: cached", flush=True)
            continue
        if effective(bench.recipe_dict(recipe), train_kw) == current and not args.tiny:
            # MPTRecipe's defaults on every source: the benchmark's distilled source of draw 0 is this very run
            # (these teachers, this recipe and seed), so it is read from the benchmark's cache, trained there once
            src.student(True, len(tasks))
            info = src.log[f"source_mpt_distill_k{len(tasks)}"]
            row = measured_row(recipe, train_kw, info["seconds"], info["val_accuracy"], info["loss_first_last"],
                               info["terms_first_last"], measures_of(info), teacher_acc) | {
                "torch_threads": 1, "trained_by": "bench_mpt_transfer.py (its cached source_mpt_distill_k5, draw 0)"}
        else:
            snap = bench.StartSnapshot()
            t0 = time.perf_counter()
            student, history, log = distill(model, tok, tasks, teachers, recipe, progress=False, callbacks=[snap],
                                            **train_kw)
            seconds = time.perf_counter() - t0
            accs = {t.name: bench.accuracy(student, tok, t, bargs.val_examples, "validation", task_id=k)
                    for k, t in enumerate(tasks)}
            row = measured_row(recipe, train_kw, seconds, accs, [history.loss[0][1], history.loss[-1][1]],
                               [log[0], log[-1]] if log else None,
                               bench.prompt_measures(student.prompt_encoder, snap.tensors, embeddings), teacher_acc)
        done[name] = row
        if not args.tiny:
            atomic_write_json(out_path, done)
        print(f"{name}: {row['seconds']:.0f}s acc {row['student_val_accuracy']} mean {row['student_mean']:.3f} "
              f"|ΔP*|/|P*0| {row['p_star_rel_change']:.3f} vocab cos {row['p_star0_best_vocab_cos']:.3f} -> "
              f"{row['p_star_best_vocab_cos']:.3f} "
              f"cos(P_k,P*) {[round(c, 3) for c in row['cos_task_prompt_to_p_star']]}",
              flush=True)
    if not args.tiny:
        atomic_write_json(out_path, done)  # the _meta (which variant the defaults are), also when all are cached
    return done


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
