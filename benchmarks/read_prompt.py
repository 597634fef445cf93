"""Read a prompt as it learns (Lester et al. 2021, §7) and test the reading (Khashabi et al. 2022).

Trains one soft prompt on a built-in task with the offline SmolLM2, recording snapshots, then prints:

1. the nearest vocabulary tokens (cosine, top 5) of every virtual token at step 0 and at the end;
2. per snapshot: drift from the init, shared nearest neighbours, and how many virtual tokens have a
   label word among their top 5 (Lester's "class label persistence");
3. the best rank of each label word among any virtual token's neighbours, at the start and the end;
4. waywardness: accuracy of the soft prompt against its nearest-token projection used as a hard prompt.

    OMP_NUM_THREADS=1 python benchmarks/read_prompt.py                          # a few minutes on one busy core
    python benchmarks/read_prompt.py --init CLASS_LABELS --steps 100 --out runs/read_prompt   # + figures
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from softprompt.atomic import atomic_write
from softprompt import (
    PromptSnapshots,
    PromptTuningConfig,
    evaluate,
    get_prompt_model,
    load_model,
    load_task,
    measure_waywardness,
    train,
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--task", default="sentiment_movies")
    parser.add_argument("--init", default="SAMPLE_VOCAB", help="RANDOM, SAMPLE_VOCAB, TEXT or CLASS_LABELS")
    parser.add_argument("--text", default="Classify the review as positive or negative",
                        help="the init text for --init TEXT")
    parser.add_argument("--tokens", type=int, default=10, help="virtual tokens")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--every", type=int, default=5, help="snapshot every N steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="default: the library's AdamW default")
    parser.add_argument("--examples", type=int, default=128, help="test examples for the accuracies")
    parser.add_argument("--k", type=int, default=5, help="neighbours per virtual token (Lester: 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="directory for the snapshots file and figures (optional)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model, tokenizer = load_model(args.model)
    task = load_task(args.task)
    labels = list(task.label_words)
    config = PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=args.tokens, prompt_tuning_init=args.init, seed=args.seed,
        prompt_tuning_init_text=args.text if args.init == "TEXT" else None,
        prompt_tuning_class_labels=labels if args.init == "CLASS_LABELS" else None,
    )
    pm = get_prompt_model(model, config, tokenizer)
    print(f"{args.model}, task {args.task} (label words {labels}), {args.tokens} virtual tokens, init {args.init}")

    before = evaluate(pm, tokenizer, task, max_examples=args.examples)["accuracy"]
    snaps = PromptSnapshots(every=args.every)
    t0 = time.perf_counter()
    history = train(pm, tokenizer, task, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    callbacks=[snaps], seed=args.seed, progress=False)
    seconds = time.perf_counter() - t0
    last_loss = history.loss[-1][1] if history.loss else float("nan")
    print(f"trained {args.steps} steps in {seconds:.0f} s (under load: timing is indicative only); "
          f"last loss {last_loss:.3f}; accuracy before {before:.3f}")

    print("\n== neighbours at step 0 ==")
    print(snaps.neighbors(0, tokenizer, k=args.k))
    print(f"\n== neighbours at step {snaps.steps[-1]} ==")
    print(snaps.neighbors(-1, tokenizer, k=args.k))

    print("\n== per snapshot ==")
    print(snaps.summary(tokenizer, labels, k=args.k))

    ranks = snaps.label_ranks(tokenizer, labels)
    print("\n== best rank of each label word among any virtual token's neighbours (1 = some token's nearest) ==")
    for word, r in ranks.items():  # r: (S, T)
        best = r.min(dim=1)
        print(f"  {word!r:>12}: step 0 rank {int(best.values[0])} (v{int(best.indices[0])}), "
              f"step {snaps.steps[-1]} rank {int(best.values[-1])} (v{int(best.indices[-1])})")
    in_top = snaps.labels_in_neighbors(tokenizer, labels, k=args.k)  # (S, T)
    print(f"  a label word among the top {args.k} of some virtual token: step 0 {bool(in_top[0].any())}, "
          f"end {bool(in_top[-1].any())}")

    print()
    print(measure_waywardness(pm, tokenizer, task, max_examples=args.examples))

    if args.out:
        from softprompt import figures

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        snaps.save(out / "snapshots.safetensors")
        pictures = {
            "pca_paths.png": figures.pca_paths(snaps, tokenizer=tokenizer, highlight_words=labels),
            "heatmap.png": figures.similarity_heatmap(pm, None, tokenizer, words=labels),
            "norms.png": figures.norm_histogram(snaps),
            "label_ranks.png": figures.label_rank_plot(snaps, tokenizer, labels),
        }
        for name, fig in pictures.items():
            with atomic_write(out / name) as fh:
                fig.savefig(fh, format="png", dpi=100)
        print(f"\nwrote snapshots and figures to {out}/")


if __name__ == "__main__":
    main()
