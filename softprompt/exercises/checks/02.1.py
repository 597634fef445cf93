"""Exercise 02.1 (★★): unmatched_share(model, tokenizer, task, n) -> the share (0 to 1) of the first n test examples
whose greedy generation spells no label word (``evaluate(..., method="generate")``'s ``unmatched``, over n)."""

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_seed, notebook_needs, require

OK_FORMAT = False
name = "02.1"
points = 2


def _as_share(got, n: int, case: str) -> float:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise AssertionError(f"{case}: unmatched_share returned a {type(got).__name__}; expected one number, a share "
                             "between 0 and 1")
    if not 0 <= got <= 1:
        count = f" (a count of examples? the exercise asks for their share of n={n})" if got == int(got) else ""
        raise AssertionError(f"{case}: unmatched_share returned {got}, outside [0, 1]{count}")
    return float(got)


def _library(model, tokenizer, task, n: int) -> dict:
    """The library's zero-shot generation on the first n test examples."""
    return sp.evaluate(model, tokenizer, task, "test", method="generate", max_examples=n)


def _compare(got: float, result: dict, n: int, dtype, case: str) -> None:
    expected = result["unmatched"] / n
    # float32: the same greedy tokens; half precision: another batch shape may flip one close call
    slack = 1e-6 if dtype == torch.float32 else 1 / n + 1e-6
    if abs(got - expected) <= slack:
        return
    hint = ""
    if got == 0:
        hint = " (rank classification always names a class: with it nothing is ever unmatched)"
    elif abs(got - (1 - result["accuracy"])) < 1e-6:
        hint = (" (that is the share of wrong answers: an unmatched output is wrong, but a wrong answer can still "
                "spell the other label word)")
    raise AssertionError(f"{case}: you found {got:.3f} of the {n} examples unmatched; the library's greedy generation "
                         f"leaves {result['unmatched']} of {n} unmatched ({expected:.3f}){hint}")


@test_case(points=1)
def test_the_notebooks_task(unmatched_share, model, tokenizer, task):
    unmatched_share = require("unmatched_share", unmatched_share)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        n = 4 + seed % 5  # 4 to 8 examples
        case = f"task {task.name!r}, n={n}"
        got = _as_share(unmatched_share(model, tokenizer, task, n), n, case)
        reference = _library(model, tokenizer, task, n)
        _compare(got, reference, n, model.dtype, case)


@test_case(points=1)
def test_a_task_with_arbitrary_label_words(unmatched_share, model, tokenizer):
    unmatched_share = require("unmatched_share", unmatched_share)
    notebook_needs(model=model, tokenizer=tokenizer)
    with fresh_seed() as seed:
        other = sp.load_task("arbitrary_sentiment")  # label words 'banana', 'apple': rarely said zero-shot
        n = 4 + seed % 5
        case = f"task {other.name!r} (label words {other.label_words}), n={n}"
        got = _as_share(unmatched_share(model, tokenizer, other, n), n, case)
        reference = _library(model, tokenizer, other, n)
        _compare(got, reference, n, model.dtype, case)
