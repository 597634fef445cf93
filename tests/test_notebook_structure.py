"""Every numbered notebook has the series' frame: a first cell with title, Colab badge and learning goals;
a parameters cell that picks a profile; and at the end Summary, Questionnaire, Exercises, Further reading,
in that order."""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
from fork import badge_prefix, repository  # noqa: E402  (notebooks/fork.py: the course's one repository URL)
NOTEBOOKS = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
ENDING = ("## Summary", "## Questionnaire", "## Exercises", "## Further reading")


def test_there_is_a_series():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_frame(path):
    cells = json.loads(path.read_text())["cells"]
    first = "".join(cells[0]["source"])
    assert first.startswith(f"# {path.stem[:2]} · "), "title: '# NN · topic'"
    assert f"{badge_prefix(repository())}notebooks/{path.name}" in first, "the Colab badge opens this notebook"
    assert "What you will learn" in first
    params = [c for c in cells if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "one code cell tagged 'parameters' (papermill's convention)"
    assert "".join(params[0]["source"]).startswith("# parameters") and "PROFILE = None" in "".join(params[0]["source"])
    assert any("pick_profile(PROFILE)" in "".join(c["source"]) for c in cells), "the profile is picked from PROFILE"
    headings = [line.strip() for c in cells if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    at = [headings.index(h) if h in headings else -1 for h in ENDING]
    assert -1 not in at, f"missing {[h for h, i in zip(ENDING, at) if i < 0]}"
    assert at == sorted(at), f"the ending must be {ENDING} in that order"


LOOK_INSIDE = re.compile(r"^\s*#\s*(look inside|by hand)\b", re.I | re.M)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_look_inside_cell_checks_the_library(path):
    """Issue 14: each notebook builds or opens up the idea by hand and asserts it equals the library. The cell is
    marked by a comment line starting ``# Look inside`` or ``# By hand`` and holds an ``assert``."""
    cells = json.loads(path.read_text())["cells"]
    marked = [c for c in cells if c["cell_type"] == "code" and LOOK_INSIDE.search("".join(c["source"]))]
    assert marked, "no code cell marked '# Look inside' / '# By hand'"
    assert any("assert" in "".join(c["source"]) for c in marked), "a look-inside cell must assert its equality"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_are_graded(path):
    """Every exercise starts with its grade, ★ to ★★★, and at least one is an implementation exercise (★★★)."""
    cells = json.loads(path.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    exercises = text.split("## Exercises", 1)[1].split("## Further reading", 1)[0]
    items = re.findall(r"^\d+\.\s+(.{0,12})", exercises, re.M)
    assert items, "no numbered exercises"
    ungraded = [i for i in items if "★" not in i]
    assert not ungraded, f"exercises without a grade at the start: {ungraded}"
    assert any("★★★" in i for i in items), "no ★★★ (implement it yourself) exercise"
