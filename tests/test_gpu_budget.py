"""benchmarks/gpu_budget.py: the committed gpu profile fits a T4, and the estimator's parts behave."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from softprompt.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_budget.py"
spec = importlib.util.spec_from_file_location("gpu_budget", SCRIPT)
budget = importlib.util.module_from_spec(spec)
sys.modules["gpu_budget"] = budget  # dataclasses look their module up there
spec.loader.exec_module(budget)

T4 = budget.GPUS["T4"]
SHAPE = budget.MODELS["smollm2-360m-instruct"]


def test_check_passes_for_the_committed_gpu_profile():
    run = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "every notebook fits" in run.stdout
    for nb in budget.NOTEBOOKS:  # the table has a row per notebook
        assert f"\n  {nb} " in run.stdout


def test_check_fails_when_a_knob_is_turned_too_far():
    gpu = PROFILES["gpu"]
    assert budget.over_budget(gpu) == []
    slow = gpu.with_(notebooks={**gpu.notebooks, "05": {**gpu.notebooks["05"], "distill_steps": 3000}})
    assert any("notebook 05" in p and "min" in p for p in budget.over_budget(slow))
    big = gpu.with_(batch_size=256, max_length=1024)
    assert any("GB" in p for p in budget.over_budget(big))
    assert budget.main(["--check"]) == 0


def _train(batch, T=20):
    return budget.Train("run", ("boolq",), 100, batch, T, max_length=256)


def test_doubling_the_batch_about_doubles_activation_memory_and_time():
    small = budget.train_cost(_train(16), SHAPE, T4, "float16", accum=1)
    large = budget.train_cost(_train(32), SHAPE, T4, "float16", accum=1)
    assert 1.9 < large.parts["activations"] / small.parts["activations"] <= 2.0
    assert 1.5 < large.seconds / small.seconds < 2.1
    assert large.parts["weights"] == small.parts["weights"]
    halves = budget.train_cost(_train(32), SHAPE, T4, "float16", accum=2)  # two micro-batches of 16
    assert halves.parts["activations"] == pytest.approx(small.parts["activations"], rel=0.01)
    assert halves.flops == large.flops


def test_fp32_costs_at_least_fp16():
    for nb in budget.NOTEBOOKS:
        half = budget.notebook_cost(PROFILES["gpu"].with_(dtype="float16"), nb, T4)
        full = budget.notebook_cost(PROFILES["gpu"].with_(dtype="float32"), nb, T4)
        assert full.peak_bytes >= half.peak_bytes
        assert full.seconds >= half.seconds
        assert full.flops == half.flops
    with pytest.raises(ValueError, match="bfloat16"):
        T4.dtype_for("bfloat16")
    assert T4.dtype_for("auto") == "float16" and budget.GPUS["A100"].dtype_for("auto") == "bfloat16"


def test_longer_prompts_and_more_steps_cost_more():
    def sst2(T):
        return budget.Train("run", ("sst2",), 100, 32, T)  # short rows, no cap: a longer prompt adds positions

    assert budget.train_cost(sst2(100), SHAPE, T4, "float16", 1).flops > budget.train_cost(sst2(20), SHAPE, T4,
                                                                                            "float16", 1).flops
    # under max_length a longer prompt leaves less room for the text (BoolQ rows are cut)
    capped = budget.train_cost(_train(32, T=100), SHAPE, T4, "float16", accum=1)
    base = budget.train_cost(_train(32, T=20), SHAPE, T4, "float16", accum=1)
    assert capped.parts["activations"] < base.parts["activations"]
    more = budget.Train("run", ("boolq",), 200, 32, 20, max_length=256)
    assert budget.train_cost(more, SHAPE, T4, "float16", accum=1).flops == pytest.approx(2 * base.flops)


@pytest.mark.parametrize("name", sorted(budget.MODELS))
def test_parameter_count_matches_transformers(name):
    s = budget.MODELS[name]
    cfg = LlamaConfig(hidden_size=s.hidden, intermediate_size=s.intermediate, num_attention_heads=s.heads,
                      num_key_value_heads=s.kv_heads, num_hidden_layers=s.layers, vocab_size=s.vocab,
                      tie_word_embeddings=s.tied)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    head = model.get_output_embeddings().weight
    untied = head is not model.get_input_embeddings().weight  # some transformers versions tie only on load
    assert sum(p.numel() for p in model.parameters()) - (head.numel() if untied else 0) == s.params


def _saved_bytes(layers, dtype):
    """Bytes autograd keeps for a forward of a tiny frozen Llama whose input needs a gradient (like a prompt)."""
    cfg = LlamaConfig(hidden_size=64, intermediate_size=160, num_attention_heads=4, num_key_value_heads=2,
                      num_hidden_layers=layers, vocab_size=100, tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(cfg).to(dtype).eval().requires_grad_(False)
    owned = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in owned:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(2, 16, 64, dtype=dtype, requires_grad=True)  # (B, L, d): no padding, the fused SDPA path
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(inputs_embeds=x, logits_to_keep=1)
    return sum(seen.values())


def test_activation_count_matches_what_autograd_saves():
    """fp32 on the CPU, where SDPA's fused kernel runs as on a GPU (CPU bf16 falls back to the math path)."""
    per_layer = (_saved_bytes(3, torch.float32) - _saved_bytes(1, torch.float32)) / 2 / (2 * 16)  # per token, layer
    gqa = budget.Shape(layers=1, hidden=64, heads=4, kv_heads=2, intermediate=160, vocab=100)
    repeated = budget.Shape(layers=1, hidden=64, heads=4, kv_heads=4, intermediate=160, vocab=100)
    # transformers passes grouped k, v to SDPA (enable_gqa) or, in older releases, repeats them per head
    expected = [budget.activation_bytes_per_token_layer(shape, 4) for shape in (gqa, repeated)]
    assert any(per_layer == pytest.approx(e, rel=0.05) for e in expected), (per_layer, expected)


def test_readme_budget_table_matches_the_estimator():
    """The README's gpu-profile table is the estimator's output for the committed profile, not typed in."""
    readme = (ROOT / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in budget.NOTEBOOKS:
            rows[cells[0]] = [float(c) for c in cells[1:]]
    assert sorted(rows) == list(budget.NOTEBOOKS), "README: the gpu budget table needs a row per notebook"
    gpu = PROFILES["gpu"]
    for nb, (pflop, t4_gb, *minutes) in rows.items():
        t4 = budget.notebook_cost(gpu, nb, T4)
        assert pflop == pytest.approx(t4.flops / 1e15, abs=0.006), nb
        assert t4_gb == pytest.approx(t4.peak_bytes / budget.GB, abs=0.06), nb
        for name, shown in zip(("T4", "L4", "A100", "H100"), minutes):
            estimate = budget.notebook_cost(gpu, nb, budget.GPUS[name]).seconds / 60
            assert shown == pytest.approx(estimate, abs=0.06), (nb, name)


def test_model_tuning_benchmark_estimate():
    """bench_vs_model_tuning --profile gpu: full fine-tuning of 1.7B does not fit a T4 (16 bytes a parameter) but an
    A100; every method costs more on a bigger model; the report shows both GPUs."""
    t4 = {m: budget.model_tuning_cost(m, T4) for m in ("smollm2-135m-instruct", "smollm2-1.7b-instruct")}
    a100 = budget.model_tuning_cost("smollm2-1.7b-instruct", budget.GPUS["A100"])
    assert t4["smollm2-1.7b-instruct"]["full"] is None and a100["full"] is not None
    assert a100["full"].peak_bytes < 0.9 * budget.GPUS["A100"].memory_gb * budget.GB
    for method in ("zero_shot", "few_shot", "prompt_tuning", "lora"):
        assert t4["smollm2-1.7b-instruct"][method].seconds > t4["smollm2-135m-instruct"][method].seconds, method
    small = t4["smollm2-135m-instruct"]
    assert small["full"].seconds > small["lora"].seconds and small["full"].peak_bytes > small["lora"].peak_bytes
    text = budget.model_tuning_report()
    assert "bench_vs_model_tuning" in text and "does not fit" in text and "A100" in text
