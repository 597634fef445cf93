"""The gpu profile's notebooks, run on a CPU: every cell of the GPU path, with stand-ins.

The Colab walkthrough runs ``SOFTPROMPT_PROFILE=gpu``: another model, hub datasets, other knobs and
``device = "cuda"``. No GPU is needed to find most of what would break there. Each notebook runs
top to bottom under ``SOFTPROMPT_PROFILE=gpu`` with

* ``SOFTPROMPT_MODEL``: a tiny random Llama with SmolLM2's tokenizer (``tests/gpu_standin.py``);
* ``SOFTPROMPT_DATA_DIR``: hub-shaped local copies of every hub dataset the profile reads;
* a first cell that enters :class:`softprompt.device_check.SimulatedAccelerator` with a simulated card,
  so the model goes "to cuda" and any tensor a cell leaves on the CPU fails as on a real GPU; and
  ``torch.cuda`` answers as that card, so the profile's own ``dtype="auto"`` picks the card's half
  dtype (no cast by the test): float16 on a T4 (Colab's free GPU: autocast and the GradScaler's loss
  scaling), bfloat16 on an A100 (as on an L4 or H100: autocast, no scaling). A last cell checks that
  the model reached the accelerator in that dtype;
* the gpu profile's own knobs, except that ``SOFTPROMPT_STEP_SCALE`` (below) shortens the training
  runs (read by :func:`softprompt.profiles.pick_profile`).

Which notebook runs on which card (:data:`RUNS`). A card costs about what the float32 run it replaces
did (it computes half-precision products in float32, :mod:`softprompt.simulated_card`): the ten
notebooks take about 8 minutes on one card on a quiet 2-core machine, as the float32 set did, and
``make test`` (about 25 minutes) has no room for a second 8 under its 30. So every notebook runs once,
on one card, and only notebook 01 and its solutions (the step-0 equalities, under a minute) on both;
between them the two cards run every path the library has for half precision (training with and
without loss scaling, the prefix cache, the bank, MPT, nearest tokens):

* T4 (float16, GradScaler): 02 (the step by hand against ``sp.train``'s scaled step), 04 (the bank and
  the prefix cache), solutions 02 (the training loop by hand, with the same loss scaling), 04 and 05;
* A100 (bfloat16): 03 (nearest tokens: a float32 prompt beside a bfloat16 table), 05 (MPT's distillation
  with bfloat16 teachers), solutions 03.

Outcome assertions that depend on a trained real model pass here only by chance, so the notebooks
state them as invariants that hold for any model (a loss that falls from ln V, a vote no worse
than its members), or as comparisons within a standard error. Comparisons of two computations of the
same numbers use :func:`softprompt.tolerance` of the model's dtype.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from gpu_standin import HUB_TASKS, write_hub_data, write_standin_model

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
    (ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
STEP_SCALE = "0.05"  # the gpu knobs' 100-500 steps become 5-25: the same code; keeps `make test` near 25 min
CELL_TIMEOUT_S = 300

CARD_DTYPES = {"T4": "float16", "A100": "bfloat16"}  # the half dtype dtype="auto" picks on each card
ON_T4 = {"01", "02", "04", "01_solutions", "02_solutions", "04_solutions", "05_solutions"}
ON_A100 = {"01", "03", "05", "01_solutions", "03_solutions"}


def _key(path: Path) -> str:
    return path.stem[:2] + ("_solutions" if path.parent.name == "solutions" else "")


RUNS = [(path, card) for path in NOTEBOOKS for card, keys in (("T4", ON_T4), ("A100", ON_A100)) if _key(path) in keys]

ENTER = """\
# injected by tests/test_gpu_profile_notebooks.py: tensors on "cuda" live on the CPU, and mixing raises;
# torch.cuda answers as a {card}, so dtype="auto" picks its half dtype, with autocast (and a GradScaler on a T4)
from softprompt.device_check import SimulatedAccelerator
_accelerator = SimulatedAccelerator(card="{card}").__enter__()
"""
CHECK = """\
# injected: the model really went to the (simulated) accelerator, in the card's half dtype
assert _accelerator.on_accelerator(next(model.parameters())), "the gpu profile left the model on the CPU"
assert model.dtype == _accelerator.card.half_dtype, (model.dtype, _accelerator.card)
"""


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("gpu_standin")
    return {"SOFTPROMPT_PROFILE": "gpu", "SOFTPROMPT_MODEL": str(write_standin_model(root / "model")),
            "SOFTPROMPT_DATA_DIR": str(write_hub_data(root / "data")), "SOFTPROMPT_STEP_SCALE": STEP_SCALE}


def test_the_env_overrides_swap_model_data_and_steps(standin, monkeypatch):
    import softprompt as sp
    from softprompt.profiles import PROFILES, pick_profile

    for key, value in standin.items():
        monkeypatch.setenv(key, value)
    profile = pick_profile()
    gpu = PROFILES["gpu"]
    assert profile.name == "gpu" and profile.device == "cuda" and profile.model == standin["SOFTPROMPT_MODEL"]
    assert profile.steps == round(gpu.steps * float(STEP_SCALE))
    assert profile.knobs("05")["distill_steps"] == round(gpu.knobs("05")["distill_steps"] * float(STEP_SCALE))
    assert profile.knobs("05")["target_examples"] == gpu.knobs("05")["target_examples"]  # only steps scale
    for name in HUB_TASKS:
        task = sp.load_task(name)
        assert task.source == "hub" and task.metadata["local"].endswith(name)
        assert min(task["test"]["label"]) >= 0  # GLUE's unlabelled test split is never read
    assert set(sp.load_task("boolq")["train"]["label"]) == {0, 1}  # bool answers -> ints
    monkeypatch.setenv("SOFTPROMPT_STEP_SCALE", "zero")
    with pytest.raises(ValueError, match="SOFTPROMPT_STEP_SCALE"):
        pick_profile()


def test_every_notebook_and_solution_runs_on_a_card():
    assert {_key(path) for path in NOTEBOOKS} <= ON_T4 | ON_A100, "a new notebook: put it in ON_T4 or ON_A100"
    assert {card for _, card in RUNS} == set(CARD_DTYPES)


@pytest.mark.parametrize("path,card", RUNS, ids=[f"{p.stem}-{card}" for p, card in RUNS])
def test_notebook_runs_on_the_gpu_profile(path, card, standin, monkeypatch):
    for key, value in standin.items():
        monkeypatch.setenv(key, value)  # the kernel inherits the environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))  # this checkout's softprompt, not an installed one
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(ENTER.format(card=card)))
    nb.cells.append(nbformat.v4.new_code_cell(CHECK))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        pytest.fail(f"{path.name} fails on the gpu profile (stand-in model, simulated {card}, "
                    f"{CARD_DTYPES[card]}):\n{message[-4000:]}")
    print(f"{path.name} on a simulated {card} ({CARD_DTYPES[card]}): {time.perf_counter() - start:.1f} s")
