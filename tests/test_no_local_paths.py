"""Committed outputs, results files and docs name no directory of the machine that made them.

A saved notebook output such as ``/root/.cache/softprompt/...`` or ``/tmp/tmpab12/...`` tells a
student nothing and leaks where the author worked; results files and docs carry project-relative
paths only (the house rule in the developers' guide).
"""

import json
import re
from pathlib import Path

import pytest

from notebook_outputs import output_texts

ROOT = Path(__file__).resolve().parents[1]
LOCAL = re.compile(r"(?<![\w.~])(/root/|/home/[\w.-]+/|/Users/[\w.-]+/|/tmp/|/var/folders/|/work/|[A-Z]:\\\\Users\\\\)")
NOTEBOOKS = sorted(ROOT.glob("notebooks/**/*.ipynb"))
FILES = sorted([*ROOT.glob("softprompt/data/results/*.json"), *ROOT.glob("benchmarks/results/**/*.json"),
                *ROOT.glob("*.md"), *ROOT.glob("docs/**/*.md")])


def test_the_pattern_finds_local_paths_and_spares_project_ones():
    for bad in ["saved to /root/.cache/softprompt/x", "/tmp/tmpab12/prompt", "/home/ana/proj", "/work/main/x"]:
        assert LOCAL.search(bad), bad
    for fine in ["~/.cache/softprompt", "benchmarks/results/mpt_runs", "softprompt/data/results/x.json",
                 "https://github.com/softprompt-edu/softprompt/tmp/", "a/b/tmp/c"]:
        assert not LOCAL.search(fine), fine


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_saved_output_names_a_local_directory(path):
    nb = json.loads(path.read_text())
    found = [(i, m.group(0)) for i, text in output_texts(nb, tracebacks=True) for m in LOCAL.finditer(text)]
    assert not found, f"{path.name}: outputs of cells {found} name this machine's directories; print paths " \
                      f"relative to the project (or not at all)"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_results_file_or_doc_names_a_local_directory(path):
    hits = sorted({m.group(0) for m in LOCAL.finditer(path.read_text())})
    assert not hits, f"{path.relative_to(ROOT)} names local directories {hits}"
