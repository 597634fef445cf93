"""Exercise 02.4 (★★): padding_gap(m, tokenizer, short, long) -> float. The largest |difference| between the logits
at the short text's last position when it runs in one left-padded batch with the long text and when it runs alone,
for a prompt model ``m`` (softprompt's or PEFT's)."""

import random
import tempfile

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_seed, notebook_needs, require

OK_FORMAT = False
name = "02.4"
points = 2


def _texts(task, tokenizer, seed: int) -> tuple[str, str]:
    """Two formatted test examples, the second made longer by a few tokens."""
    test = task["test"]
    i, j = random.Random(seed).sample(range(len(test)), 2)
    short, long = task.format(test[i]), task.format(test[j])
    while len(tokenizer(long)["input_ids"]) < len(tokenizer(short)["input_ids"]) + 3:
        long += " Really, I mean it."
    return short, long


@torch.no_grad()
def _gap(m, tokenizer, short: str, long: str) -> float:
    """The reference: the short row's last logits, padded on the left in a batch with the long one, against alone."""
    device = next(m.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        batch = tokenizer([short, long], return_tensors="pt", padding=True).to(device)
    finally:
        tokenizer.padding_side = side
    alone = tokenizer([short], return_tensors="pt").to(device)
    padded_logits, alone_logits = m(**batch).logits[0, -1].float(), m(**alone).logits[0, -1].float()  # (V,) each
    return float((padded_logits - alone_logits).abs().max())


def _as_number(got, case: str) -> float:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise AssertionError(f"{case}: padding_gap returned a {type(got).__name__}; expected one number (a float)")
    return float(got)


def _compare(got: float, expected: float, case: str, dtype) -> None:
    tol = sp.tolerance(dtype)
    if abs(got - expected) > tol["atol"] + tol["rtol"] * expected:
        raise AssertionError(
            f"{case}: padding_gap returned {got:.4g}; the short text's last-position logits differ between the padded "
            f"batch and the text alone by up to {expected:.4g} (tolerance {tol}). The short text is the padded row")


def _models(model, tokenizer, seed: int):
    """A fresh softprompt prompt and the same prompt loaded by PEFT from its saved files."""
    from peft import PeftModel

    config = sp.PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="SAMPLE_VOCAB", seed=seed)
    ours = sp.get_prompt_model(model, config, tokenizer=tokenizer).eval()
    directory = tempfile.mkdtemp()
    ours.save_pretrained(directory)
    return ours, PeftModel.from_pretrained(model, directory).eval()


@test_case(points=1)
def test_softprompts_padded_row(padding_gap, model, tokenizer, task):
    padding_gap = require("padding_gap", padding_gap)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        ours, _ = _models(model, tokenizer, seed)
        short, long = _texts(task, tokenizer, seed)
        case = f"softprompt's model, short text {short!r}"
        got = _as_number(padding_gap(ours, tokenizer, short, long), case)
        expected = _gap(ours, tokenizer, short, long)
        _compare(got, expected, case, model.dtype)


@test_case(points=1)
def test_pefts_padded_row(padding_gap, model, tokenizer, task):
    padding_gap = require("padding_gap", padding_gap)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        _, theirs = _models(model, tokenizer, seed)
        short, long = _texts(task, tokenizer, seed + 1)
        case = f"PEFT's model, short text {short!r}"
        got = _as_number(padding_gap(theirs, tokenizer, short, long), case)
        expected = _gap(theirs, tokenizer, short, long)
        _compare(got, expected, case, model.dtype)
