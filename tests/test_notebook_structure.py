"""Every numbered notebook has the series' frame: a first cell with title, Colab badge and learning goals;
a parameters cell that picks a profile; and at the end Summary, Questionnaire, Exercises, Further reading,
in that order."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
ENDING = ("## Summary", "## Questionnaire", "## Exercises", "## Further reading")


def test_there_is_a_series():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_frame(path):
    cells = json.loads(path.read_text())["cells"]
    first = "".join(cells[0]["source"])
    assert first.startswith(f"# {path.stem[:2]} · "), "title: '# NN · topic'"
    assert f"colab.research.google.com/github/softprompt-edu/softprompt/blob/main/notebooks/{path.name}" in first
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
