"""benchmarks/bench_mpt_transfer.py --quick: the whole benchmark on a tiny model, in a temp dir, resumable."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_mpt_transfer", ROOT / "benchmarks" / "bench_mpt_transfer.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_quick_run_reports_every_arm_with_intervals_and_resumes(tmp_path, capsys):
    bench = _bench()
    committed = sorted(p.name for p in bench.DEFAULT_RUNS.glob("*")) if bench.DEFAULT_RUNS.exists() else []
    argv = ["--quick", "--out-dir", str(tmp_path)]
    out = bench.main(argv)
    # 2 seeds x (2 main shot sizes + 1 control) x 7 arms + 2 seeds x 2 sweep counts
    assert len(out["settings"]) == 3 and out["complete"]
    for key, entry in out["settings"].items():
        assert set(bench.ARMS) <= set(entry["arms"]), key
        assert all(a["n"] == 2 and len(a["values"]) == 2 for a in entry["arms"].values())
        assert set(entry["paired_vs_mpt_distill"]) == set(entry["arms"]) - {"mpt_distill"}
        for arm, d in entry["paired_vs_mpt_distill"].items():
            diffs = [x - y for x, y in zip(entry["arms"]["mpt_distill"]["values"], entry["arms"][arm]["values"])]
            assert d["mean"] == pytest.approx(sum(diffs) / 2)
    assert sorted(out["source_count_sweep"], key=int) == ["1", "2", "3"]
    assert out["source_count_sweep"]["1"]["sources"] == ["yn_colors"]
    assert set(out["sources"]) >= {"source_teachers", "source_mpt_plain_k3", "source_mpt_distill_k1"}
    assert out["spot"]["yn_facts"]["source"] in ("yn_colors", "entailment", "yn_review")
    assert (tmp_path / "mpt_transfer.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "mpt_transfer.json").read_text())
    assert saved["timing"]["runs_finished"] == saved["timing"]["runs_planned"] == 46
    assert str(tmp_path) not in (tmp_path / "mpt_transfer.json").read_text()  # no machine-local paths

    # resume: one run file lost, the rerun redoes exactly that one and gets the same number
    runs = sorted((tmp_path / "mpt_runs").glob("yn_facts_random_n8_s1-*.json"))
    assert len(runs) == 1
    before = json.loads(runs[0].read_text())
    runs[0].unlink()
    capsys.readouterr()
    again = bench.main(argv)
    printed = capsys.readouterr().out
    assert "46 target runs (45 cached)" in printed
    assert json.loads(runs[0].read_text())["accuracy"] == before["accuracy"]
    assert again["settings"] == out["settings"]
    now = sorted(p.name for p in bench.DEFAULT_RUNS.glob("*")) if bench.DEFAULT_RUNS.exists() else []
    assert now == committed  # the committed runs directory is never touched


def test_quick_refuses_the_committed_runs_dir():
    bench = _bench()
    with pytest.raises(SystemExit, match="never writes"):
        bench.parse_args(["--quick", "--runs-dir", str(bench.DEFAULT_RUNS)])


def test_two_workers_share_the_queue_and_record_the_wall_time(tmp_path):
    bench = _bench()
    one = bench.main(["--quick", "--out-dir", str(tmp_path / "one")])
    two = bench.main(["--quick", "--workers", "2", "--out-dir", str(tmp_path / "two")])
    # the same runs, whichever process ran them: the results do not depend on the split
    assert two["settings"] == one["settings"] and two["source_count_sweep"] == one["source_count_sweep"]
    runs = tmp_path / "two" / "mpt_runs"
    # every source trained once (the locks), and the invocation that did it all is the report's clock
    assert sorted(p.name.rsplit("-", 1)[0] for p in runs.glob("source_*.json")) == [
        "source_mpt_distill_k1", "source_mpt_distill_k2", "source_mpt_distill_k3", "source_mpt_plain_k3",
        "source_teachers"]
    (record,) = [json.loads(p.read_text()) for p in runs.glob("invocation-*.json")]
    assert record["workers"] == 2 and record["target_runs_new"] == record["target_runs_planned"] == 46
    assert two["timing"]["full_run"]["wall_seconds"] == record["wall_seconds"] > 0
    # a resumed invocation trains nothing and records nothing; the clock stays the whole run's
    again = bench.main(["--quick", "--workers", "2", "--out-dir", str(tmp_path / "two")])
    assert len(list(runs.glob("invocation-*.json"))) == 1
    assert again["timing"]["full_run"] == two["timing"]["full_run"]
    assert one["timing"]["full_run"]["workers"] == 1


def test_workers_must_be_positive():
    with pytest.raises(SystemExit, match="--workers"):
        _bench().parse_args(["--quick", "--workers", "0"])
