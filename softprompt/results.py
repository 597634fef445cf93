"""The benchmark results the notebooks quote, shipped inside the package (so they load on Colab too).

``benchmarks/task_baselines.py`` and ``benchmarks/bench_mpt_transfer.py`` write their JSON into
``softprompt/data/results/``; a notebook reads it with ``load_results("mpt_transfer")``, never a path.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

__all__ = ["RESULTS_DIR", "available_results", "load_results"]

RESULTS_DIR = Path(__file__).resolve().parent / "data" / "results"  # where the benchmark scripts write


def available_results() -> list[str]:
    """The names ``load_results`` accepts: the JSON files shipped in ``softprompt/data/results``."""
    folder = resources.files("softprompt") / "data" / "results"
    return sorted(f.name[: -len(".json")] for f in folder.iterdir() if f.name.endswith(".json"))


def load_results(name: str) -> dict:
    """One committed results file as a dict, e.g. ``load_results("task_baselines")``."""
    known = available_results()
    if name not in known:
        raise ValueError(f"no results named {name!r}; the package ships {known}. "
                         "Run the benchmark that writes it (benchmarks/) to make it.")
    text = (resources.files("softprompt") / "data" / "results" / f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)
