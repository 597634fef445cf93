"""Self-checking exercises: every ★★/★★★ code exercise has an otter-grader check, a check cell in its notebook
and a passing check in its solutions notebook; ``check`` names what is wrong. Exercise-specific checks are tested
in ``tests/test_exercises_NN.py`` (right answers pass, wrong answers fail with a specific message)."""

import json
import re
import sys
from pathlib import Path

import pytest

from softprompt.exercises import CHECKS, check, exercises

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
SOLUTIONS = {p.name[:2]: p for p in sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))}
ITEM = re.compile(r"^\s*(\d+)\.\s+(?:\*\*)?\s*(★+)(.*?)(?=^\s*\d+\.\s|\Z)", re.M | re.S)  # "3. ★★ ..."
# an exercise that asks to run given calls and explain what they show, with no code of the student's own, says so
NO_CODE = "*(explain: no check)*"


def cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]


def graded_exercises(nb: str) -> dict[str, tuple[int, str]]:
    """{"NN.K": (stars, text)} from the notebook's Exercises section."""
    text = next(c for c in cells(NOTEBOOKS[nb]) if "## Exercises" in c).split("## Exercises", 1)[1]
    return {f"{nb}.{k}": (len(stars), rest) for k, stars, rest in ITEM.findall(text)}


def test_there_are_checks():
    assert exercises() and all(re.fullmatch(r"\d\d\.\d+", e) for e in exercises())


@pytest.mark.parametrize("nb", sorted(NOTEBOOKS))
def test_every_code_exercise_of_two_or_three_stars_has_a_check(nb):
    graded = graded_exercises(nb)
    assert graded, f"{NOTEBOOKS[nb].name}: no graded exercises found"
    missing = [e for e, (stars, text) in graded.items() if stars >= 2 and e not in exercises() and NO_CODE not in text]
    assert not missing, f"give these a check in {CHECKS} (or mark them {NO_CODE} if they ask for no code): {missing}"
    assert not [e for e in exercises() if e.startswith(nb) and e not in graded], "a check for no exercise"


@pytest.mark.parametrize("exercise", exercises())
def test_each_check_is_run_in_the_notebook_and_passes_in_the_solutions(exercise):
    source = (CHECKS / f"{exercise}.py").read_text()
    assert f'name = "{exercise}"' in source and "OK_FORMAT = False" in source, "an otter exception-based test file"
    call = f'check("{exercise}")'
    nb = exercise[:2]
    assert any(call in c for c in cells(NOTEBOOKS[nb])), f"{NOTEBOOKS[nb].name} has no check cell {call}"
    solved = [c for c in cells(SOLUTIONS[nb]) if call in c]
    assert solved and all("passed_all" in c for c in solved), f"{SOLUTIONS[nb].name} must assert {call} passes"


def test_an_unknown_exercise_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"no check for exercise '09\.9'.*04\.3"):
        check("09.9")


def test_without_otter_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "otter.execute", None)
    with pytest.raises(ImportError, match="pip install otter-grader"):
        check(exercises()[0])
