"""Build the student and the teacher edition of the course from the committed notebooks.

    python notebooks/editions.py [OUT]          # OUT/student and OUT/teacher (default build/editions)
    make editions                                # the same

Both editions are built from the same committed files, so they cannot drift apart:

* **student**: the numbered notebooks (``notebooks/NN_*.ipynb``, executed, with their exercise stubs and check
  cells), with every pointer to the solutions taken out of the text. No solutions notebook, no answer key.
  A student's check cells fail until the student has written the answer (``softprompt.exercises.check``).
* **teacher**: the numbered notebooks as committed, ``solutions/NN_*_solutions.ipynb`` (every exercise solved, its
  check asserted to pass) and ``solutions/answer_key.md`` (the questionnaires' answers).

CI proves both: nbval executes the committed notebooks (the student edition's check cells report failures, the
solutions' checks pass), and ``tests/test_editions.py`` builds both editions and checks what each holds.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# "Solutions: [link]." on a line of its own, and "*(Solution: [link], §1.)*" / "*(Solutions, §2.)*" inside an item
SOLUTIONS_LINE = re.compile(r"^Solutions?:.*\n?", re.M)
SOLUTIONS_NOTE = re.compile(r"\s*\*\(Solutions?\b.*?\)\*", re.S)


def series() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def teacher_files() -> list[Path]:
    """What the teacher edition adds: every solutions notebook and the answer key."""
    solutions = NOTEBOOKS / "solutions"
    return sorted(solutions.glob("[0-9][0-9]_*_solutions.ipynb")) + [solutions / "answer_key.md"]


def for_students(text: str) -> str:
    """A notebook's JSON text without its pointers to the solutions (markdown cells only; nothing else changes)."""
    nb = json.loads(text)
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"])
        stripped = SOLUTIONS_NOTE.sub("", SOLUTIONS_LINE.sub("", source))
        if stripped != source:
            lines = stripped.splitlines(keepends=True)
            cell["source"] = lines
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def build(out: Path) -> dict[str, list[Path]]:
    """Write ``out/student`` and ``out/teacher``; returns the files of each."""
    built: dict[str, list[Path]] = {"student": [], "teacher": []}
    for edition in built:
        shutil.rmtree(out / edition, ignore_errors=True)
        (out / edition / "notebooks").mkdir(parents=True)
    for path in series():
        student = out / "student" / "notebooks" / path.name
        student.write_text(for_students(path.read_text(encoding="utf-8")), encoding="utf-8")
        teacher = out / "teacher" / "notebooks" / path.name
        shutil.copyfile(path, teacher)
        built["student"].append(student)
        built["teacher"].append(teacher)
    for path in teacher_files():
        if not path.is_file():
            raise SystemExit(f"the teacher edition needs {path.relative_to(ROOT)}, which is missing")
        target = out / "teacher" / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        built["teacher"].append(target)
    return built


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / "build" / "editions"
    built = build(out.resolve())
    for edition, files in built.items():
        print(f"{edition} edition: {len(files)} files in {out / edition}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
