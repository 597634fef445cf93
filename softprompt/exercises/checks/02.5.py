"""Exercise 02.5 (★★★): my_training_loop(prompt_model, tokenizer, task, config) -> list of losses. ``sp.train``'s loop
by hand: at step t the batch ``Batches(...)(t)``, the learning rate ``config.lr * (1 - t / config.steps)``, the
label-word loss, backward, the gradient norm clipped at ``config.max_grad_norm``, one AdamW step (``config.lr``,
``config.weight_decay``); it trains ``prompt_model``'s prompt in place and returns each step's loss."""

import dataclasses

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.batching import Batches, training_rows
from softprompt.exercises import fresh_seed, notebook_needs, require
from softprompt.precision import autocast
from softprompt.training import default_loss

OK_FORMAT = False
name = "02.5"
points = 3


def _fresh_prompt(model, tokenizer, task, seed: int):
    config = sp.PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT",
                                   prompt_tuning_init_text=task.description, seed=seed)
    return sp.get_prompt_model(model, config, tokenizer=tokenizer)


def _prompt(pm) -> torch.Tensor:
    return pm.prompt_encoder.embedding.weight.detach().float().clone()  # (T, d)


def _as_losses(got, steps: int, case: str) -> list[float]:
    if isinstance(got, torch.Tensor):
        got = got.detach().flatten().tolist()
    try:
        losses = [float(v) for v in got]
    except (TypeError, ValueError):
        raise AssertionError(f"{case}: my_training_loop returned a {type(got).__name__}; expected a list of "
                             "numbers, one loss per step") from None
    if len(losses) != steps:
        raise AssertionError(f"{case}: my_training_loop returned {len(losses)} losses; expected one per step, {steps}")
    return losses


def _same_losses(got: list[float], want: list[float], case: str, dtype) -> None:
    tol = sp.tolerance(dtype)
    for step, (a, b) in enumerate(zip(got, want), start=1):
        if abs(a - b) > tol["atol"] + tol["rtol"] * abs(b):
            agree = "step 1 agrees" if step == 2 else f"steps 1 to {step - 1} agree"
            before = "step 1 is already off: look at the batch, the loss or the first step" if step == 1 else (
                f"{agree}: look at what changes from one step to the next")
            raise AssertionError(f"{case}: step {step}: your loss {a:.5f}, sp.train's {b:.5f} (tolerance "
                                 f"atol={tol['atol']:g}, rtol={tol['rtol']:g}); {before}")


def _same_prompt(got: torch.Tensor, want: torch.Tensor, start: torch.Tensor, case: str, dtype) -> None:
    if torch.equal(got, start) and not torch.equal(want, start):
        raise AssertionError(f"{case}: prompt_model's prompt did not change; the loop must train it in place")
    close = torch.isclose(got, want, **sp.tolerance(dtype))  # (T, d)
    # Adam moves a number by about lr * sign(gradient): one whose gradient is within rounding of zero may step the
    # other way on the other path (notebook 02); rare in float32 (a number or two), more in half precision
    cos = torch.nn.functional.cosine_similarity((got - start).flatten(), (want - start).flatten(), dim=0)
    share, agree = (0.002, 0.999) if dtype == torch.float32 else (0.01, 0.99)
    ok = bool(close.all()) or (int((~close).sum()) <= max(1, share * close.numel()) and float(cos) > agree)
    if not ok:
        raise AssertionError(f"{case}: the losses agree, but after the last step {int((~close).sum())} of "
                             f"{close.numel()} numbers of the prompt differ from sp.train's (by up to "
                             f"{float((got - want).abs().max()):.3g}): an update differs (its learning rate, the "
                             "clipping or the optimizer step)")


def _run(my_training_loop, model, tokenizer, task, config, seed: int):
    student = _fresh_prompt(model, tokenizer, task, seed)
    start = _prompt(student)
    got = my_training_loop(student, tokenizer, task, config)
    reference = _fresh_prompt(model, tokenizer, task, seed)
    history = sp.train(reference, tokenizer, task, config, progress=False)
    return got, [v for _, v in history.loss], _prompt(student), _prompt(reference), start


@test_case(points=1)
def test_the_default_settings(my_training_loop, model, tokenizer, task):
    my_training_loop = require("my_training_loop", my_training_loop)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        config = sp.TrainingConfig(steps=3, batch_size=2, seed=seed)
        case = f"TrainingConfig(steps=3, batch_size=2, seed={seed})"
        got, want, prompt, expected, start = _run(my_training_loop, model, tokenizer, task, config, seed)
        _same_losses(_as_losses(got, config.steps, case), want, case, model.dtype)
        _same_prompt(prompt, expected, start, case, model.dtype)


@test_case(points=1)
def test_learning_rate_weight_decay_and_clipping_from_the_config(my_training_loop, model, tokenizer, task):
    my_training_loop = require("my_training_loop", my_training_loop)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        config = _clipping_config(model, tokenizer, task, seed)  # lr 0.05, weight decay 0.2, clipping that acts
        case = _described(config)  # TrainingConfig(steps=3, ..., max_grad_norm=...)
        got, want, prompt, expected, start = _run(my_training_loop, model, tokenizer, task, config, seed)
        _same_losses(_as_losses(got, config.steps, case), want, case, model.dtype)
        _same_prompt(prompt, expected, start, case, model.dtype)


@test_case(points=1)
def test_steps_and_batch_size_from_the_config(my_training_loop, model, tokenizer, task):
    my_training_loop = require("my_training_loop", my_training_loop)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        config = sp.TrainingConfig(steps=2, batch_size=3, seed=seed, lr=0.05)
        case = f"TrainingConfig(steps=2, batch_size=3, seed={seed}, lr=0.05)"
        got, want, prompt, expected, start = _run(my_training_loop, model, tokenizer, task, config, seed)
        _same_losses(_as_losses(got, config.steps, case), want, case, model.dtype)
        _same_prompt(prompt, expected, start, case, model.dtype)


def _clipping_config(model, tokenizer, task, seed: int):
    """A config whose clipping acts: max_grad_norm a third of the first step's gradient norm, read off the library's
    loss for this fresh prompt and seed. A fixed value would be above the norm on some models (no clipping to check)
    or so far below it on others that Adam's epsilon dominates the step and float rounding decides it."""
    config = sp.TrainingConfig(steps=3, batch_size=2, seed=seed, lr=0.05, weight_decay=0.2)
    pm = _fresh_prompt(model, tokenizer, task, seed)
    batch = Batches(pm, tokenizer, [task], training_rows([task], None, seed), config)(0)
    with autocast(pm):
        loss = default_loss(pm, batch)
    loss.backward()
    norm = float(pm.prompt_encoder.embedding.weight.grad.norm())
    clip = float(f"{norm / 3:.3g}") if 0 < norm < float("inf") else 1.0  # (float16 may underflow to 0 unscaled)
    return dataclasses.replace(config, max_grad_norm=clip)


def _described(config) -> str:
    return (f"TrainingConfig(steps={config.steps}, batch_size={config.batch_size}, seed={config.seed}, "
            f"lr={config.lr:g}, weight_decay={config.weight_decay:g}, max_grad_norm={config.max_grad_norm:.3g})")
