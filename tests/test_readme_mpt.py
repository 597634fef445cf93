"""The README's MPT paragraph quotes numbers from the committed results file (issue 13).

Active once ``softprompt/data/results/mpt_transfer.json`` holds the benchmark's full run
(``"complete": true``); until then the test skips and says why. The paragraph sits between
``<!-- mpt-results -->`` and ``<!-- /mpt-results -->`` in README.md; every decimal number in it must be
a value of the results file written with the same number of decimals (accuracies, interval ends,
paired differences, wall time in hours...).
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "softprompt" / "data" / "results" / "mpt_transfer.json"
EARLIER = RESULTS.with_name("mpt_transfer_earlier_run.json")
BEGIN, END = "<!-- mpt-results -->", "<!-- /mpt-results -->"


def _numbers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers(v)


def quoted_numbers(paragraph: str) -> list[str]:
    """Decimal numbers as written (``0.712``, ``-0.03``, ``71.2`` for a percentage stays as written)."""
    return re.findall(r"(?<![\w.])[-−]?\d+\.\d+", paragraph)


def matches(text: str, values) -> bool:
    decimals = len(text.split(".")[1])
    x = float(text.replace("−", "-"))
    return any(round(v, decimals) == x or round(100 * v, decimals) == x for v in values)


def test_quoted_numbers_helper():
    assert quoted_numbers("MPT 0.712 [0.690, 0.734]; diff −0.03, 3 seeds, v1.2x") == ["0.712", "0.690", "0.734",
                                                                                         "−0.03"]
    assert matches("0.71", [0.7123]) and matches("71.2", [0.7123]) and not matches("0.72", [0.7123])


def test_readme_mpt_numbers_come_from_the_results_file():
    if not RESULTS.exists():
        pytest.skip(f"{RESULTS.relative_to(ROOT)} not committed yet: run benchmarks/bench_mpt_transfer.py")
    results = json.loads(RESULTS.read_text())
    if not results.get("complete"):
        timing = results.get("timing", {})
        pytest.skip(f"the MPT benchmark's full run is not finished ({timing.get('runs_finished')}/"
                    f"{timing.get('runs_planned')} runs): the README paragraph waits for it")
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme, f"README.md needs its MPT paragraph between {BEGIN} and {END}"
    paragraph = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    numbers = quoted_numbers(paragraph)
    assert numbers, "the MPT paragraph quotes no number from the results file"
    values = list(_numbers(results))
    if EARLIER.exists():  # the paragraph compares with the first full run (same settings, another machine)
        values += list(_numbers(json.loads(EARLIER.read_text())))
    wrong = [n for n in numbers if not matches(n, values)]
    assert not wrong, f"README MPT paragraph quotes {wrong}, not in {RESULTS.name} or {EARLIER.name} at that precision"


DIAGNOSIS = ROOT / "softprompt" / "data" / "results" / "mpt_diagnosis.json"


def test_readme_diagnosis_numbers_come_from_the_diagnosis_file():
    """The README's paragraph on making P* learn quotes softprompt/data/results/mpt_diagnosis.json."""
    readme = (ROOT / "README.md").read_text()
    begin, end = "<!-- mpt-diagnosis -->", "<!-- /mpt-diagnosis -->"
    assert begin in readme and end in readme, f"README.md needs its MPT diagnosis between {begin} and {end}"
    paragraph = readme.split(begin, 1)[1].split(end, 1)[0]
    numbers = quoted_numbers(paragraph)
    assert len(numbers) >= 10
    values = list(_numbers(json.loads(DIAGNOSIS.read_text())))
    wrong = [n for n in numbers if not matches(n, values)]
    assert not wrong, f"README MPT diagnosis quotes {wrong}, not in {DIAGNOSIS.name} at that precision"


def test_the_recipe_defaults_are_the_diagnosed_variant_that_meets_the_bar():
    """The defaults of MPTRecipe are the variant whose student reached every teacher (issue 13's bar)."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_mpt_transfer as bench
        import diagnose_mpt
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    diagnosis = json.loads(DIAGNOSIS.read_text())
    defaults = diagnose_mpt.effective(bench.recipe_dict(bench.make_recipe(bench.parse_args([]))), {})
    current = [n for n, row in diagnosis.items() if n != "_meta"
               and diagnose_mpt.effective(row["recipe"], row["train_kw"]) == defaults]
    assert current, "no diagnosed variant is MPTRecipe's defaults: run benchmarks/diagnose_mpt.py on them"
    assert diagnosis["_meta"]["current_defaults"] == current
    row = diagnosis[current[0]]
    assert row["every_task_at_least_its_teacher"] and row["every_task_at_least_teacher_mean"]
    assert row["p_star_rel_change"] > 1.0  # P* moved by more than its own initial norm


def test_the_committed_results_cross_source_draws_with_target_seeds():
    """Every arm built on the sources has at least 3 source draws x 5 target seeds; every interval stays in range."""
    results = json.loads(RESULTS.read_text())
    if not results.get("complete"):
        pytest.skip("the MPT benchmark's full run is not finished")
    source_arms = set(results["design"]["source_arms"])
    for key, entry in results["settings"].items():
        for arm, a in entry["arms"].items():
            if arm.split("_k")[0] in source_arms:  # spot, mpt_plain, mpt_distill and the sweep's mpt_distill_kN
                assert (a["n_draws"], a["n_seeds"]) >= (3, 5) and len(a["values"]) == a["n_draws"] * a["n_seeds"], (
                    f"{key} {arm}: {a['n_draws']} draws x {a['n_seeds']} seeds")
                assert len(a["draw_means"]) == a["n_draws"] and a["variance"]["share_draw"] is not None
            assert 0.0 <= a["low"] <= a["mean"] <= a["high"] <= 1.0, f"{key} {arm}: interval outside [0, 1]"
        for arm, d in entry["paired_vs_mpt_distill"].items():
            assert -1.0 <= d["low"] <= d["mean"] <= d["high"] <= 1.0, f"{key} mpt_distill - {arm}"
