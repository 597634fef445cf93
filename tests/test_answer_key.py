"""The teacher's answer key answers every questionnaire question (issue 26).

Each numbered notebook ends with a ``## Questionnaire``: a numbered list of questions. The key,
``notebooks/solutions/answer_key.md`` (teacher edition only), has one section per notebook, headed
``## NN · <the notebook's title>``, holding a numbered list ``1. **question restated** answer...``, one item
per question. These tests read both as Markdown, so that a question added to a notebook without an answer in
the key (or an answer left empty, or a renamed notebook) fails here.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
KEY = ROOT / "notebooks" / "solutions" / "answer_key.md"

HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")  # ATX heading: level, title
ITEM = re.compile(r"^ ?(\d{1,9})[.)](?:[ \t]+(.*))?$")  # a top-level ordered-list item (nested ones are indented)
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")  # a code fence, at any indent (inside list items too)
QUESTIONNAIRE = re.compile(r"questionnaire\b", re.I)
BOLD_QUESTION = re.compile(r"^\*\*(.+?)\*\*(.*)$", re.S)


# ------------------------------------------------------------------------------------------------
# Reading Markdown
# ------------------------------------------------------------------------------------------------
def notebook_markdown(path: Path) -> str:
    """The notebook's markdown cells, in order, as one document."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = [c["source"] if isinstance(c["source"], str) else "".join(c["source"])
               for c in cells if c["cell_type"] == "markdown"]
    return "\n\n".join(sources)


def sections(markdown: str) -> list[tuple[int, str, list[str]]]:
    """``(level, title, body lines)`` for every heading, the body running to the next heading of the same or a
    higher level (so a section includes its subsections). Lines inside fenced code are never headings."""
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    headings, fence = [], None
    for i, line in enumerate(lines):
        if m := FENCE.match(line):
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            continue
        if fence is None and (m := HEADING.match(line)):
            headings.append((i, len(m.group(1)), m.group(2).strip()))
    out = []
    for j, (i, level, title) in enumerate(headings):
        end = next((k for k, lv, _ in headings[j + 1:] if lv <= level), len(lines))
        out.append((level, title, lines[i + 1:end]))
    return out


def numbered_items(lines: list[str]) -> list[tuple[int, str]]:
    """``(number, text)`` of each top-level ordered-list item in ``lines``.

    An item runs to the next top-level item or to a line that ends the list: a non-blank, unindented line after a
    blank one (a new paragraph). Indented lines, and unindented lines right after a text line (Markdown's lazy
    continuation), belong to the item. Items nested inside an item are indented, so they are part of its text;
    lines inside fenced code never start an item.
    """
    items, current, fence, previous_blank = [], None, None, False
    for line in lines:
        if m := FENCE.match(line):
            marker = m.group(1)
            fence = marker if fence is None else (None if marker[0] == fence[0] else fence)
        item = ITEM.match(line) if fence is None else None
        if item:
            current = [int(item.group(1)), [item.group(2) or ""]]
            items.append(current)
        elif current is not None:
            blank = not line.strip()
            if not blank and previous_blank and not line[:1].isspace() and fence is None:
                current = None  # a paragraph after the list
            else:
                current[1].append(line)
        previous_blank = not line.strip()
    return [(number, "\n".join(text).strip()) for number, text in items]


def notebook_title(path: Path) -> str:
    """The notebook's first level-1 heading, e.g. ``01 · Text initialization: what a soft prompt is made of``."""
    titles = [title for level, title, _ in sections(notebook_markdown(path)) if level == 1]
    assert titles, f"{path.name} has no '# NN · title' heading"
    return titles[0]


def questions(path: Path) -> list[tuple[int, str]]:
    """The numbered questions of the notebook's Questionnaire section."""
    found = [body for _, title, body in sections(notebook_markdown(path)) if QUESTIONNAIRE.match(title)]
    assert len(found) == 1, f"{path.name}: expected one Questionnaire heading, found {len(found)}"
    return numbered_items(found[0])


def key_sections(text: str) -> dict[str, tuple[str, list[tuple[int, str]]]]:
    """``{"01": (title, answers), ...}`` for the key's ``## NN · title`` sections."""
    out = {}
    for level, title, body in sections(text):
        if level == 2 and re.match(r"\d{2} · ", title):
            assert title[:2] not in out, f"the key has two sections for notebook {title[:2]}"
            out[title[:2]] = (title, numbered_items(body))
    return out


def answer_problems(path: Path, key: dict) -> list[str]:
    """What is wrong with the key's section for the notebook at ``path`` (an empty list: nothing)."""
    number = path.name[:2]
    if number not in key:
        return [f"the key has no section '## {notebook_title(path)}'"]
    title, answers = key[number]
    problems = []
    if title != notebook_title(path):
        problems.append(f"section title {title!r} is not the notebook's title {notebook_title(path)!r}")
    asked = questions(path)
    if not asked:
        problems.append(f"{path.name}: no numbered questions found in its Questionnaire")
    if len(answers) != len(asked):
        problems.append(f"{path.name} asks {len(asked)} questions; the key answers {len(answers)}")
    if [n for n, _ in answers] != list(range(1, len(answers) + 1)):
        problems.append(f"the key's answers for {number} are numbered {[n for n, _ in answers]}, not 1..n")
    for n, text in answers:
        m = BOLD_QUESTION.match(text)
        if not m or not m.group(1).strip():
            problems.append(f"{number} answer {n}: starts without the question restated in bold")
        elif not m.group(2).strip():
            problems.append(f"{number} answer {n}: the answer is empty")
    return problems


# ------------------------------------------------------------------------------------------------
# The key against the notebooks
# ------------------------------------------------------------------------------------------------
def test_the_key_is_for_teachers_only():
    text = KEY.read_text(encoding="utf-8")
    header = text.split("\n## ", 1)[0]
    assert "teacher edition" in header.lower() and "student edition" in header.lower(), (
        "the key's header says it goes into the teacher edition, never the student edition")


def test_one_section_per_notebook_in_order():
    key = key_sections(KEY.read_text(encoding="utf-8"))
    assert len(NOTEBOOKS) >= 5
    assert list(key) == [p.name[:2] for p in NOTEBOOKS], "one '## NN · title' section per numbered notebook, in order"
    assert [title for title, _ in key.values()] == [notebook_title(p) for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_question_has_an_answer(path):
    problems = answer_problems(path, key_sections(KEY.read_text(encoding="utf-8")))
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------
# The check itself: it must fail when a question has no answer
# ------------------------------------------------------------------------------------------------
def _with_extra_question(path: Path, tmp_path: Path) -> Path:
    """A copy of the notebook whose Questionnaire has one more question, added after its last one."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] != "markdown" or not re.search(r"^#+\s+Questionnaire", source, re.M):
            continue
        lines = source.split("\n")
        start = next(i for i, line in enumerate(lines) if re.match(r"#+\s+Questionnaire", line))
        end = next((i for i in range(start + 1, len(lines)) if HEADING.match(lines[i])), len(lines))
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        lines.insert(end, f"{len(questions(path)) + 1}. A question added later, with no answer in the key?")
        cell["source"] = "\n".join(lines)
        break
    copy = tmp_path / path.name
    copy.write_text(json.dumps(nb), encoding="utf-8")
    return copy


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_question_added_without_an_answer_fails(path, tmp_path):
    changed = _with_extra_question(path, tmp_path)
    assert len(questions(changed)) == len(questions(path)) + 1
    problems = answer_problems(changed, key_sections(KEY.read_text(encoding="utf-8")))
    assert any("questions; the key answers" in p for p in problems), problems


def test_an_empty_or_missing_answer_fails():
    path = NOTEBOOKS[0]
    text = KEY.read_text(encoding="utf-8")
    key = key_sections(text)
    number = path.name[:2]
    title, answers = key[number]
    emptied = {**key, number: (title, [(n, re.sub(r"(\*\*.+?\*\*).*", r"\1", a, flags=re.S)) if n == 1 else (n, a)
                                       for n, a in answers])}
    assert any("the answer is empty" in p for p in answer_problems(path, emptied))
    shortened = {**key, number: (title, answers[:-1])}
    assert any("questions; the key answers" in p for p in answer_problems(path, shortened))
    renamed = {**key, number: (title + " (old title)", answers)}
    assert any("is not the notebook's title" in p for p in answer_problems(path, renamed))


def test_the_parser_reads_lists_as_markdown_does():
    markdown = "\r\n".join([
        "## Summary", "", "1. not a question: another section", "",
        "## Questionnaire", "", "Answer from memory first.", "",
        "1. First question, written", "   over two lines?",
        "2) Second question, lazy", "continuation line?",
        "   1. a nested list item is part of question 2",
        "3. Third question, with code:", "", "   ```python", "4. not an item: inside a fence", "   ```",
        "", "4. Fourth?", "", "A closing paragraph after the list.", "", "5. a new list, still the questionnaire",
        "", "### Hints", "", "6. a subsection's item counts too",
        "", "## Exercises", "", "1. not a question",
    ])
    body = [b for _, title, b in sections(markdown) if QUESTIONNAIRE.match(title)][0]
    items = numbered_items(body)
    assert [n for n, _ in items] == [1, 2, 3, 4, 5, 6]
    assert items[0][1] == "First question, written\n   over two lines?"
    assert "nested list item" in items[1][1] and "continuation line" in items[1][1]
    assert "inside a fence" in items[2][1]
    assert "closing paragraph" not in items[3][1]
    fenced = "## Questionnaire\n\n```\n## Exercises\n```\n\n1. still in the questionnaire?"
    assert numbered_items([b for _, t, b in sections(fenced) if QUESTIONNAIRE.match(t)][0]) == [
        (1, "still in the questionnaire?")]
