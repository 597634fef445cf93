"""benchmarks/bench_mpt_transfer.py --quick: the whole benchmark on a tiny model, in a temp dir, resumable.

--quick has 2 source draws x 2 target seeds, so the two-level statistics (bootstrap over draws and seeds,
variance split) run on real benchmark output; their own reference tests are in tests/test_stats.py.
"""

import importlib.util
import json
from pathlib import Path

import pytest

from softprompt.stats import two_level_bootstrap

ROOT = Path(__file__).resolve().parents[1]
VANILLA = ("random", "sample_vocab", "text", "class_labels")
RUNS = 46 + 22  # draw 0: 2 seeds x (3 settings x 7 arms + 2 sweep counts); draw 1: 2 seeds x (3 x 3 source arms + 2)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_mpt_transfer", ROOT / "benchmarks" / "bench_mpt_transfer.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_quick_run_reports_every_arm_with_two_level_intervals_and_resumes(tmp_path, capsys):
    bench = _bench()
    committed = sorted(p.name for p in bench.DEFAULT_RUNS.glob("*")) if bench.DEFAULT_RUNS.exists() else []
    argv = ["--quick", "--out-dir", str(tmp_path)]
    # first draw 0 alone (the cache as it was before there were draws), then draws 0 and 1: draw 0's files are
    # found under the same names, and only draw 1's sources and runs are trained
    first = bench.main([*argv, "--draws", "0"])
    assert first["complete"] and first["timing"]["runs_planned"] == 46
    names = sorted(p.name for p in (tmp_path / "mpt_runs").glob("*.json") if not p.name.startswith("invocation"))
    dry = bench.main([*argv, "--dry-run"])
    assert dry["cached"] == 46 and all(j["draw"] == 1 for j in dry["todo"]) and len(dry["todo"]) == 22
    assert dry["sources_to_train"] == ["source_teachers_d1", "source_mpt_plain_k3_d1", "source_mpt_distill_k3_d1",
                                       "source_mpt_distill_k2_d1", "source_mpt_distill_k1_d1"]
    out = bench.main(argv)
    assert set(names) <= {p.name for p in (tmp_path / "mpt_runs").glob("*.json")}  # draw 0's files, unchanged
    assert len(out["settings"]) == 3 and out["complete"]
    for key, entry in out["settings"].items():
        assert set(bench.ARMS) <= set(entry["arms"]), key
        for arm, a in entry["arms"].items():
            draws = 1 if arm in VANILLA else 2
            assert (a["n_draws"], a["n_seeds"], a["n"], len(a["values"])) == (draws, 2, 2 * draws, 2 * draws)
            assert 0.0 <= a["low"] <= a["mean"] <= a["high"] <= 1.0
            assert 0.0 <= a["mixed_t"]["low"] <= a["mixed_t"]["high"] <= 1.0
            assert (a["variance"]["draw"] is None) == (arm in VANILLA)
            # the interval is the two-level bootstrap of the table the report shows
            boot = two_level_bootstrap(a["values_by_draw"], n_boot=1000)
            assert (a["low"], a["high"]) == (boot["low"], boot["high"])
        assert set(entry["paired_vs_mpt_distill"]) == set(entry["arms"]) - {"mpt_distill"}
        ref = entry["arms"]["mpt_distill"]["values_by_draw"]  # (draws, seeds)
        for arm, d in entry["paired_vs_mpt_distill"].items():
            other = entry["arms"][arm]["values_by_draw"]
            other = other * 2 if len(other) == 1 else other  # a vanilla arm pairs with every draw, by seed
            diffs = [x - y for r, o in zip(ref, other) for x, y in zip(r, o)]
            assert d["mean"] == pytest.approx(sum(diffs) / 4) and d["n_draws"] == 2
            assert -1.0 <= d["low"] <= d["high"] <= 1.0
    assert sorted(out["source_count_sweep"], key=int) == ["1", "2", "3"]
    assert out["source_count_sweep"]["1"]["sources"] == ["yn_colors"]
    assert out["source_count_sweep"]["1"]["paired_vs_random"]["n_draws"] == 2
    assert set(out["sources"]) >= {"source_teachers", "source_mpt_plain_k3", "source_mpt_distill_k1",
                                   "source_teachers_d1", "source_mpt_distill_k1_d1"}
    assert set(out["teachers_by_draw"]) == set(out["spot_by_draw"]) == {"0", "1"}
    assert out["spot"]["yn_facts"]["source"] in ("yn_colors", "entailment", "yn_review")
    assert out["variance_split"]["arms_counted"] >= 1
    assert (tmp_path / "mpt_transfer.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "mpt_transfer.json").read_text())
    assert saved["timing"]["runs_finished"] == saved["timing"]["runs_planned"] == RUNS
    # two invocations built the cache (draw 0, then draw 1): none did it all, both are counted
    assert saved["timing"]["full_run"] is None and len(saved["timing"]["invocations"]) == 2
    assert [i["draws_trained"] for i in saved["timing"]["invocations"]] == [[0], [1]]
    assert str(tmp_path) not in (tmp_path / "mpt_transfer.json").read_text()  # no machine-local paths

    # resume: one run file of each kind lost, the rerun redoes exactly those and gets the same numbers
    lost = [*(tmp_path / "mpt_runs").glob("yn_facts_random_n8_s1-*.json"),
            *(tmp_path / "mpt_runs").glob("yn_facts_mpt_distill_n8_s1_d1-*.json")]
    assert len(lost) == 2
    before = [json.loads(p.read_text()) for p in lost]
    for p in lost:
        p.unlink()
    capsys.readouterr()
    again = bench.main(argv)
    printed = capsys.readouterr().out
    assert f"{RUNS} target runs ({RUNS - 2} cached)" in printed
    assert [json.loads(p.read_text())["accuracy"] for p in lost] == [b["accuracy"] for b in before]
    assert again["settings"] == out["settings"]
    now = sorted(p.name for p in bench.DEFAULT_RUNS.glob("*")) if bench.DEFAULT_RUNS.exists() else []
    assert now == committed  # the committed runs directory is never touched


def test_quick_refuses_the_committed_runs_dir():
    bench = _bench()
    with pytest.raises(SystemExit, match="never writes"):
        bench.parse_args(["--quick", "--runs-dir", str(bench.DEFAULT_RUNS)])


def test_two_workers_share_the_queue_and_record_the_wall_time(tmp_path):
    bench = _bench()
    seed = ["--seeds", "0"]  # one target seed (2 draws): half the runs, the same queue and locks
    one = bench.main(["--quick", *seed, "--out-dir", str(tmp_path / "one")])
    two = bench.main(["--quick", *seed, "--workers", "2", "--out-dir", str(tmp_path / "two")])
    # the same runs, whichever process ran them: the results do not depend on the split
    assert two["settings"] == one["settings"] and two["source_count_sweep"] == one["source_count_sweep"]
    runs = tmp_path / "two" / "mpt_runs"
    # every source of every draw trained once (the locks), and the invocation that did it all is the report's clock
    assert sorted(p.name.rsplit("-", 1)[0] for p in runs.glob("source_*.json")) == sorted(
        f"source_{s}{d}" for s in ("mpt_distill_k1", "mpt_distill_k2", "mpt_distill_k3", "mpt_plain_k3", "teachers")
        for d in ("", "_d1"))
    (record,) = [json.loads(p.read_text()) for p in runs.glob("invocation-*.json")]
    assert record["workers"] == 2 and record["target_runs_new"] == record["target_runs_planned"] == RUNS // 2
    assert two["timing"]["full_run"]["wall_seconds"] == record["wall_seconds"] > 0
    # a resumed invocation trains nothing and records nothing; the clock stays the whole run's
    again = bench.main(["--quick", *seed, "--workers", "2", "--out-dir", str(tmp_path / "two")])
    assert len(list(runs.glob("invocation-*.json"))) == 1
    assert again["timing"]["full_run"] == two["timing"]["full_run"]
    assert one["timing"]["full_run"]["workers"] == 1


def test_bad_arguments():
    with pytest.raises(SystemExit, match="--workers"):
        _bench().parse_args(["--quick", "--workers", "0"])
    with pytest.raises(SystemExit, match="--draws"):
        _bench().parse_args(["--quick", "--draws", "0,0"])


def test_draw_zero_keeps_its_file_names_and_hashes():
    """Draw 0 is the cache from before there were draws: the same names and hashes (one of each kind, pinned
    from benchmarks/results/mpt_runs as committed before issue 24); later draws get ``_d<draw>`` and new hashes."""
    bench = _bench()
    args = bench.parse_args([])
    dirs = bench.runs_dirs(args)
    job = dict(target="yn_facts", arm="mpt_distill", shots=32, seed=0, num_sources=5)
    assert dirs[0].file(bench.run_name(job | {"draw": 0}, 5), job).name == "yn_facts_mpt_distill_n32_s0-62f5b43838.json"
    d1 = dirs[1].file(bench.run_name(job | {"draw": 1}, 5), job).name
    assert d1.startswith("yn_facts_mpt_distill_n32_s0_d1-") and not d1.endswith("62f5b43838.json")
    vanilla = dict(target="yn_facts", arm="random", shots=8, seed=0, num_sources=5)
    name = bench.run_name(vanilla, 5)
    assert dirs[0].file(name, vanilla, scope="vanilla").name == dirs[2].file(name, vanilla, scope="vanilla").name \
        == "yn_facts_random_n8_s0-4092ca6837.json"
    fields = {"kind": "teachers", "sources": args.sources}
    assert dirs[0].file("source_teachers", fields, scope="teachers").name == "source_teachers-6589ca4826.json"
