"""Exercise 02.2 (★★): lester_train(prompt_model, tokenizer, task, config) -> History. Train with Lester et al.'s
optimizer (§3: Adafactor, a constant learning rate of 0.3, weight decay 1e-5), taking the steps, batch size, seed and
max_length of ``config`` (a TrainingConfig made for AdamW); return ``sp.train``'s History."""

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_seed, notebook_needs, require

OK_FORMAT = False
name = "02.2"
points = 2

LESTER_LR = 0.3  # Lester et al. 2021, §3


def _fresh_prompt(model, tokenizer, seed: int):
    config = sp.PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="SAMPLE_VOCAB", seed=seed)
    return sp.get_prompt_model(model, config, tokenizer=tokenizer)


def _run(lester_train, model, tokenizer, task, seed: int, steps: int, batch_size: int):
    """The student's run and the library's reference run, from the same start with the same settings."""
    config = sp.TrainingConfig(steps=steps, batch_size=batch_size, seed=seed)  # AdamW's config, as the notebook's
    student = _fresh_prompt(model, tokenizer, seed)
    history = lester_train(student, tokenizer, task, config)
    case = f"a fresh prompt, {steps} steps of batch size {batch_size}, seed {seed}"
    if not (hasattr(history, "loss") and hasattr(history, "lr")):
        raise AssertionError(f"{case}: lester_train returned a {type(history).__name__}; expected the History that "
                             "sp.train returns")
    if config.optimizer != sp.TrainingConfig().optimizer or config.lr != sp.TrainingConfig().lr:
        raise AssertionError(f"{case}: lester_train changed the config it was given; make a new one instead")
    reference = _fresh_prompt(model, tokenizer, seed)
    lester = sp.TrainingConfig(steps=steps, batch_size=batch_size, seed=seed, optimizer="adafactor")
    expected = sp.train(reference, tokenizer, task, lester, progress=False)
    return case, history, expected, student, reference


def _same_schedule(history, case: str) -> None:
    lrs = [float(lr) for _, lr in history.lr]
    off = [(s, lr) for s, lr in history.lr if abs(float(lr) - LESTER_LR) > 1e-12]
    if off:
        step, lr = off[0]
        raise AssertionError(
            f"{case}: step {step} ran at learning rate {float(lr):.4g} (all steps: {[round(v, 4) for v in lrs]}); "
            f"Lester's recipe keeps {LESTER_LR} at every step (a TrainingConfig fills in the learning rate, weight "
            "decay and schedule of its optimizer when it is made: changing only the optimizer keeps AdamW's)")


def _same_losses(history, expected, case: str, dtype) -> None:
    got = [float(v) for _, v in history.loss]
    want = [float(v) for _, v in expected.loss]
    if len(got) != len(want):
        raise AssertionError(f"{case}: {len(got)} losses in the History; expected one per step, {len(want)}")
    tol = sp.tolerance(dtype)
    for step, (a, b) in enumerate(zip(got, want), start=1):
        if abs(a - b) > tol["atol"] + tol["rtol"] * abs(b):
            raise AssertionError(f"{case}: step {step}: loss {a:.5f}, but Adafactor with Lester's settings gives "
                                 f"{b:.5f} (tolerance {tol}); the same batches, so the optimizer or its settings "
                                 "differ")


def _same_prompt(student, reference, case: str, dtype) -> None:
    got = student.prompt_encoder.embedding.weight.detach().float()
    want = reference.prompt_encoder.embedding.weight.detach().float()
    tol, gap = sp.tolerance(dtype), float((got - want).abs().max())
    if not torch.allclose(got, want, **tol):
        raise AssertionError(f"{case}: the losses agree, but the trained prompt is up to {gap:.3g} from Lester's "
                             "recipe's: the optimizer or its settings differ (or another prompt was trained)")


@test_case(points=1)
def test_lesters_schedule_and_losses(lester_train, model, tokenizer, task):
    lester_train = require("lester_train", lester_train)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        case, history, expected, student, reference = _run(lester_train, model, tokenizer, task, seed, 3, 2)
        _same_schedule(history, case)
        _same_losses(history, expected, case, model.dtype)


@test_case(points=1)
def test_the_config_sets_steps_batches_and_seed(lester_train, model, tokenizer, task):
    lester_train = require("lester_train", lester_train)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        case, history, expected, student, reference = _run(lester_train, model, tokenizer, task, seed, 2, 3)
        _same_losses(history, expected, case, model.dtype)
        _same_prompt(student, reference, case, model.dtype)
