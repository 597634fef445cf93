"""softprompt.results: the benchmark results ship inside the package and load by name."""

import json
import tomllib
from pathlib import Path

import pytest

from softprompt.results import RESULTS_DIR, available_results, load_results

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_results_load_by_name():
    assert {"task_baselines", "mpt_transfer"} <= set(available_results())
    for name in available_results():
        assert load_results(name) == json.loads((RESULTS_DIR / f"{name}.json").read_text())
    assert load_results("task_baselines")["rows"], "task_baselines has its table"


def test_an_unknown_name_says_which_exist():
    with pytest.raises(ValueError, match="task_baselines"):
        load_results("no_such_benchmark")


def test_results_are_package_data_and_the_scripts_write_there():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "data/results/*.json" in package_data["softprompt"]
    assert not (ROOT / "benchmarks" / "results" / "task_baselines.json").exists()
    for script, name in [("task_baselines.py", "task_baselines.json"), ("bench_mpt_transfer.py", "mpt_transfer.json")]:
        text = (ROOT / "benchmarks" / script).read_text()
        assert "softprompt" in text and name in text and "data" in text
