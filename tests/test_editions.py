"""The student and the teacher edition, built from the committed notebooks (``notebooks/editions.py``).

nbval executes the committed notebooks (the student edition's check cells report failures, the solutions' checks
pass); here both editions are built and what each holds is checked.
"""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
import editions  # noqa: E402


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "code"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("editions")
    return out, editions.build(out)


def test_the_student_edition_holds_no_solutions(built):
    out, files = built
    student = sorted(p.relative_to(out / "student") for p in (out / "student").rglob("*") if p.is_file())
    assert student == [Path("notebooks") / p.name for p in editions.series()], "the numbered notebooks, nothing else"
    solution_code = {c for p in editions.teacher_files() if p.suffix == ".ipynb" for c in code_cells(p)}
    for path in files["student"]:
        text = path.read_text(encoding="utf-8")
        assert "_solutions.ipynb" not in text and "answer_key" not in text, f"{path.name} points at the solutions"
        committed = editions.NOTEBOOKS / path.name
        assert code_cells(path) == code_cells(committed), "the code is the committed notebook's, cell for cell"
        leaked = [c for c in code_cells(path) if c in solution_code - set(code_cells(committed)) and len(c) > 40]
        assert not leaked, f"{path.name} holds solution code: {leaked[0][:200]}"


def test_every_check_cell_follows_a_stub_the_student_fills(built):
    _, files = built
    for path in files["student"]:
        cells = code_cells(path)
        for i, cell in enumerate(cells):
            for exercise in re.findall(r'check\("(\d\d\.\d+)"\)', cell):
                stub = cells[i - 1]
                assert "NotImplementedError" in stub or "# your answer" in stub, (path.name, exercise, stub[:200])


def test_the_teacher_edition_is_the_committed_files(built):
    out, files = built
    for path in editions.series() + editions.teacher_files():
        copy = out / "teacher" / path.relative_to(ROOT)
        assert copy.read_bytes() == path.read_bytes(), path.name
    assert len(files["teacher"]) == len(editions.series()) + len(editions.teacher_files())


def test_the_student_text_loses_only_the_pointers():
    item = ("1. **★ Add a prompt.** Add a task. *(Solution: [`solutions/04_x_solutions.ipynb`](https://github.com/"
            "o/n/blob/main/notebooks/solutions/04_x_solutions.ipynb), §1.)*\n2. **★ Ties.** Build one. *(Solutions, "
            "§2.)*\n\nSolutions: [`solutions/04_x_solutions.ipynb`](https://x/04_x_solutions.ipynb).\n\n## Further")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": [item]}], "metadata": {}, "nbformat": 4,
          "nbformat_minor": 5}
    out = "".join(json.loads(editions.for_students(json.dumps(nb)))["cells"][0]["source"])
    assert out == "1. **★ Add a prompt.** Add a task.\n2. **★ Ties.** Build one.\n\n\n## Further"


def test_make_editions_builds_them():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^editions:.*\n\t.*notebooks/editions\.py", make, re.M)
