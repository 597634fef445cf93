"""Exercise 01.7 (★★★): CLASS_LABELS init by hand, and its hard-prompt twin.

* ``class_label_prompt(E, tokenizer, labels, T, seed)``: the ``(T, d)`` prompt ``PromptEmbedding`` builds for
  ``CLASS_LABELS`` init with those labels, ``num_virtual_tokens=T`` and ``seed`` (label rows, then sampled rows);
* ``hard_prompt_twin(tokenizer, labels, T, seed)``: the ``T`` token ids whose rows are that prompt, or ``None``
  when no typed text gives it. Typed in front of an input, the twin gives the soft prompt's step-0 logits.
"""

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.config import PromptTuningConfig
from softprompt.exercises import fresh_generator, notebook_needs, require, same_shape
from softprompt.initialization import common_word_token_ids, label_word_token_ids, uses_leading_space
from softprompt.prompt_embedding import PromptEmbedding

OK_FORMAT = False
name = "01.7"
points = 4

PROMPT = "class_label_prompt(E, tokenizer, labels, T, seed)"
TWIN = "hard_prompt_twin(tokenizer, labels, T, seed)"


_COMMON = {}  # this check run's common words, per tokenizer: finding them reads the whole vocabulary


def _common(tokenizer):
    if id(tokenizer) not in _COMMON:
        _COMMON[id(tokenizer)] = common_word_token_ids(tokenizer, 2000)
    return _COMMON[id(tokenizer)]


def _needs(model, tokenizer):
    notebook_needs(model=model, tokenizer=tokenizer)
    return model.get_input_embeddings().weight.detach().float()  # E: (V, d)


def _words(tokenizer, gen, n):
    """``n`` distinct random common words, each one token after a space."""
    common = _common(tokenizer)
    words = [tokenizer.decode([i]).strip() for i in common[torch.randperm(len(common), generator=gen)].tolist()]
    plain = [w for w in words[: 40 * n] if len(w) > 2 and w.islower()]  # words, not fragments like 'St'
    one_token = [w for w in plain if len(label_word_token_ids(tokenizer, [w])[0]) == 1]
    return one_token[:n]


def _config(labels, T, seed):
    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, prompt_tuning_init="CLASS_LABELS",
                              prompt_tuning_class_labels=labels, seed=seed)


def _library(model, tokenizer, labels, T, seed):
    return PromptEmbedding(_config(labels, T, seed), model.get_input_embeddings(), tokenizer).weight.detach()


def _case(tokenizer, gen, multi_token=False, all_labels=False):
    labels = _words(tokenizer, gen, 3 if multi_token else int(torch.randint(2, 4, (), generator=gen)))
    if multi_token:  # a label of two words: several tokens
        labels = [labels[0] + " " + labels[1], labels[2]]
    T = len(labels) if all_labels else len(labels) + int(torch.randint(1, 9, (), generator=gen))
    return labels, T, int(torch.randint(0, 10_000, (), generator=gen))


def _same_prompt(class_label_prompt, model, tokenizer, labels, T, seed):
    E = _needs(model, tokenizer)
    expected = _library(model, tokenizer, labels, T, seed)  # (T, d)
    case = f"labels={labels}, T={T}, seed={seed}"
    got = same_shape(f"{PROMPT} ({case})", class_label_prompt(E, tokenizer, labels, T, seed), tuple(expected.shape),
                     "T slots of d numbers each")
    got = got.detach().to(expected.device, expected.dtype)
    right = torch.isclose(got, expected, atol=1e-5, rtol=1e-4).all(-1)  # (T,)
    if right.all():
        return
    C = len(labels)
    wrong_labels = [i for i in range(C) if not right[i]]
    if wrong_labels:
        i = wrong_labels[0]
        hint = ""
        if uses_leading_space(tokenizer):
            alone = tokenizer(labels[i], add_special_tokens=False)["input_ids"]
            if torch.allclose(got[i], E[torch.as_tensor(alone, device=E.device)].mean(0), atol=1e-5, rtol=1e-4):
                hint = (f" Slot {i} is built from the pieces of {labels[i]!r} at the start of a text; a label word "
                        f"is read after a space, as in 'Sentiment: {labels[i]}'.")
        raise AssertionError(f"{case}: the label slots {wrong_labels} (of 0..{C - 1}) are wrong.{hint}")
    wrong = (~right).nonzero()[:, 0].tolist()
    raise AssertionError(f"{case}: the label slots are right, but the sampled slots {wrong} (of {C}..{T - 1}) are "
                         "not the rows the library samples: the same candidate tokens, drawn the same way, with a "
                         "generator seeded with `seed`")


@test_case(points=1)
def test_labels_then_sampled_words(class_label_prompt, model, tokenizer):
    class_label_prompt = require("class_label_prompt", class_label_prompt)
    _needs(model, tokenizer)
    gen = fresh_generator()
    for _ in range(2):
        _same_prompt(class_label_prompt, model, tokenizer, *_case(tokenizer, gen))


@test_case(points=1)
def test_a_label_of_several_tokens_and_no_free_slot(class_label_prompt, model, tokenizer):
    class_label_prompt = require("class_label_prompt", class_label_prompt)
    _needs(model, tokenizer)
    gen = fresh_generator()
    _same_prompt(class_label_prompt, model, tokenizer, *_case(tokenizer, gen, multi_token=True))
    _same_prompt(class_label_prompt, model, tokenizer, *_case(tokenizer, gen, all_labels=True))


@test_case(points=1)
def test_the_twin_gives_the_soft_prompts_logits(hard_prompt_twin, model, tokenizer):
    hard_prompt_twin = require("hard_prompt_twin", hard_prompt_twin)
    E = _needs(model, tokenizer)
    gen = fresh_generator()
    labels, T, seed = _case(tokenizer, gen)
    case = f"labels={labels}, T={T}, seed={seed}"
    twin = hard_prompt_twin(tokenizer, labels, T, seed)
    if twin is None:
        raise AssertionError(f"{case}: every label is one token, so the prompt has a twin; {TWIN} gave None")
    twin = same_shape(f"{TWIN} ({case})", twin, (T,), "T token ids").to(E.device).long()
    expected = _library(model, tokenizer, labels, T, seed)  # (T, d)
    rows = torch.isclose(E[twin], expected, atol=1e-5, rtol=1e-4).all(-1)  # (T,)
    if not rows.all():
        raise AssertionError(f"{case}: the rows of your twin's tokens {(~rows).nonzero()[:, 0].tolist()} are not the "
                             "prompt's rows at those slots")
    common = _common(tokenizer)
    x = common[torch.randint(len(common), (6,), generator=gen)].tolist()  # an input of 6 random words
    with torch.no_grad():
        soft = sp.get_prompt_model(model, _config(labels, T, seed), tokenizer)(
            input_ids=torch.tensor([x], device=E.device)).logits[0]  # (6, V)
        hard = model(input_ids=torch.tensor([twin.tolist() + x], device=E.device)).logits[0, T:]  # (6, V)
    if not torch.allclose(soft.float(), hard.float(), **sp.tolerance(model.dtype)):
        raise AssertionError(f"{case}: typed in front of an input, your twin does not give the soft prompt's logits "
                             f"(largest difference {float((soft.float() - hard.float()).abs().max()):.3g})")


@test_case(points=1)
def test_no_twin_for_a_label_of_several_tokens(hard_prompt_twin, model, tokenizer):
    hard_prompt_twin = require("hard_prompt_twin", hard_prompt_twin)
    _needs(model, tokenizer)
    labels, T, seed = _case(tokenizer, fresh_generator(), multi_token=True)
    twin = hard_prompt_twin(tokenizer, labels, T, seed)
    if twin is not None:
        raise AssertionError(f"labels={labels}, T={T}, seed={seed}: the label {labels[0]!r} is several tokens; "
                             f"can typed tokens give the mean of their rows? {TWIN} gave a twin, not None")
