"""benchmarks/bench_vs_model_tuning.py --quick: the whole comparison on a tiny model, in a temp dir, resumable."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_vs_model_tuning",
                                                  ROOT / "benchmarks" / "bench_vs_model_tuning.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def _intervals(cell):
    """Every (low, mean, high) of a cell's methods."""
    return [(m["low"], m["mean"], m["high"]) for m in cell["methods"].values()]


def test_quick_run_reports_every_method_with_intervals_and_resumes(tmp_path, capsys):
    bench = _bench()
    committed = sorted(p.name for p in bench.DEFAULT_RUNS.glob("*")) if bench.DEFAULT_RUNS.exists() else []
    argv = ["--quick", "--out-dir", str(tmp_path)]
    out = bench.main(argv)
    # per task: zero-shot once; per seed: few-shot once, and 3 trained methods per size: 2 x (1 + 2 x (1 + 2 x 3))
    assert out["complete"] and out["timing"]["runs_finished"] == out["timing"]["runs_planned"] == 30
    saved = json.loads((tmp_path / "model_tuning.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert str(tmp_path) not in (tmp_path / "model_tuning.json").read_text()  # no machine-local paths
    assert {"design", "models", "timing", "versions", "machine", "settings"} <= set(saved)
    assert {"torch", "transformers", "peft", "python"} <= set(saved["versions"])
    assert saved["design"]["lr"] == bench.LR and saved["design"]["seeds"] == [0, 1]
    entry = saved["models"]["tiny-llama"]
    assert entry["parameters"] > 0 and "random weights" in entry["source"]

    cells = [c for sizes in entry["tasks"].values() for c in sizes.values()] + list(entry["mean_over_tasks"].values())
    assert sorted(entry["tasks"]) == sorted(bench.TASKS.split(","))
    assert all(sorted(sizes) == ["n16", "n8"] for sizes in [*entry["tasks"].values(), entry["mean_over_tasks"]])
    for cell in cells:
        assert set(cell["methods"]) == set(bench.METHODS)
        for low, mean, high in _intervals(cell):  # inside [0, 1] and around the mean
            assert 0.0 <= low <= mean <= high <= 1.0, (low, mean, high)
        for method, s in cell["methods"].items():
            assert len(s["values"]) == (1 if method == "zero_shot" else 2)
            assert s["mean"] == pytest.approx(sum(s["values"]) / len(s["values"]))
        ref = cell["methods"]["prompt_tuning"]["values"]
        assert set(cell["paired_vs_prompt_tuning"]) == set(bench.METHODS) - {"prompt_tuning"}
        for method, d in cell["paired_vs_prompt_tuning"].items():
            values = cell["methods"][method]["values"] * (2 if method == "zero_shot" else 1)
            assert d["mean"] == pytest.approx(sum(a - b for a, b in zip(values, ref)) / 2)
            assert -1.0 <= d["low"] <= d["mean"] <= d["high"] <= 1.0
            assert d["wins"] + d["ties"] + d["losses"] == 2

    params = entry["params_trained"]
    assert params["zero_shot"] == params["few_shot"] == 0
    assert 0 < params["prompt_tuning"] < params["lora"] < params["full"] == entry["parameters"]
    assert params["prompt_tuning"] == 4 * 32  # T = 4 virtual tokens of d = 32
    for method, m in entry["memory_mb"].items():
        assert m["peak"] >= m["start"] > 0 and m["growth"] >= 0, method
        assert m["runs"] == (2 if method == "zero_shot" else 4 if method == "few_shot" else 8)
    assert set(entry["cost_seconds"]) == set(bench.METHODS)
    full_run = saved["timing"]["full_run"]
    assert full_run["runs_new"] == full_run["runs_planned"] == 30 and full_run["wall_seconds"] > 0
    assert (tmp_path / "model_tuning.png").stat().st_size > 1000

    # a second run trains nothing and records no invocation; the numbers are the same
    runs = tmp_path / "model_tuning_runs"
    invocations = sorted(runs.glob("invocation-*.json"))
    capsys.readouterr()
    again = bench.main(argv)
    assert "30 runs (30 cached)" in capsys.readouterr().out
    assert sorted(runs.glob("invocation-*.json")) == invocations
    assert again["models"] == out["models"] and again["timing"]["full_run"] == out["timing"]["full_run"]

    # resume: one run file lost, the rerun redoes exactly that one and gets the same number
    (lost,) = runs.glob("tiny-llama_yn_facts_lora_n8_s1-*.json")
    before = json.loads(lost.read_text())
    lost.unlink()
    bench.main(argv)
    assert "30 runs (29 cached)" in capsys.readouterr().out
    assert json.loads(lost.read_text())["accuracy"] == before["accuracy"]
    now = sorted(p.name for p in bench.DEFAULT_RUNS.glob("*")) if bench.DEFAULT_RUNS.exists() else []
    assert now == committed  # the committed runs directory is never touched


def test_quick_refuses_the_committed_runs_dir():
    bench = _bench()
    with pytest.raises(SystemExit, match="never writes"):
        bench.parse_args(["--quick", "--runs-dir", str(bench.DEFAULT_RUNS)])


def test_trained_methods_see_the_same_batches(monkeypatch):
    """Prompt tuning (sp.train), LoRA and full fine-tuning (the benchmark's loop) see the same batches in order."""
    import softprompt as sp
    from softprompt.batching import Batches
    from softprompt.testing import tiny_model, tiny_tokenizer

    bench = _bench()
    args = bench.parse_args(["--quick", "--out-dir", "/tmp/unused-bench-model-tuning"])
    seen, original = [], Batches.__call__

    def recording(self, step):
        batch = original(self, step)
        seen[-1].append(batch["input_ids"].tolist())
        return batch

    monkeypatch.setattr(Batches, "__call__", recording)
    task, tok = sp.load_task("formality"), tiny_tokenizer()
    for method in bench.TRAINED:
        seen.append([])
        job = dict(model="tiny-llama", task="formality", method=method, seed=1, n=8)
        result = bench.run_one(args, tiny_model("llama"), tok, task, job)
        assert 0.0 <= result["accuracy"] <= 1.0 and len(result["loss_first_last"]) == 2
    assert len(seen[0]) == args.steps and seen[0] == seen[1] == seen[2]


def test_few_shot_prefix_scores_as_the_demonstrations_in_the_context():
    """The fast path (demonstrations as a frozen prefix of their token embeddings) equals the text in the template."""
    import dataclasses

    import softprompt as sp
    from softprompt.testing import tiny_model, tiny_tokenizer

    bench = _bench()
    task, tok, model = sp.load_task("formality"), tiny_tokenizer(), tiny_model("llama")
    text, rows = bench.demonstrations(task, seed=0, shots=2, pool=8)
    labels = [task.splits["train"][r]["label"] for r in rows]
    assert sorted(labels) == [0, 1] and text.count("\n") == 2 * 2  # one per class; template line + answer line
    net, same_task, how = bench.few_shot_model(model, tok, task, text, test_examples=16)
    assert "prefix" in how and net is not model
    fast = sp.evaluate(net, tok, same_task, max_examples=16, return_predictions=True)
    slow_task = dataclasses.replace(task, template=text + task.template)
    slow = sp.evaluate(model, tok, slow_task, max_examples=16, return_predictions=True)
    assert torch.allclose(fast["scores"], slow["scores"], atol=1e-4)
    assert fast["predictions"] == slow["predictions"]


def test_intervals_stay_in_range():
    from softprompt.stats import logit_interval  # what the benchmark reports for a seed mean

    bench = _bench()
    for values in ([1.0, 1.0, 0.99, 1.0, 1.0], [0.0, 0.01, 0.0, 0.02, 0.0], [0.5, 0.9], [0.7] * 5):
        s = logit_interval(values)
        assert 0.0 <= s["low"] <= s["mean"] <= s["high"] <= 1.0, (values, s)
    assert logit_interval([0.7] * 5)["low"] == logit_interval([0.7] * 5)["high"] == pytest.approx(0.7)
    w = bench.wilson(8, 10)  # the textbook example: 0.8 of 10 -> [0.490, 0.943]
    assert (round(w["low"], 3), round(w["high"], 3)) == (0.49, 0.943)
    assert bench.wilson(10, 10)["high"] == pytest.approx(1.0) and bench.wilson(0, 10)["low"] == pytest.approx(0.0)
    assert bench.wilson(10, 10)["high"] <= 1.0 and bench.wilson(0, 10)["low"] >= 0.0
    d = bench.paired([1.0, 0.0], [0.0, 1.0])  # a t interval of +-12.7: cut to the range a difference can take
    assert d["low"] == -1.0 and d["high"] == 1.0 and math.isclose(d["mean"], 0.0, abs_tol=1e-12)
