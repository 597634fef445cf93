"""Exercise 01.6 (★★): hidden_change(prompt_model, input_ids, scale), how much scaling the prompt changes the input
positions' hidden states, at the embeddings and after each layer: ‖h(scale · P_e) − h(P_e)‖ / ‖h(P_e)‖."""

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.config import PromptTuningConfig
from softprompt.exercises import fresh_generator, notebook_needs, require, same_shape
from softprompt.initialization import common_word_token_ids

OK_FORMAT = False
name = "01.6"
points = 2

CALL = "hidden_change(prompt_model, input_ids, scale)"


_COMMON = {}  # this check run's common words, per tokenizer: finding them reads the whole vocabulary


def _common(tokenizer):
    if id(tokenizer) not in _COMMON:
        _COMMON[id(tokenizer)] = common_word_token_ids(tokenizer, 2000)
    return _COMMON[id(tokenizer)]


def _case(model, tokenizer, gen, T, n):
    """A TEXT-initialized prompt model (a text of random common words) and a random input of n tokens."""
    notebook_needs(model=model, tokenizer=tokenizer)
    common = _common(tokenizer)
    text = " ".join(tokenizer.decode([i]).strip() for i in common[torch.randint(len(common), (T,), generator=gen)])
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, prompt_tuning_init="TEXT",
                                prompt_tuning_init_text=text)
    prompt_model = sp.get_prompt_model(model, config, tokenizer)
    input_ids = common[torch.randint(len(common), (1, n), generator=gen)].to(prompt_model.device)  # (1, n)
    return prompt_model, input_ids


def _reference(prompt_model, input_ids, scale):
    """The library's forward on P_e and on scale · P_e, on a prompt model of the check's own."""
    with torch.no_grad():
        before = prompt_model(input_ids=input_ids, output_hidden_states=True, logits_to_keep=1).hidden_states
        prompt_model.prompt_encoder.weight.mul_(scale)
        after = prompt_model(input_ids=input_ids, output_hidden_states=True, logits_to_keep=1).hidden_states
    norms = torch.stack([(a.float() - b.float()).norm() / b.float().norm() for a, b in zip(after, before)])
    return norms.cpu()  # (L + 1,)


def _tolerance(dtype):  # a ratio of norms, computed in the model's dtype or in float32
    eps = torch.finfo(dtype).eps
    return {"atol": max(16 * eps, 1e-6), "rtol": max(16 * eps, 1e-4)}


def _same_change(hidden_change, model, tokenizer, scale, T, n):
    gen = fresh_generator()
    prompt_model, input_ids = _case(model, tokenizer, gen, T, n)
    expected = _reference(*_case(model, tokenizer, torch.Generator().manual_seed(gen.initial_seed()), T, n), scale)
    L = model.config.num_hidden_layers
    case = f"scale={scale:g}, a prompt of T={T}, an input of {n} tokens"
    start = prompt_model.prompt_encoder.weight.detach().clone()
    got = same_shape(f"{CALL} ({case})", hidden_change(prompt_model, input_ids, scale), (L + 1,),
                     f"one number for the embeddings, then one per layer: this model has {L} layers")
    if not torch.allclose(prompt_model.prompt_encoder.weight.detach(), start, atol=1e-6, rtol=1e-6):
        raise AssertionError(f"{case}: after {CALL}, the prompt model's prompt is no longer P_e: measure, then put "
                             "the prompt back as it was (or scale a copy)")
    got = got.detach().float().cpu()
    right = torch.isclose(got, expected, **_tolerance(model.dtype))
    if right.all():
        return
    i = int((~right).nonzero()[0])
    where = "the embeddings (entry 0)" if i == 0 else f"the output of layer {i - 1} (entry {i})"
    raise AssertionError(f"{case}: {int((~right).sum())} of {L + 1} entries are wrong; first at {where}: got "
                         f"{float(got[i]):.4g}, expected {float(expected[i]):.4g} (relative change of the input "
                         "positions' hidden states, the norm over all of them)")


@test_case(points=1)
def test_doubling(hidden_change, model, tokenizer):
    hidden_change = require("hidden_change", hidden_change)
    _same_change(hidden_change, model, tokenizer, 2.0, 5, 6)


@test_case(points=1)
def test_halving(hidden_change, model, tokenizer):
    hidden_change = require("hidden_change", hidden_change)
    _same_change(hidden_change, model, tokenizer, 0.5, 4, 5)

