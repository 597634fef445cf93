"""Exercise 03.4 (★★): projection_gap(prompt_model, tokenizer, inputs) -> float. Project the prompt onto its nearest
tokens (cosine: ``project_to_tokens``), build that hard prompt (``sp.hard_prompt_model``) and return the largest
|difference| between the two models' logits on ``inputs`` (a dict of ``input_ids`` and ``attention_mask``)."""

import random

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_seed, notebook_needs, require
from softprompt.waywardness import project_to_tokens

OK_FORMAT = False
name = "03.4"
points = 2


def _inputs(task, tokenizer, model, seed: int) -> dict:
    batch = task.causal_batch(task.sample("test", 3, seed=seed), tokenizer, with_targets=False)
    return {k: batch[k].to(model.device) for k in ("input_ids", "attention_mask")}  # (B, L) each


def _init_text(task, seed: int) -> str:
    """A few words of a random training example: a fresh text to initialize a TEXT prompt from."""
    words = task.format(task.sample("train", 1, seed=seed)[0]).split()
    start = random.Random(seed).randrange(max(1, len(words) - 4))
    return " ".join(words[start:start + 4])


@torch.no_grad()
def _gap(pm, tokenizer, inputs) -> float:
    """The reference: the largest |logit difference| between the prompt and its nearest-token projection."""
    hard = sp.hard_prompt_model(pm, project_to_tokens(pm, tokenizer))
    return float((pm(**inputs).logits.float() - hard(**inputs).logits.float()).abs().max())


def _as_number(got, case: str) -> float:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise AssertionError(f"{case}: projection_gap returned a {type(got).__name__}; expected one number (a float)")
    return float(got)


@test_case(points=1)
def test_an_untrained_text_prompt_is_its_own_projection(projection_gap, model, tokenizer, task):
    projection_gap = require("projection_gap", projection_gap)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        text = _init_text(task, seed)
        config = sp.PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT", prompt_tuning_init_text=text)
        pm = sp.get_prompt_model(model, config, tokenizer=tokenizer).eval()
        case = f"an untrained TEXT prompt (init text {text!r})"
        got = _as_number(projection_gap(pm, tokenizer, _inputs(task, tokenizer, model, seed)), case)
        if got != 0:
            raise AssertionError(
                f"{case}: projection_gap returned {got:.4g}. This prompt *is* its text's embedding rows, so each "
                "vector's nearest token by cosine is its own token: the hard prompt is the same vectors and the "
                "logits must be identical (a gap of exactly 0)")


@test_case(points=1)
def test_a_random_prompt_is_not(projection_gap, model, tokenizer, task):
    projection_gap = require("projection_gap", projection_gap)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        config = sp.PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="RANDOM", seed=seed)
        pm = sp.get_prompt_model(model, config, tokenizer=tokenizer).eval()
        inputs = _inputs(task, tokenizer, model, seed)
        case = f"a RANDOM prompt (seed {seed})"
        got = _as_number(projection_gap(pm, tokenizer, inputs), case)
        expected = _gap(pm, tokenizer, inputs)
        tol = sp.tolerance(model.dtype)
        if abs(got - expected) > tol["atol"] + tol["rtol"] * expected:
            raise AssertionError(f"{case}: projection_gap returned {got:.4g}; the logits of the prompt and of its "
                                 f"nearest-token projection differ by up to {expected:.4g} (tolerance {tol})")
