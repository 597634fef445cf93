"""Exercise 03.5 (★★★): make_steered_loss(steer_ids, gamma) -> loss_fn. ``loss_fn(pm, batch)`` is the usual loss
(``softprompt.training.default_loss(pm, batch)``) plus gamma * sum_t (1 - cos(p_t, e_{w_t})), which pulls virtual
token t towards the embedding of token ``steer_ids[t]`` (Khashabi et al. 2022, §4); ``sp.train(..., loss_fn=...)``
trains with it."""

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.batching import Batches, training_rows
from softprompt.exercises import fresh_seed, notebook_needs, require
from softprompt.precision import autocast
from softprompt.training import default_loss

OK_FORMAT = False
name = "03.5"
points = 3


def _setting(model, tokenizer, task, seed: int):
    """A fresh RANDOM prompt, a training batch as sp.train draws it, and T random steering tokens."""
    gen = torch.Generator().manual_seed(seed)
    T = 4
    config = sp.PromptTuningConfig(num_virtual_tokens=T, prompt_tuning_init="RANDOM", seed=seed)
    pm = sp.get_prompt_model(model, config, tokenizer=tokenizer)
    train_config = sp.TrainingConfig(steps=1, batch_size=2, seed=seed)
    batch = Batches(pm, tokenizer, [task], training_rows([task], None, seed), train_config)(0)
    steer_ids = torch.randint(min(len(tokenizer), pm.word_embeddings.weight.shape[0]), (T,), generator=gen)  # (T,)
    return pm, batch, steer_ids


def _loss_and_grad(loss_fn, pm, batch, case: str):
    """The loss as sp.train computes it (under the model's autocast), and its gradient on the prompt."""
    P = pm.prompt_encoder.embedding.weight  # (T, d)
    P.grad = None
    with autocast(pm):
        loss = loss_fn(pm, batch)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise AssertionError(f"{case}: the loss function returned a {type(loss).__name__}"
                             f"{' of shape ' + str(tuple(loss.shape)) if isinstance(loss, torch.Tensor) else ''}; "
                             "expected a scalar tensor, as default_loss returns")
    if not loss.requires_grad:
        raise AssertionError(f"{case}: the loss has no gradient: sp.train could not train the prompt with it")
    loss.backward()
    grad = None if P.grad is None else P.grad.detach().float().clone()
    P.grad = None
    return float(loss.detach()), grad


def _pull(pm, steer_ids) -> torch.Tensor:
    """sum_t (1 - cos(p_t, e_{w_t})), in float32: the reference."""
    P = pm.prompt_encoder.embedding.weight.float()  # (T, d)
    targets = pm.word_embeddings.weight.detach()[steer_ids.to(P.device)].float()  # (T, d)
    return (1 - torch.nn.functional.cosine_similarity(P, targets, dim=-1)).sum()


@test_case(points=1)
def test_gamma_zero_is_the_usual_loss(make_steered_loss, model, tokenizer, task):
    make_steered_loss = require("make_steered_loss", make_steered_loss)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        pm, batch, steer_ids = _setting(model, tokenizer, task, seed)
        case = f"gamma=0, a fresh RANDOM prompt (seed {seed})"
        got, _ = _loss_and_grad(make_steered_loss(steer_ids, 0.0), pm, batch, case)
        expected, _ = _loss_and_grad(default_loss, pm, batch, case)
        tol = sp.tolerance(model.dtype)
        if abs(got - expected) > tol["atol"] + tol["rtol"] * abs(expected):
            raise AssertionError(f"{case}: your loss is {got:.5f}, but with gamma=0 it must be the usual loss, "
                                 f"default_loss(pm, batch) = {expected:.5f}")


@test_case(points=1)
def test_the_pull_term(make_steered_loss, model, tokenizer, task):
    make_steered_loss = require("make_steered_loss", make_steered_loss)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        pm, batch, steer_ids = _setting(model, tokenizer, task, seed)
        gamma = round(0.3 + (seed % 1000) / 500, 3)  # 0.3 to 2.3
        case = f"gamma={gamma}, steering tokens {steer_ids.tolist()} (seed {seed})"
        got, _ = _loss_and_grad(make_steered_loss(steer_ids, gamma), pm, batch, case)
        task_loss, _ = _loss_and_grad(default_loss, pm, batch, case)
        pull = float(_pull(pm, steer_ids).detach())
        tol = sp.tolerance(model.dtype)
        if abs((got - task_loss) - gamma * pull) > tol["atol"] + tol["rtol"] * abs(got):
            T = len(steer_ids)
            mean = " (a mean over the virtual tokens? the pull is their sum)" if abs(
                (got - task_loss) - gamma * pull / T) < tol["atol"] else ""
            raise AssertionError(
                f"{case}: your loss minus the usual loss is {got - task_loss:.5f}; the pull "
                f"gamma * sum_t (1 - cos(p_t, e_w_t)) is {gamma * pull:.5f}{mean}")


@test_case(points=1)
def test_the_gradient_reaches_the_prompt(make_steered_loss, model, tokenizer, task):
    make_steered_loss = require("make_steered_loss", make_steered_loss)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        pm, batch, steer_ids = _setting(model, tokenizer, task, seed)
        gamma = 1.0
        case = f"gamma={gamma}, steering tokens {steer_ids.tolist()} (seed {seed})"
        _, got = _loss_and_grad(make_steered_loss(steer_ids, gamma), pm, batch, case)
        _, task_grad = _loss_and_grad(default_loss, pm, batch, case)
        P = pm.prompt_encoder.embedding.weight
        (pull_grad,) = torch.autograd.grad(gamma * _pull(pm, steer_ids), P)  # (T, d)
        expected = task_grad + pull_grad.float()
        if got is None:
            raise AssertionError(f"{case}: after backward the prompt has no gradient")
        bad = ~torch.isclose(got, expected, **sp.tolerance(model.dtype))
        if bad.any():
            task_only = bool(torch.allclose(got, task_grad, **sp.tolerance(model.dtype)))
            hint = (" It equals the usual loss's gradient: the pull does not reach the prompt's trainable weights "
                    "(was it computed from a copy, or detached?)") if task_only else ""
            raise AssertionError(f"{case}: the gradient of your loss on the prompt differs from that of the usual "
                                 f"loss plus the pull in {int(bad.sum())} of {bad.numel()} numbers (by up to "
                                 f"{float((got - expected).abs().max()):.3g}).{hint}")
