"""What each notebook costs on a GPU: FLOPs, peak memory and wall time, from a profile's knobs alone.

    python benchmarks/gpu_budget.py            # the table: notebooks 01-05 x profiles cpu, gpu x GPUs
                                               # (and bench_vs_model_tuning's gpu run on a T4 and an A100)
    python benchmarks/gpu_budget.py --check    # exit 1 if a gpu-profile notebook needs > 12 GB or > 10 min on a T4

Nothing is downloaded and no GPU is needed: the estimate is arithmetic on the knobs in
``softprompt.profiles.PROFILES`` (model, batch_size, num_virtual_tokens, steps, dtype, max_length,
grad_accum_steps, eval_batch_size, eval_examples and each notebook's ``profile.knobs("0N")``) and on the
model shapes in ``MODELS``. It is an estimate, not a measurement: it tells which knob to turn before a
Colab run, and ``--check`` keeps the committed gpu profile inside a free T4 session.

The model (one decoder-only transformer, Llama-style: SmolLM2)
--------------------------------------------------------------
*Work.* A forward pass costs ``2 x (matmul weights)`` FLOPs per token (q, k, v, o, gate, up, down) plus the
attention products ``4 x d x context`` per token and layer. The LM head runs only where the loss or the
score is read: ``train()`` passes ``logits_to_keep`` (from one before the first label token to the end,
``softprompt.batching.logits_to_keep``: about 3 positions a row) and ``evaluate()`` ``logits_to_keep=1``,
so the 49k x d head costs ``2 x d x V`` FLOPs per kept position, not per token. The base model is frozen:
backward computes the gradient of the *activations* only (``dX = dY Wᵀ``, as many FLOPs as the forward;
no ``dW``), so a training step is ~2x a forward (the usual "3x" counts weight gradients we never form),
attention ~3.5x (the fused kernel recomputes scores). Prompt tuning trains the shared prompt once per
batch (``softprompt.shared_prompt``: ``T + B x L`` positions); an MPT batch mixing tasks runs the plain
path (``B x (T + L)``), and distillation adds a no-grad teacher forward on the same base model.

*Memory.* Weights (one copy: MPT's teacher and student share the frozen base model) + the autograd
activations of one micro-batch (``batch_size / grad_accum_steps`` rows) + one layer's transient working
set + AdamW state of the prompt (2 fp32 copies of T x d: kilobytes) + a fixed CUDA context. Activations
per token and layer, with frozen weights and fused SDPA attention (no L x L matrix)::

    2 x (4d + 4)              the two RMSNorms keep an fp32 copy of their input and 1/rms
    s x (2d + 2 d_kv + 3 I)   SDPA keeps q, k, v (GQA: d_kv = kv_heads x head_dim), out; the MLP gate, up, silu
    4 x heads                 SDPA's log-sum-exp

with ``s`` bytes per element; a frozen linear layer keeps nothing of its input. ``tests/test_gpu_budget.py``
checks this count against the tensors autograd really saves in a tiny Llama (CPU). Distillation keeps the
hidden states of every layer of student and teacher (``output_hidden_states``). Evaluation runs under
``no_grad``: the KV cache of a batch plus one layer's working set.

*Time.* ``FLOPs / (utilisation x peak)`` + ``bytes / bandwidth`` (weights read once per forward and once
per backward; activations written and read ``ACT_TRAFFIC`` times) + a launch cost per kernel (eager
PyTorch: ~``KERNELS_PER_LAYER`` kernels per layer and forward) + a fixed per-step cost (batching on the
CPU), plus a fixed load time per notebook (model and datasets from the hub). Utilisation: ``UTILISATION``
of the dense tensor-core peak (fp16/bf16) or of the fp32 peak, what small GEMMs (d = 960) reach in practice.

*Lengths.* Tokens of template + text + label word (SmolLM2's BPE, ~1.3 tokens per English word) per
dataset in ``DATASETS``: a mean (for evaluation, which batches rows of similar length) and a long value (a
high percentile: a training batch pads to its longest row; peak memory), both capped at
``max_length - T`` where the profile sets ``max_length``. Assumed from the datasets' published word counts
(SST-2 sentences ~19 words, MNLI premise+hypothesis ~33, BoolQ passages ~108 words), not measured here.
``dtype="auto"`` is bf16 where the GPU has it and fp16 elsewhere (T4).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softprompt.profiles import PROFILES, Profile  # noqa: E402

GB = 1e9
T4_LIMIT_GB = 12.0  # of the T4's 15 GB: headroom for fragmentation and the notebook's own tensors
T4_LIMIT_MIN = 10.0


# ---------------------------------------------------------------------------------------------
# Hardware and models
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPU:
    """Dense peak TFLOPS (no sparsity), memory and bandwidth, from NVIDIA's data sheets."""

    name: str
    tflops: dict  # dtype -> dense peak TFLOPS (fp16/bf16 on tensor cores; fp32 without TF32)
    memory_gb: float
    bandwidth_gbs: float

    def dtype_for(self, dtype: str) -> str:
        if dtype == "auto":
            return "bfloat16" if "bfloat16" in self.tflops else "float16"
        if dtype not in self.tflops:
            raise ValueError(f"{self.name} has no {dtype} support; use dtype='auto' or 'float16' in the profile.")
        return dtype


GPUS = {  # T4: Turing, no bf16 (Colab free tier); L4: Ada; A100 40 GB and H100 SXM
    "T4": GPU("T4", {"float32": 8.1, "float16": 65.0}, 16.0, 320.0),
    "L4": GPU("L4", {"float32": 30.3, "float16": 121.0, "bfloat16": 121.0}, 24.0, 300.0),
    "A100": GPU("A100", {"float32": 19.5, "float16": 312.0, "bfloat16": 312.0}, 40.0, 1555.0),
    "H100": GPU("H100", {"float32": 67.0, "float16": 989.0, "bfloat16": 989.0}, 80.0, 3350.0),
}
BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

UTILISATION = 0.35  # of peak FLOPS for the matmuls
ACT_TRAFFIC = 4  # each saved activation is written, read by the next op, read in backward, its gradient written
KERNELS_PER_LAYER = 30  # eager kernels per layer and forward (norms, rope, attention, mlp, adds, casts)
LAUNCH_S = 8e-6  # per kernel launch
STEP_OVERHEAD_S = 0.01  # per optimizer step: tokenizing and collating on the CPU, the optimizer, logging
CUDA_CONTEXT_GB = 0.5  # CUDA context and cuBLAS workspace, outside the tensor allocator
LOAD_S_MODEL = 30.0  # model download + load on a fresh runtime (~720 MB for the 360M model)
LOAD_S_DATASET = 15.0  # each hub dataset: download and prepare
LABEL_POSITIONS = 3  # positions logits_to_keep keeps per training row (label word + 1; batching.logits_to_keep)


@dataclass(frozen=True)
class Shape:
    """The numbers of a decoder that cost: from the model's config.json on the hub (cited per entry)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = True

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    @property
    def layer_params(self) -> int:
        d = self.hidden
        return 2 * d * d + 2 * d * self.kv_dim + 3 * d * self.intermediate + 2 * d  # q,o; k,v; mlp; norms

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.vocab * self.hidden
        return self.layers * self.layer_params + self.vocab * self.hidden + head + self.hidden


MODELS = {
    # huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json
    "smollm2-135m-instruct": Shape(layers=30, hidden=576, heads=9, kv_heads=3, intermediate=1536, vocab=49152),
    # huggingface.co/HuggingFaceTB/SmolLM2-360M-Instruct/blob/main/config.json
    "smollm2-360m-instruct": Shape(layers=32, hidden=960, heads=15, kv_heads=5, intermediate=2560, vocab=49152),
    # huggingface.co/HuggingFaceTB/SmolLM2-1.7B-Instruct/blob/main/config.json (bench_vs_model_tuning --profile gpu)
    "smollm2-1.7b-instruct": Shape(layers=24, hidden=2048, heads=32, kv_heads=32, intermediate=8192, vocab=49152),
}


def activation_bytes_per_token_layer(shape: Shape, s: int) -> int:
    """Bytes autograd keeps per token and layer when only activations need gradients (see the docstring)."""
    d = shape.hidden
    return 2 * (4 * d + 4) + s * (2 * d + 2 * shape.kv_dim + 3 * shape.intermediate) + 4 * shape.heads


# ---------------------------------------------------------------------------------------------
# Datasets: tokens per row (template + text + label word)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lengths:
    mean: int  # typical row: evaluation batches rows of similar length
    long: int  # a high percentile: a training batch pads to its longest row
    test: int  # rows in the split the notebooks call "test" (GLUE: the hub's validation split)
    validation: int = 1000  # hub recipes carve min(1000, len(train) // 10) from train


BUILTIN = Lengths(mean=25, long=40, test=256, validation=128)  # generated sentences: 75-150 characters
DATASETS = {
    "sst2": Lengths(mean=30, long=70, test=872),
    "rotten_tomatoes": Lengths(mean=34, long=80, test=1066, validation=1066),
    "ag_news": Lengths(mean=60, long=130, test=7600),
    "boolq": Lengths(mean=160, long=400, test=3270),
    "mnli": Lengths(mean=58, long=150, test=9815),
    "qnli": Lengths(mean=65, long=180, test=5463),
    "qqp": Lengths(mean=44, long=120, test=40430),
}


def lengths(task: str) -> Lengths:
    return DATASETS.get(task, BUILTIN)


# ---------------------------------------------------------------------------------------------
# Workloads: what a notebook runs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Train:
    """``steps`` optimizer steps of ``batch`` rows of ``tasks`` with a T-token prompt."""

    what: str
    tasks: tuple
    steps: int
    batch: int
    T: int
    shared_prompt: bool = True  # the prompt run once per batch (False: MPT mixing tasks)
    teacher: bool = False  # distillation: a no-grad teacher forward, hidden states of every layer kept
    max_length: int | None = None


@dataclass(frozen=True)
class Eval:
    """A rank-classification pass over ``examples`` rows of ``task`` (``repeats`` times)."""

    what: str
    task: str
    examples: int
    T: int
    cached: bool = True  # the prompt's keys/values computed once (PromptPrefixCache)
    repeats: int = 1
    max_length: int | None = None


def _n(examples: int | None, available: int) -> int:
    return available if examples is None else min(examples, available)


def workloads(profile: Profile, notebook: str) -> list:
    """The training runs and evaluations of one notebook, mirroring its cells (see each notebook)."""
    p, T, B = profile, profile.num_virtual_tokens, profile.batch_size
    cap = p.max_length
    if notebook == "01":  # embeddings and nearest tokens only
        return []
    k = p.knobs(notebook)
    if notebook == "02":
        task = p.tasks["main"]
        val, test = lengths(task).validation, lengths(task).test
        n_eval = _n(k["eval_examples"], val)
        runs = [Eval("zero-shot", task, _n(p.eval_examples, test), 0, max_length=cap),
                Train("main prompt", (task,), p.steps, B, T, max_length=cap),
                Eval("validation during training", task, n_eval, T, repeats=p.steps // k["eval_every"] + 1,
                     max_length=cap),
                Eval("trained prompt", task, _n(p.eval_examples, test), T, max_length=cap)]
        seeds = len(k["length_seeds"])  # the length-T, seed-0 run is the init ablation's
        for what, t, n in ([("init ablation", T, 4), (f"length T={T}, more seeds", T, seeds - 1)]
                           + [(f"length T={t}", t, seeds) for t in k["lengths"] if t != T]):
            runs += [Train(what, (task,), k["ablation_steps"] * n, B, t, max_length=cap),
                     Eval(f"{what}: validation", task, n_eval, t, repeats=2 * n, max_length=cap)]
        return runs
    if notebook == "03":
        task, wayward = p.tasks["main"], "arbitrary_sentiment"
        return [Train("movie-review prompt", (task,), k["steps"], B, T, max_length=cap),
                Train("wayward prompt", (wayward,), k["wayward_steps"], B, T, max_length=cap),
                Eval("waywardness (soft, hard)", task, _n(p.eval_examples, lengths(task).test), T, repeats=2,
                     max_length=cap),
                Eval("waywardness (soft, hard), wayward", wayward, _n(p.eval_examples, lengths(wayward).test), T,
                     repeats=2, max_length=cap)]
    if notebook == "05":
        sources, target, n, cap4 = tuple(k["sources"]), k["target"], k["eval_examples"], k["max_length"]
        fewshot = min(B, k["target_examples"])
        runs = []
        for s in sources:
            runs += [Train(f"teacher {s}", (s,), k["teacher_steps"], B, T, max_length=cap4),
                     Eval(f"{s}: zero-shot, teacher, student", s, _n(n, lengths(s).test), T, repeats=3,
                          max_length=cap4)]
        runs += [Train("distillation (student + teacher)", sources, k["distill_steps"], B, T, shared_prompt=False,
                       teacher=True, max_length=cap4),
                 Eval("SPoT: each teacher on the target", target, _n(n, lengths(target).validation), T,
                      repeats=len(sources), max_length=cap4),
                 Eval("target zero-shot", target, _n(n, lengths(target).test), 0, max_length=cap4),
                 Train("target runs (5 starts)", (target,), 5 * k["target_steps"], fewshot, T, max_length=cap4),
                 Eval("target runs: before, after", target, _n(n, lengths(target).test), T, repeats=10,
                      max_length=cap4)]
        return runs
    if notebook == "04":
        tasks = list(k["tasks"].values())
        Ts = [T] * (len(tasks) - 1) + [T // 2]  # the last prompt is shorter
        first, seeds, mixed = tasks[0], k["ensemble_seeds"], k["mixed_examples"]
        timing = _n(k["timing_examples"], lengths(first).test)
        runs = [Train(f"prompt {t}", (t,), k["steps"], B, tt, max_length=cap) for t, tt in zip(tasks, Ts)]
        runs += [Eval(f"{t}: mixed stream and alone", t, _n(mixed, lengths(t).test), tt, repeats=2, max_length=cap)
                 for t, tt in zip(tasks, Ts)]
        runs += [Train(f"ensemble members ({len(seeds) - 1})", (first,), k["steps"] * (len(seeds) - 1), B, T,
                       max_length=cap),
                 Eval("ensemble", first, _n(p.eval_examples, lengths(first).test), T, repeats=len(seeds),
                      max_length=cap)]
        for tt in (T, 100):  # the trained prompt and LONG_PROMPT = 100, with and without the cache
            for cached in (False, True):
                runs.append(Eval(f"timing T={tt} cache={cached}", first, timing, tt, cached=cached,
                                 repeats=k["timing_repeats"] + 1, max_length=cap))
        return runs
    raise KeyError(f"unknown notebook {notebook!r}; known: 01-05")


def datasets_of(profile: Profile, notebook: str) -> set:
    if notebook == "01":
        return set()
    tasks = {r.task for r in workloads(profile, notebook) if isinstance(r, Eval)}
    tasks |= {t for r in workloads(profile, notebook) if isinstance(r, Train) for t in r.tasks}
    return {t for t in tasks if t in DATASETS}


# ---------------------------------------------------------------------------------------------
# Costs
# ---------------------------------------------------------------------------------------------
@dataclass
class Cost:
    flops: float = 0.0
    seconds: float = 0.0
    peak_bytes: float = 0.0
    parts: dict = field(default_factory=dict)  # peak memory's parts at the worst run

    def add(self, other: Cost) -> None:
        self.flops += other.flops
        self.seconds += other.seconds
        if other.peak_bytes > self.peak_bytes:
            self.peak_bytes, self.parts = other.peak_bytes, other.parts


def text_tokens(task: str, T: int, max_length: int | None, which: str) -> int:
    n = getattr(lengths(task), which)
    return n if max_length is None else max(1, min(n, max_length - T))


def forward_flops(shape: Shape, tokens: float, context: float, kept: float) -> float:
    """One forward: matmuls over ``tokens`` positions attending to ``context`` keys, the head at ``kept``."""
    return (2 * shape.layers * (shape.layer_params - 2 * shape.hidden) * tokens
            + 4 * shape.layers * shape.hidden * context * tokens + 2 * shape.hidden * shape.vocab * kept)


def _seconds(gpu: GPU, dtype: str, flops: float, bytes_moved: float, kernels: float) -> float:
    return flops / (UTILISATION * gpu.tflops[dtype] * 1e12) + bytes_moved / (gpu.bandwidth_gbs * 1e9) \
        + kernels * LAUNCH_S


def train_cost(run: Train, shape: Shape, gpu: GPU, dtype: str, accum: int) -> Cost:
    s = BYTES[dtype]
    L = max(text_tokens(t, run.T, run.max_length, "long") for t in run.tasks)  # a batch pads to its longest row
    micro = max(1, -(-run.batch // accum))  # rows per micro-batch

    def positions(rows, length):  # positions the layers compute for one batch
        return run.T + rows * length if run.shared_prompt else rows * (run.T + length)

    tokens = positions(run.batch, L)
    fwd = forward_flops(shape, tokens, run.T + L, LABEL_POSITIONS * run.batch)
    attn = 4 * shape.layers * shape.hidden * (run.T + L) * tokens
    step_flops = 2 * fwd + 2.5 * attn  # backward: activation gradients only (+ recomputed attention scores)
    act = activation_bytes_per_token_layer(shape, s) * shape.layers
    weights = shape.params * s
    moved = 2 * weights * accum + ACT_TRAFFIC * act * tokens
    kernels = 3 * KERNELS_PER_LAYER * shape.layers * accum
    if run.teacher:  # a no-grad teacher forward on the same base model
        step_flops += fwd
        moved += weights * accum + 2 * act * tokens
        kernels += KERNELS_PER_LAYER * shape.layers * accum
    seconds = run.steps * (_seconds(gpu, dtype, step_flops, moved, kernels) + STEP_OVERHEAD_S)

    micro_tokens = positions(micro, L)
    parts = {
        "weights": weights,
        "activations": act * micro_tokens,
        "working set": micro_tokens * s * (4 * shape.hidden + 4 * shape.intermediate),
        "logits": micro * LABEL_POSITIONS * shape.vocab * 4 * 3,  # fp32 logits, log-softmax, grad
        "optimizer": 3 * 4 * run.T * shape.hidden * len(run.tasks),  # prompt fp32 + 2 AdamW moments (MPT: ~)
        "CUDA context": CUDA_CONTEXT_GB * GB,
    }
    if run.teacher:  # hidden states of every layer, student and teacher, and the teacher's working set
        parts["hidden states"] = 2 * (shape.layers + 1) * micro_tokens * shape.hidden * s
    return Cost(run.steps * step_flops, seconds, sum(parts.values()), parts)


def eval_cost(run: Eval, shape: Shape, gpu: GPU, dtype: str, batch_size: int) -> Cost:
    s = BYTES[dtype]
    L, L_long = (text_tokens(run.task, run.T, run.max_length, w) for w in ("mean", "long"))
    per_row = L if run.cached else L + run.T
    tokens = run.examples * per_row + (run.T if run.cached else 0)
    batches = -(-run.examples // batch_size)
    flops = forward_flops(shape, tokens, run.T + L, run.examples)
    act = activation_bytes_per_token_layer(shape, s) * shape.layers
    moved = shape.params * s * batches + 2 * act * tokens
    seconds = run.repeats * (_seconds(gpu, dtype, flops, moved, KERNELS_PER_LAYER * shape.layers * batches)
                             + batches * STEP_OVERHEAD_S / 2)
    rows, ctx = min(batch_size, run.examples), run.T + L_long
    parts = {
        "weights": shape.params * s,
        "KV cache": rows * ctx * shape.layers * 2 * shape.kv_dim * s,
        "working set": rows * ctx * s * (4 * shape.hidden + 4 * shape.intermediate),
        "logits": rows * shape.vocab * 4 * 2,
        "CUDA context": CUDA_CONTEXT_GB * GB,
    }
    return Cost(run.repeats * flops, seconds, sum(parts.values()), parts)


def notebook_cost(profile: Profile, notebook: str, gpu: GPU) -> Cost:
    shape = MODELS[profile.model]
    dtype = gpu.dtype_for(profile.dtype)
    total = Cost(seconds=LOAD_S_MODEL + LOAD_S_DATASET * len(datasets_of(profile, notebook)))
    total.add(Cost(peak_bytes=shape.params * BYTES[dtype] + CUDA_CONTEXT_GB * GB,
                   parts={"weights": shape.params * BYTES[dtype], "CUDA context": CUDA_CONTEXT_GB * GB}))
    for run in workloads(profile, notebook):
        if isinstance(run, Train):
            total.add(train_cost(run, shape, gpu, dtype, profile.grad_accum_steps))
        else:
            total.add(eval_cost(run, shape, gpu, dtype, profile.eval_batch_size))
    return total


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------
NOTEBOOKS = ("01", "02", "03", "04", "05")


def over_budget(profile: Profile) -> list[str]:
    """The notebooks of ``profile`` that need more than 12 GB or 10 minutes on a T4, with why."""
    problems = []
    for nb in NOTEBOOKS:
        c = notebook_cost(profile, nb, GPUS["T4"])
        if c.peak_bytes > T4_LIMIT_GB * GB:
            problems.append(f"notebook {nb}: peak {c.peak_bytes / GB:.1f} GB > {T4_LIMIT_GB:.0f} GB on a T4 "
                            f"(largest part: {max(c.parts, key=c.parts.get)})")
        if c.seconds > T4_LIMIT_MIN * 60:
            problems.append(f"notebook {nb}: {c.seconds / 60:.1f} min > {T4_LIMIT_MIN:.0f} min on a T4")
    return problems


def report(names=("cpu", "gpu"), gpus=tuple(GPUS)) -> str:
    lines = [f"Assumed: {UTILISATION:.0%} of peak FLOPS, activations moved {ACT_TRAFFIC}x, "
             f"{LAUNCH_S * 1e6:.0f} us per kernel launch, load {LOAD_S_MODEL:.0f} s + {LOAD_S_DATASET:.0f} s "
             "per hub dataset. Estimates, not measurements (see the docstring)."]
    for name in names:
        p = PROFILES[name]
        shape = MODELS[p.model]
        lines += ["", f"profile {name}: {p.model} ({shape.params / 1e6:.0f}M parameters), batch {p.batch_size} "
                  f"(x{p.grad_accum_steps} micro-batches), T={p.num_virtual_tokens}, max_length={p.max_length}, "
                  f"dtype={p.dtype}, eval batch {p.eval_batch_size}"]
        header = f"  {'notebook':<9}{'PFLOP':>8}" + "".join(f"{g + ' GB':>9}{g + ' min':>9}" for g in gpus)
        lines.append(header)
        for nb in NOTEBOOKS:
            costs = {g: notebook_cost(p, nb, GPUS[g]) for g in gpus}
            flops = costs[gpus[0]].flops
            row = f"  {nb:<9}{flops / 1e15:>8.2f}"
            row += "".join(f"{c.peak_bytes / GB:>9.1f}{c.seconds / 60:>9.1f}" for c in costs.values())
            lines.append(row)
    return "\n".join(lines)


def breakdown(profile: Profile, notebook: str, gpu: GPU) -> str:
    """Each run of one notebook: minutes and peak GB on ``gpu``."""
    shape, dtype = MODELS[profile.model], gpu.dtype_for(profile.dtype)
    lines = [f"notebook {notebook}, profile {profile.name}, {gpu.name} ({dtype}):"]
    for run in workloads(profile, notebook):
        c = (train_cost(run, shape, gpu, dtype, profile.grad_accum_steps) if isinstance(run, Train)
             else eval_cost(run, shape, gpu, dtype, profile.eval_batch_size))
        lines.append(f"  {run.what:<40}{c.seconds / 60:>7.2f} min{c.peak_bytes / GB:>7.2f} GB")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# benchmarks/bench_vs_model_tuning.py --profile gpu: four ways to adapt a model, at three sizes
# ---------------------------------------------------------------------------------------------
TF32_TFLOPS = {"L4": 60.0, "A100": 156.0, "H100": 495.0}  # dense TF32 (the benchmark's float32 matmuls); T4: none


def _model_tuning_design() -> dict:
    """The benchmark's own numbers (its ``DESIGN``, ``GPU_MODELS``, ``FULL_TUNING_BYTES_PER_PARAM``), read from it."""
    import importlib.util

    path = Path(__file__).resolve().parent / "bench_vs_model_tuning.py"
    spec = importlib.util.spec_from_file_location("bench_vs_model_tuning", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # stdlib imports only at its top
    return bench.DESIGN | {"models": bench.GPU_MODELS.split(","), "bytes_per_param": bench.FULL_TUNING_BYTES_PER_PARAM}


def model_tuning_cost(model: str, gpu: GPU, design: dict | None = None) -> dict:
    """Minutes and peak GB of each method of the benchmark on ``gpu`` for one model: float32 weights (TF32 matmuls
    where the GPU has them), every run of the design. Full fine-tuning adds the weight gradients (as many FLOPs as
    the forward) and AdamW's update, and keeps gradients and two moments (``bytes_per_param`` in all, as the
    benchmark's own fit check); ``None`` where that does not fit 90% of the card (the benchmark skips it)."""
    d = design or _model_tuning_design()
    shape, task = MODELS[model], "builtin"
    fast = GPU(gpu.name, {**gpu.tflops, "float32": TF32_TFLOPS.get(gpu.name, gpu.tflops["float32"])}, gpu.memory_gb,
               gpu.bandwidth_gbs)
    tasks, sizes, seeds = (len(str(d[k]).split(",")) for k in ("tasks", "sizes", "seeds"))
    trained_runs, n_test = tasks * sizes * seeds, d["test_examples"]
    demo_tokens = d["shots"] * lengths(task).mean

    def train(T, shared=True):
        return train_cost(Train("run", (task,), d["steps"], d["batch_size"], T, shared_prompt=shared), shape, fast,
                          "float32", accum=1)

    def evaluate(T):
        return eval_cost(Eval("test", task, n_test, T), shape, fast, "float32", batch_size=32)

    out = {}
    pt, lora, ev = train(d["num_virtual_tokens"]), train(0), evaluate(0)
    out["zero_shot"] = Cost(ev.flops * tasks, ev.seconds * tasks, ev.peak_bytes, ev.parts)
    few = evaluate(demo_tokens)
    out["few_shot"] = Cost(few.flops * tasks * seeds, few.seconds * tasks * seeds, few.peak_bytes, few.parts)
    ev_pt = evaluate(d["num_virtual_tokens"])
    for name, run, e in (("prompt_tuning", pt, ev_pt), ("lora", lora, ev)):
        out[name] = Cost((run.flops + e.flops) * trained_runs, (run.seconds + e.seconds) * trained_runs,
                         max(run.peak_bytes, e.peak_bytes), run.parts)
    params = shape.params
    if params * d["bytes_per_param"] * 1.2 > 0.9 * gpu.memory_gb * GB:
        out["full"] = None
    else:
        weight_grads = lora.flops / 2  # dW: as many FLOPs as the forward (train_cost's step is ~2 forwards)
        optimizer_bytes = 28 * params  # AdamW reads weight, gradient, two moments (16 B), writes three (12 B)
        step = weight_grads / d["steps"] / (UTILISATION * fast.tflops["float32"] * 1e12) \
            + optimizer_bytes / (gpu.bandwidth_gbs * 1e9)
        seconds = lora.seconds + d["steps"] * step
        parts = dict(lora.parts, **{"gradients + AdamW": 12 * params})
        out["full"] = Cost((lora.flops + weight_grads + ev.flops) * trained_runs, (seconds + ev.seconds) * trained_runs,
                           sum(parts.values()), parts)
    load = LOAD_S_MODEL * max(1.0, params / MODELS["smollm2-360m-instruct"].params)  # download + load, per size
    out["load"] = Cost(seconds=load)
    return out


def model_tuning_report(gpus=("T4", "A100")) -> str:
    """The gpu run of bench_vs_model_tuning (``--profile gpu``): minutes per method and model, on each GPU."""
    d = _model_tuning_design()
    lines = [f"bench_vs_model_tuning --profile gpu: {d['tasks']} x sizes {d['sizes']} x seeds {d['seeds']}, "
             f"{d['steps']} steps x batch {d['batch_size']}, {d['test_examples']} test examples; float32 weights"]
    for g in gpus:
        total = 0.0
        lines.append(f"  {g:<6}{'model':<24}" + "".join(f"{m:>15}" for m in
                                                       ("zero_shot", "few_shot", "prompt_tuning", "lora", "full"))
                     + f"{'peak GB':>9}")
        for model in d["models"]:
            c = model_tuning_cost(model, GPUS[g], d)
            runs = {k: v for k, v in c.items() if v is not None}
            total += sum(v.seconds for v in runs.values())
            cells = "".join(f"{c[m].seconds / 60:>11.1f} min" if c[m] is not None else f"{'does not fit':>15}"
                            for m in ("zero_shot", "few_shot", "prompt_tuning", "lora", "full"))
            peak = max(v.peak_bytes for v in runs.values()) / GB
            lines.append(f"  {'':<6}{model:<24}{cells}{peak:>9.1f}")
        lines.append(f"  {'':<6}total {total / 60:.0f} min on one {g} (model loads included)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a gpu-profile notebook breaks the T4 budget")
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES), help="profiles to print")
    parser.add_argument("--runs", metavar="NB", help="also list each run of notebook NB (e.g. 04) on a T4")
    args = parser.parse_args(argv)
    print(report(tuple(args.profile or ("cpu", "gpu"))))
    print("\n" + model_tuning_report())
    if args.runs:
        for name in args.profile or ("cpu", "gpu"):
            print("\n" + breakdown(PROFILES[name], args.runs, GPUS["T4"]))
    if args.check:
        problems = over_budget(PROFILES["gpu"])
        print()
        for line in problems:
            print("OVER BUDGET:", line)
        if problems:
            print("Turn the gpu profile's knobs in softprompt/profiles.py (steps, batch_size, grad_accum_steps, "
                  "max_length, eval_examples, the notebooks' own knobs) until this passes.")
            return 1
        print(f"gpu profile: every notebook fits {T4_LIMIT_GB:.0f} GB and {T4_LIMIT_MIN:.0f} min on a T4.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
