"""Numbers in a notebook's prose come from its run, or say where they come from.

A student believes what the Markdown says. So a decimal number in a Markdown cell must be one of:

* in an output of the same notebook (prose generated from the run's variables is an output, and a
  number the text repeats from a printed table appears there too);
* a section reference (``§3.2``), inside LaTeX (``$...$``) or inside code (`` `lr=0.1` ``);
* listed in the cell's ``metadata["cited_numbers"]``: numbers quoted from a paper or a setting the
  prose explains (a learning rate of 0.3 in Lester et al.), which no run produces.

What fails is a typed-in result: "the loss fell to 0.74 in our run" with no output showing 0.74.
"""

import json
import re
from pathlib import Path

import pytest

from notebook_outputs import output_texts

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb")) + sorted(ROOT.glob("notebooks/solutions/*.ipynb"))
NUMBER = re.compile(r"(?<![\w.§])\d+\.\d+(?![\w.])")


def prose_numbers(markdown: str) -> list[str]:
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$", " ", markdown, flags=re.S)  # LaTeX
    text = re.sub(r"`[^`\n]*`", " ", text)  # code
    text = re.sub(r"§\s*\d+(\.\d+)*", " ", text)  # section references
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    return NUMBER.findall(text)


def test_prose_numbers_helper():
    md = "Lester (§3.2) use lr `0.3`; $x = 0.5$. In our run the loss fell to 0.74 ([link](a/b1.2))."
    assert prose_numbers(md) == ["0.74"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_number_in_the_prose_comes_from_the_run_or_is_cited(path):
    nb = json.loads(path.read_text())
    shown = "\n".join(text for _, text in output_texts(nb))
    in_outputs = set(NUMBER.findall(shown))
    typed = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        cited = {str(n) for n in cell.get("metadata", {}).get("cited_numbers", [])}
        typed += [(i, n) for n in prose_numbers("".join(cell["source"])) if n not in in_outputs and n not in cited]
    assert not typed, (f"{path.name}: Markdown cells state numbers no output shows: {typed}. Generate the "
                       "sentence from the run's variables, or list a quoted paper figure in the cell's "
                       "metadata['cited_numbers']")
