"""Zero-shot accuracy of a base model on the built-in tasks: the baseline prompt tuning must beat.

Rank classification (Lester et al. 2021, §3 scores classes by their label words): each test
example becomes ``task.format(example)``, the model reads it with no soft prompt, and the
predicted class is the label word whose *first* token gets the highest logit at the last
position. ``chance`` is 1 / number of classes; ``top share`` is the fraction of test
examples given the model's most frequent prediction (1.0 = it always says the same word).

    OMP_NUM_THREADS=1 python benchmarks/task_baselines.py                 # all built-in tasks
    python benchmarks/task_baselines.py --model smollm2-360m-instruct --tasks topic emotion
"""

from __future__ import annotations

import argparse
import time

import torch

from softprompt import list_tasks, load_model, load_task


@torch.inference_mode()
def zero_shot(model, tokenizer, task, split: str = "test", batch_size: int = 32, limit: int | None = None) -> dict:
    """Accuracy of rank classification over the first tokens of the label words, no prompt."""
    ds = task[split]
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    first = torch.tensor([ids[0] for ids in task.label_token_ids(tokenizer)])  # (C,)
    preds, golds = [], []
    for start in range(0, len(ds), batch_size):
        batch = task.causal_batch(ds[start:start + batch_size], tokenizer, with_targets=False)
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=1)
        scores = out.logits[:, -1, first]  # (B, C)
        preds.append(scores.argmax(-1))
        golds.append(batch["class_labels"])
    pred, gold = torch.cat(preds), torch.cat(golds)  # (N,), (N,)
    top_share = torch.bincount(pred, minlength=task.num_classes).max().item() / len(pred)
    return {"accuracy": (pred == gold).float().mean().item(), "chance": 1 / task.num_classes,
            "top_share": top_share, "n": len(pred)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tasks", nargs="*", default=None, help="default: every built-in task")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="first N examples of the split only")
    args = parser.parse_args(argv)

    model, tokenizer = load_model(args.model)
    model.eval()
    names = args.tasks or list_tasks(source="builtin")
    print(f"zero-shot rank classification, {args.model}, split={args.split}")
    print(f"{'task':<24}{'classes':>8}{'n':>6}{'accuracy':>10}{'chance':>8}{'top share':>11}{'seconds':>9}")
    for name in names:
        task = load_task(name)
        t0 = time.perf_counter()
        r = zero_shot(model, tokenizer, task, args.split, args.batch_size, args.limit)
        print(f"{name:<24}{task.num_classes:>8}{r['n']:>6}{r['accuracy']:>10.3f}{r['chance']:>8.2f}"
              f"{r['top_share']:>11.2f}{time.perf_counter() - t0:>9.1f}")


if __name__ == "__main__":
    main()
