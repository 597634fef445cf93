"""Why does MPT's shared prompt P* stay near its start? Measurements of the distillation stage.

Trains one teacher per source task (cached), then distils them with several recipes and measures,
for each: the student's validation accuracy on every source task (task id k) against its teacher's,
how far P* moved (``||P* - P*_0|| / ||P*_0||``), its best cosine to any vocabulary token (mean over
the T vectors; a random prompt scores about the same), the task prompts' cosine to P*
(``cos(P_k, P*)``, 1 while the rank-one factors stay at the identity), how far the task matrices moved
(``||u_k v_kᵀ - 1|| / ||1||``) and the loss terms at the start and the end.

    OMP_NUM_THREADS=1 python benchmarks/diagnose_mpt.py                       # every variant (cached per variant)
    OMP_NUM_THREADS=1 python benchmarks/diagnose_mpt.py --variants old,new    # some of them

Results: ``softprompt/data/results/mpt_diagnosis.json`` (one entry per variant; rerunning skips the done ones).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "softprompt" / "data" / "results" / "mpt_diagnosis.json"
SOURCES = "yn_membership,yn_colors,yn_ages,yn_review,entailment"

# name -> (MPTRecipe changes, train() keywords); "old" is the recipe before the fix (issue 13).
VARIANTS = {
    "old": (dict(distill_steps=80, student_init="RANDOM"), {}),
    "old_teacher_mean": (dict(distill_steps=80, student_init="TEACHER_MEAN"), {}),
    "old_steps_x3": (dict(distill_steps=240, student_init="RANDOM"), {}),
    "old_lr_0.1": (dict(distill_steps=80, student_init="RANDOM"), {"lr": 0.1}),
    "old_tasks_mixing": (dict(distill_steps=80, student_init="RANDOM"), {"mixing": "tasks"}),
    "old_no_distill_terms": (dict(distill_steps=80, student_init="RANDOM", distill=False), {}),
    "new": (dict(), {}),  # the current MPTRecipe defaults
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--sources", default=SOURCES)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--val-examples", type=int, default=128)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--cache-dir", default=str(HERE / "results" / "mpt_cache"))
    p.add_argument("--tiny", action="store_true", help="tiny random model, a few steps")
    return p.parse_args(argv)


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


def main(argv=None):
    args = parse_args(argv)
    import softprompt as sp
    from softprompt.atomic import atomic_write_json
    from softprompt.mpt import MPTRecipe, distill, train_teachers, vanilla_prompt_model

    if args.tiny:
        from softprompt.testing import tiny_model, tiny_tokenizer
        model, tok = tiny_model("llama"), tiny_tokenizer()
    else:
        model, tok = sp.load_model(args.model)
    model.eval()
    sources = [sp.load_task(n) for n in args.sources.split(",")]
    out_path = Path(args.out)
    done = json.loads(out_path.read_text()) if out_path.exists() else {}
    base = MPTRecipe(max_length=args.max_length)
    if args.tiny:
        base = base.replace(teacher_steps=2, distill_steps=2, num_virtual_tokens=4, batch_size=4)
    key = f"teachers-{args.model}-{'-'.join(args.sources.split(','))}-{base.teacher_steps}-{base.num_virtual_tokens}"
    path = Path(args.cache_dir) / f"{key}.safetensors"
    if path.exists() and not args.tiny:
        from safetensors.torch import load_file
        teachers = load_file(path)
    else:
        teachers = train_teachers(model, tok, sources, base, progress=False)
        if not args.tiny:
            from softprompt.atomic import atomic_save_safetensors
            atomic_save_safetensors(path, teachers)

    def acc(pm, task, **kw):
        return float(sp.evaluate(pm, tok, task, split="validation", max_examples=args.val_examples, **kw)["accuracy"])

    if "teachers" not in done.get("_meta", {}):
        done["_meta"] = {"sources": args.sources.split(","), "model": args.model, "val_examples": args.val_examples,
                         "teacher_steps": base.teacher_steps,
                         "teachers": {t.name: acc(vanilla_prompt_model(model, teachers[t.name]), t) for t in sources},
                         "zero_shot": {t.name: acc(model_zero_shot(model, tok, base), t) for t in sources}}
        atomic_write_json(out_path, done)
    teacher_mean = sum(done["_meta"]["teachers"].values()) / len(sources)
    print(f"teachers (val acc): {done['_meta']['teachers']} mean {teacher_mean:.3f}", flush=True)
    embeddings = model.get_input_embeddings().weight.detach()
    for name in args.variants.split(","):
        if name in done:
            print(f"{name}: cached", flush=True)
            continue
        changes, train_kw = VARIANTS[name]
        recipe = base.replace(**changes)
        if args.tiny:
            recipe = recipe.replace(distill_steps=2)
        snap = StartSnapshot()
        t0 = time.perf_counter()
        student, history, log = distill(model, tok, sources, teachers, recipe, progress=False, callbacks=[snap],
                                        **train_kw)
        seconds = time.perf_counter() - t0
        accs = {t.name: acc(student, t, task_id=k) for k, t in enumerate(sources)}
        row = {"recipe": {k: getattr(recipe, k) for k in ("distill_steps", "student_init", "distill",
                                                           "distill_weight", "num_ranks", "batch_size")},
               "train_kw": train_kw, "seconds": seconds, "student_val_acc": accs,
               "student_mean_acc": sum(accs.values()) / len(accs),
               "every_task_at_least_teacher_mean": all(a >= teacher_mean for a in accs.values()),
               "loss_first_last": [history.loss[0][1], history.loss[-1][1]],
               "terms_first_last": [log[0], log[-1]] if log else None,
               **prompt_measures(student.prompt_encoder, snap.tensors, embeddings)}
        done[name] = row
        atomic_write_json(out_path, done)
        print(f"{name}: {seconds:.0f}s acc {accs} ΔP*/P*0 {row['p_star_rel_change']:.3f} "
              f"vocab cos {row['p_star_best_vocab_cos']:.3f} cos(P_k,P*) "
              f"{[round(c, 3) for c in row['cos_task_prompt_to_p_star']]}", flush=True)
    return done


def model_zero_shot(model, tok, recipe):
    """A prompt of zeros would still shift positions; zero-shot = the bare model (no prompt)."""
    return model


if __name__ == "__main__":
    main()
