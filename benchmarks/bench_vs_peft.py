"""softprompt vs Hugging Face PEFT on SmolLM2-135M (offline): training step, evaluation, peak memory.

Run it on a quiet machine (figures under load are noise):

    OMP_NUM_THREADS=4 .venv/bin/python benchmarks/bench_vs_peft.py            # default sizes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_vs_peft.py --quick    # a smoke run

What is compared (same base model, same prompt weights, same batches):

* **training step**: ours = ``PromptModel.forward(..., labels, logits_to_keep=k)`` (the LM head runs on the
  last k positions only, where the label word sits) + backward + AdamW step; PEFT = its
  ``PeftModelForCausalLM.forward(..., labels)`` (LM head on all T + L positions) + backward + AdamW step.
  Warm-up iterations, then the median of N. The first step's losses are printed too: they must agree.
* **evaluation throughput** (examples/s, rank classification over the label words): ours =
  :func:`softprompt.evaluate` (a :class:`~softprompt.PromptPrefixCache`: the prompt's keys/values
  computed once; last-position logits; length-sorted batches; a second row without the sorting);
  PEFT = its full forward, then the argmax over the label words' first tokens at the last position.
  Predictions agree except where left padding moves PEFT's position ids (peft #1093).
* **peak memory**: every measurement runs in a fresh subprocess; we report the process's peak resident
  set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and its growth over the peak right after
  the model loaded. ``tracemalloc`` cannot see torch's CPU allocations; RSS can, but it also counts the
  Python interpreter, imported libraries and the model, and the allocator may keep freed pages. The
  growth figure isolates the workload. Children are sequential, so they do not share memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TARGETS = {"train": 0.8, "eval": 1.5}  # ours/PEFT step time at most 0.8; throughput ratio at least 1.5


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _setup(args):
    import torch

    import softprompt as sp
    from softprompt.config import PromptTuningConfig
    from softprompt.prompt_model import get_prompt_model

    torch.manual_seed(0)
    model, tok = sp.load_model(args.model)
    loaded_mb = _maxrss_mb()
    task = sp.load_task(args.task)
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=args.virtual_tokens, seed=0)
    pm = get_prompt_model(model, config)
    prompt = pm.prompt_encoder.adapter_tensors()["prompt_embeddings"].detach().clone()  # (T, d)
    return torch, sp, model, tok, task, pm, prompt, loaded_mb


def _peft_model(model, prompt, T):
    import peft

    cfg = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T)
    pmodel = peft.get_peft_model(model, cfg)
    with __import__("torch").no_grad():
        pmodel.prompt_encoder["default"].embedding.weight.copy_(prompt)
    return pmodel


def _train_batch(task, tok, args):
    batch = task.causal_batch(task.splits["train"][: args.batch_size], tok, with_targets=True,
                              num_virtual_tokens=args.virtual_tokens)
    k = int((batch["labels"] != -100).sum(1).max()) + 1  # the target tokens and the position before them
    return batch, k


def _train_step(net, who: str, batch, k, opt) -> float:
    """Ours: LM head on the last k positions (``ours_shared``: also the prompt run once per batch).
    PEFT: its forward with labels (LM head everywhere)."""
    args = (batch["input_ids"], batch["attention_mask"], batch["labels"])
    if who == "ours_shared":
        from softprompt.prefix_cache import shared_prompt_forward

        loss = shared_prompt_forward(net, *args, logits_to_keep=k).loss
    else:
        kw = {"logits_to_keep": k} if who == "ours" else {}
        loss = net(input_ids=args[0], attention_mask=args[1], labels=args[2], **kw).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss)


def _eval_pass(torch, net, who: str, tok, task, data, args) -> list[int]:
    """Ours: ``softprompt.evaluate`` (prefix cache, last-position logits, length-sorted batches;
    ``ours_nosort`` without the sorting). PEFT: full forward, argmax over label ids at the last position."""
    from softprompt.evaluation import evaluate, first_token_ids, iter_batches

    if who.startswith("ours"):
        return evaluate(net, tok, task, split="test", max_examples=len(data), batch_size=args.eval_batch_size,
                        sort_by_length=who == "ours", return_predictions=True)["predictions"]
    firsts = torch.tensor(first_token_ids(task, tok))
    preds = []
    for examples in iter_batches(data, args.eval_batch_size):
        b = task.causal_batch(examples, tok, with_targets=False, num_virtual_tokens=args.virtual_tokens)
        with torch.no_grad():
            logits = net(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits  # (B, T+L, V)
        preds += logits[:, -1, firsts].argmax(-1).tolist()
    return preds


def child(args) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able dict.

    ``time``: ours and PEFT in the same process on the same base model, steps *alternating*, so that
    load from other processes hits both alike. ``mem-<phase>-<who>``: one of them alone, for peak RSS.
    """
    torch, sp, model, tok, task, pm, prompt, loaded_mb = _setup(args)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    who = ["ours", "peft"] if args.role == "time" else [args.role.split("-")[-1]]
    nets = {w: pm if w.startswith("ours") else _peft_model(model, prompt, args.virtual_tokens) for w in who}
    out = {"role": args.role, "loaded_mb": loaded_mb, "prompt_sum": float(prompt.double().sum())}
    phases = ["train", "eval"] if args.role == "time" else [args.role.split("-")[1]]
    iters = args.iters if args.role == "time" else args.mem_iters
    data = task.splits["test"].select(range(min(args.eval_examples, len(task.splits["test"]))))

    if "train" in phases:
        batch, k = _train_batch(task, tok, args)
        longest = int(batch["attention_mask"].sum(1).argmax())  # a row without padding
        row = {key: batch[key][longest:longest + 1] for key in ("input_ids", "attention_mask", "labels")}
        opts = {}
        for w, net in nets.items():
            with torch.no_grad():
                out[f"unpadded_loss_{w}"] = float(net(**row).loss)  # must agree: same prompt, same row
            net.train()
            opts[w] = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
        train_who = who
        if args.role == "time":  # also time the shared-prompt forward (prefix_cache.shared_prompt_forward)
            from softprompt.prefix_cache import shared_prompt_forward

            train_who = ["ours", "peft", "ours_shared"]
            opts["ours_shared"] = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-3)
            with torch.no_grad():  # before any step: the same loss as the PromptModel path
                out["batch_loss_ours"] = float(pm(**{key: batch[key] for key in row}, logits_to_keep=k).loss)
                out["batch_loss_shared"] = float(shared_prompt_forward(
                    pm, batch["input_ids"], batch["attention_mask"], batch["labels"], logits_to_keep=k).loss)
        times = {w: [] for w in train_who}
        for i in range(args.warmup + iters):
            for w in (train_who if i % 2 == 0 else train_who[::-1]):
                t0 = time.perf_counter()
                loss = _train_step(pm if w == "ours_shared" else nets[w], w, batch, k, opts[w])
                times[w].append(time.perf_counter() - t0)
                if i == 0:
                    out[f"first_loss_{w}"] = loss
        for w in train_who:
            out[f"step_s_{w}"] = statistics.median(times[w][args.warmup:])
        out.update(iters=iters, batch=list(batch["input_ids"].shape), logits_to_keep=k)
        for w, net in nets.items():  # back to the initial prompt for the evaluation below
            if w.startswith("ours"):
                pm.load_adapter_tensors({"prompt_embeddings": prompt})
            else:
                with torch.no_grad():
                    net.prompt_encoder["default"].embedding.weight.copy_(prompt)

    if "eval" in phases:
        for net in nets.values():
            net.eval()
        if args.role == "time":  # also time ours without length sorting, to show what each part buys
            nets["ours_nosort"] = nets["ours"]
            who = ["ours", "peft", "ours_nosort"]
        repeats = args.eval_repeats if args.role == "time" else 1
        times = {w: [] for w in nets}
        for i in range(args.eval_warmup + repeats):
            for w in (who if i % 2 == 0 else who[::-1]):
                t0 = time.perf_counter()
                preds = _eval_pass(torch, nets[w], w, tok, task, data, args)
                times[w].append(time.perf_counter() - t0)
                out[f"predictions_{w}"] = preds
        labels = data["label"]
        for w in nets:
            out[f"examples_per_s_{w}"] = len(data) / statistics.median(times[w][args.eval_warmup:])
            out[f"accuracy_{w}"] = sum(p == y for p, y in zip(out[f"predictions_{w}"], labels)) / len(labels)
        out["n"] = len(data)
    out["peak_mb"] = _maxrss_mb()
    out["growth_mb"] = out["peak_mb"] - loaded_mb
    return out


ROLES = ("time", "mem-train-ours", "mem-train-peft", "mem-train-ours_shared", "mem-eval-ours", "mem-eval-peft")


def parent(args) -> None:
    results = {}
    for role in ROLES:
        cmd = [sys.executable, __file__, "--role", role] + [a for a in sys.argv[1:] if a != "--quick"]
        if args.quick:
            cmd += ["--iters", "3", "--warmup", "1", "--eval-examples", "32", "--eval-repeats", "1",
                    "--eval-warmup", "0", "--mem-iters", "1"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"{role} failed (exit {proc.returncode})")
        results[role] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {role}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    report(results, args)


def report(r: dict, args) -> None:
    t = r["time"]
    sums = {role: res["prompt_sum"] for role, res in r.items()}
    if len(set(sums.values())) != 1:
        print(f"WARNING: the prompt init differed between subprocesses: {sums}")
    agree = sum(a == b for a, b in zip(t["predictions_ours"], t["predictions_peft"])) / t["n"]
    train_ratio = t["step_s_ours"] / t["step_s_peft"]
    eval_ratio = t["examples_per_s_ours"] / t["examples_per_s_peft"]
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"\n### softprompt vs PEFT {_peft_version()} on {args.model}, task {args.task}, "
          f"{args.virtual_tokens} virtual tokens, OMP_NUM_THREADS={threads}\n")
    print("| measure | softprompt | PEFT | ratio | target | met |")
    print("|---|---:|---:|---:|---|:---:|")
    print(f"| training step, batch {t['batch'][0]}x{t['batch'][1]} (median of {t['iters']}, s) | "
          f"{t['step_s_ours']:.3f} | {t['step_s_peft']:.3f} | {train_ratio:.2f}x | <= {TARGETS['train']}x | "
          f"{'yes' if train_ratio <= TARGETS['train'] else 'no'} |")
    shared = t["step_s_ours_shared"] / t["step_s_peft"]
    print(f"| training step, ours with the prompt run once per batch (shared_prompt_forward, s) | "
          f"{t['step_s_ours_shared']:.3f} | {t['step_s_peft']:.3f} | {shared:.2f}x | "
          "(train()'s path, causal LMs without dropout) | |")
    print(f"| evaluation, {t['n']} examples, batch {args.eval_batch_size} (examples/s) | "
          f"{t['examples_per_s_ours']:.1f} | {t['examples_per_s_peft']:.1f} | {eval_ratio:.2f}x | "
          f">= {TARGETS['eval']}x | {'yes' if eval_ratio >= TARGETS['eval'] else 'no'} |")
    nosort = t["examples_per_s_ours_nosort"] / t["examples_per_s_peft"]
    print(f"| evaluation, ours without length-sorted batches (examples/s) | {t['examples_per_s_ours_nosort']:.1f} | "
          f"{t['examples_per_s_peft']:.1f} | {nosort:.2f}x | (cache + last-position logits only) | |")
    for phase in ("train", "eval"):
        o, p = r[f"mem-{phase}-ours"], r[f"mem-{phase}-peft"]
        print(f"| peak RSS, {phase} (MB) | {o['peak_mb']:.0f} | {p['peak_mb']:.0f} | "
              f"{o['peak_mb'] / p['peak_mb']:.2f}x | <= 1.0x | {'yes' if o['peak_mb'] <= p['peak_mb'] else 'no'} |")
        print(f"| RSS growth over the loaded model, {phase} (MB) | {o['growth_mb']:.0f} | {p['growth_mb']:.0f} | "
              f"{o['growth_mb'] / max(p['growth_mb'], 1e-9):.2f}x | <= 1.0x | "
              f"{'yes' if o['growth_mb'] <= p['growth_mb'] else 'no'} |")
    o, p = r["mem-train-ours_shared"], r["mem-train-peft"]
    print(f"| peak RSS, train, shared-prompt forward (MB) | {o['peak_mb']:.0f} | {p['peak_mb']:.0f} | "
          f"{o['peak_mb'] / p['peak_mb']:.2f}x | | |")
    print("\nTiming: ours and PEFT alternate step by step in one process on the same base model.")
    print(f"Checks: batch loss before training, PromptModel {t['batch_loss_ours']:.5f} vs shared-prompt forward "
          f"{t['batch_loss_shared']:.5f}.")
    print(f"Loss on the longest row alone (no padding): ours {t['unpadded_loss_ours']:.5f}, "
          f"PEFT {t['unpadded_loss_peft']:.5f}. First-step batch loss: ours {t['first_loss_ours']:.5f}, "
          f"PEFT {t['first_loss_peft']:.5f} (they differ where rows are left padded: PEFT's position ids "
          "shift with the padding, peft #1093; ours do not).")
    same = t["predictions_ours"] == t["predictions_ours_nosort"]
    print(f"Length sorting leaves our predictions {'unchanged' if same else 'CHANGED (a bug)'}. "
          f"Evaluation predictions agree on {agree:.1%} (accuracy: ours {t['accuracy_ours']:.3f}, "
          f"PEFT {t['accuracy_peft']:.3f}). Ours computes logits for the last {t['logits_to_keep']} positions "
          "in training and 1 in evaluation.")
    print("Memory: ru_maxrss of a fresh subprocess per measurement (includes interpreter, libraries, model).")


def _peft_version() -> str:
    from importlib.metadata import version

    return version("peft")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--task", default="sentiment_movies")
    ap.add_argument("--virtual-tokens", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--eval-examples", type=int, default=128)
    ap.add_argument("--eval-batch-size", type=int, default=16)
    ap.add_argument("--eval-repeats", type=int, default=3)
    ap.add_argument("--eval-warmup", type=int, default=1)
    ap.add_argument("--mem-iters", type=int, default=3, help="steps / passes in each memory subprocess")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 steps, 32 evaluation examples")
    ap.add_argument("--role", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role:
        print(json.dumps(child(args)))
    else:
        parent(args)


if __name__ == "__main__":
    main()
