"""Self-checking exercises: ``check("04.3")`` tests a student's answer against the library, on fresh inputs.

Every ★★ and ★★★ exercise of the series that asks for code names what to write (a function, or a value) and
ends with a check cell::

    def soft_vote(scores):          # the student's answer, in the notebook
        ...

    check("04.3")                   # reads `soft_vote` from the notebook, runs the exercise's tests

The tests are otter-grader test files (https://otter-grader.readthedocs.io, the "exception-based" format), one per
exercise, in ``softprompt/exercises/checks/NN.K.py``. otter-grader runs them: it passes each test function the
notebook's variables by name, catches what fails and prints, for each test case, the assertion's message ("shape
(3, 2), expected one prediction per example: (3,)"). The messages say what is wrong (a shape, a value, which
case), never the solution. A teacher can grade submitted notebooks with the same files (``otter grade``).

Why otter-grader, not nbgrader: otter's checks run inside the student's own kernel, on Colab and offline alike,
from files that ship in this package; nbgrader needs a course directory, a database and its own server
extension, which a Colab student does not have.

The checks pass on the solutions notebooks (``notebooks/solutions``, executed in CI) and fail with a specific
message on wrong answers (``tests/test_exercise_checks.py``).
"""

from __future__ import annotations

import contextlib
import inspect
import random
import secrets
from pathlib import Path
from typing import Any, Iterator

import torch

CHECKS = Path(__file__).resolve().parent / "checks"


def exercises() -> list[str]:
    """The exercises that have a check, as ``"NN.K"`` (notebook, exercise number)."""
    return sorted(path.stem for path in CHECKS.glob("[0-9][0-9].*.py"))


def check(exercise: str, **answers: Any):
    """Run exercise ``exercise``'s tests against the calling notebook's variables (and ``answers``, by name).

    Returns otter-grader's result: it shows as the list of passed and failed test cases, and
    ``result.passed_all`` says whether everything passed.
    """
    try:
        from otter.execute import Checker
        from otter.nbmeta_config import NBMetadataConfig
    except ImportError:
        raise ImportError(
            "the exercise checks run on otter-grader, which is not installed: `pip install otter-grader` "
            "(softprompt's `dev` and `colab` extras include it)"
        ) from None
    path = CHECKS / f"{exercise}.py"
    if not path.is_file():
        raise ValueError(f"there is no check for exercise {exercise!r}; the exercises with a check: {exercises()}")
    caller = inspect.currentframe().f_back  # the notebook's globals: the student's answers live there
    env = {**caller.f_globals, **answers}
    return Checker.check(str(path), NBMetadataConfig(), global_env=env)


# Helpers for the check files: each raises AssertionError with a message for the student, never the solution.

@contextlib.contextmanager
def fresh_seed() -> Iterator[int]:
    """A new seed for one check's inputs; the notebook's random state (torch's and Python's) is left as it was."""
    torch_state, python_state = torch.random.get_rng_state(), random.getstate()
    try:
        yield secrets.randbelow(2**31)
    finally:
        torch.random.set_rng_state(torch_state)
        random.setstate(python_state)


def fresh_generator() -> torch.Generator:
    """A CPU generator with a new seed: fresh inputs at every check, the global random state untouched."""
    return torch.Generator().manual_seed(secrets.randbelow(2**31))


def notebook_needs(**names: Any) -> None:
    """The notebook variables a check reads (``model=model, tokenizer=tokenizer``) exist, or say which to create."""
    missing = [name for name, value in names.items() if value is None]
    if missing:
        listed = " and ".join(f"`{name}`" for name in missing)
        raise AssertionError(f"run the notebook's cells above first: this check reads {listed}")


def require(name: str, value: Any, kind: str = "function") -> Any:
    """The answer the exercise asks for, or a message that says to define it."""
    if value is None:
        raise AssertionError(f"define `{name}` first: the exercise asks for a {kind} of that name")
    if kind == "function" and not callable(value):
        raise AssertionError(f"`{name}` should be a function, got a {type(value).__name__}")
    return value


def as_tensor(name: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            kind = type(value).__name__
            raise AssertionError(f"{name} should be a tensor (or a list of numbers), got a {kind}") from None
    return value


def same_shape(name: str, got: Any, shape: tuple[int, ...], meaning: str = "") -> torch.Tensor:
    got = as_tensor(name, got)
    if tuple(got.shape) != tuple(shape):
        hint = f" ({meaning})" if meaning else ""
        raise AssertionError(f"{name} has shape {tuple(got.shape)}; expected {tuple(shape)}{hint}")
    return got


def same_values(name: str, got: Any, expected: torch.Tensor, case: str, atol: float = 0.0, rtol: float = 0.0,
                meaning: str = "") -> None:
    """``got`` equals ``expected`` (to the tolerance); otherwise say how many entries differ, where, and by how much."""
    got = same_shape(name, got, tuple(expected.shape), meaning).to(expected.device)
    if got.dtype == torch.bool or expected.dtype == torch.bool or not expected.is_floating_point():
        bad = got != expected
    else:
        bad = ~torch.isclose(got.to(expected.dtype), expected, atol=atol, rtol=rtol)
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        where = f" first at index {first}" if expected.dim() else ""
        detail = ""
        if expected.is_floating_point():
            gap = float((got.to(expected.dtype) - expected).abs().max())
            detail = f"; largest difference {gap:.3g} (tolerance atol={atol:g}, rtol={rtol:g})"
        if expected.numel() <= 8:  # a small case: show both
            detail += f"; got {got.tolist()}, expected {expected.tolist()}"
        raise AssertionError(f"{case}: {int(bad.sum())} of {bad.numel()} entries of {name} are wrong,{where}{detail}")
