"""Zero-shot vs prompt-tuned accuracy of a base model on the built-in tasks.

A built-in task is useful for teaching only if prompt tuning clearly beats the model's zero-shot
baseline. For each task this script measures, on the test split:

* **zero-shot**: the base model reads ``task.format(example)`` with no soft prompt; the
  predicted class is the label word whose first token scores highest at the last position
  (rank classification, ``softprompt.evaluate`` on the plain model);
* **trained**: a soft prompt (``--init``, ``--num-virtual-tokens``) trained for ``--steps`` steps
  with ``softprompt.train``'s defaults, evaluated the same way.

``chance`` is 1 / number of classes; ``top share`` is the fraction of test examples given the
zero-shot model's most frequent prediction (1.0 = it always says the same word).

    python benchmarks/task_baselines.py                      # every built-in task, zero-shot + trained
    python benchmarks/task_baselines.py --steps 0            # zero-shot only
    python benchmarks/task_baselines.py --tasks topic emotion --model smollm2-360m-instruct
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import softprompt as sp
from softprompt.atomic import atomic_write_json


def zero_shot(model, tokenizer, task, split: str = "test", limit: int | None = None) -> dict:
    """Rank-classification accuracy of the plain model, and how often it gives its favourite answer."""
    r = sp.evaluate(model, tokenizer, task, split, max_examples=limit, return_predictions=True)
    preds = torch.tensor(r["predictions"])  # (N,)
    r["top_share"] = torch.bincount(preds, minlength=task.num_classes).max().item() / len(preds)
    return r


def trained(model, tokenizer, task, args, split: str = "test") -> dict:
    """Accuracy after training a fresh soft prompt on the task's train split."""
    torch.manual_seed(args.seed)
    kw = {"prompt_tuning_class_labels": task.label_words} if args.init == "CLASS_LABELS" else {}
    config = sp.PromptTuningConfig(num_virtual_tokens=args.num_virtual_tokens, prompt_tuning_init=args.init,
                                   seed=args.seed, **kw)
    prompt_model = sp.get_prompt_model(model, config, tokenizer=tokenizer)
    history = sp.train(prompt_model, tokenizer, task, steps=args.steps, batch_size=args.batch_size,
                       seed=args.seed, progress=False)
    r = sp.evaluate(prompt_model, tokenizer, task, split, max_examples=args.limit)
    r["final_loss"] = history.loss[-1][1] if history.loss else None
    return r


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tasks", nargs="*", default=None, help="default: every built-in task")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N examples of the split only")
    parser.add_argument("--steps", type=int, default=40, help="training steps; 0 = zero-shot only")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-virtual-tokens", type=int, default=8)
    parser.add_argument("--init", default="SAMPLE_VOCAB", help="PromptTuningInit for the trained prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="softprompt/data/results/task_baselines.json")  # shipped in the package
    args = parser.parse_args(argv)

    model, tokenizer = sp.load_model(args.model)
    names = args.tasks or sp.list_tasks(source="builtin")
    print(f"{args.model}, split={args.split}; trained = {args.init} init, {args.num_virtual_tokens} virtual tokens, "
          f"{args.steps} steps x batch {args.batch_size}, train()'s default optimizer")
    print("| task | classes | n | chance | zero-shot | top share | trained | gain | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in names:
        task = sp.load_task(name)
        t0 = time.perf_counter()
        zs = zero_shot(model, tokenizer, task, args.split, args.limit)
        tr = trained(model, tokenizer, task, args, args.split) if args.steps > 0 else None
        seconds = time.perf_counter() - t0
        row = {"task": name, "classes": task.num_classes, "n": zs["n"], "chance": 1 / task.num_classes,
               "zero_shot": zs["accuracy"], "top_share": zs["top_share"],
               "trained": tr["accuracy"] if tr else None, "seconds": seconds}
        rows.append(row)
        trained_cell = f"{row['trained']:.3f} | {row['trained'] - row['zero_shot']:+.3f}" if tr else "- | -"
        print(f"| {name} | {task.num_classes} | {zs['n']} | {row['chance']:.2f} | {zs['accuracy']:.3f} | "
              f"{zs['top_share']:.2f} | {trained_cell} | {seconds:.0f} |", flush=True)
    out = Path(args.out)
    atomic_write_json(out, {"settings": vars(args), "rows": rows})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
