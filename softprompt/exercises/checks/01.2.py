"""Exercise 01.2 (★★): text_prompt(E, ids, T), the (T, d) TEXT init with PEFT's REPEAT fill, against PromptEmbedding."""

import torch
from otter.test_files import test_case

from softprompt.config import PromptTuningConfig
from softprompt.exercises import fresh_generator, notebook_needs, require, same_shape
from softprompt.initialization import common_word_token_ids
from softprompt.prompt_embedding import PromptEmbedding

OK_FORMAT = False
name = "01.2"
points = 3

CALL = "text_prompt(E, ids, T)"


_COMMON = {}  # this check run's common words, per tokenizer: finding them reads the whole vocabulary


def _common(tokenizer):
    if id(tokenizer) not in _COMMON:
        _COMMON[id(tokenizer)] = common_word_token_ids(tokenizer, 2000)
    return _COMMON[id(tokenizer)]


def _setup(text_prompt, model, tokenizer):
    notebook_needs(model=model, tokenizer=tokenizer)
    return require("text_prompt", text_prompt), model.get_input_embeddings().weight.detach().float()  # E: (V, d)


def _text(tokenizer, gen, n_words):
    """A text of distinct random common words, and its token ids as the TEXT init reads them."""
    common = _common(tokenizer)
    picks = common[torch.randperm(len(common), generator=gen)[:n_words]].tolist()
    text = " ".join(tokenizer.decode([i]).strip() for i in picks)
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


def _library(model, tokenizer, text, T):
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, prompt_tuning_init="TEXT",
                                prompt_tuning_init_text=text, text_init_fill="REPEAT")
    return PromptEmbedding(config, model.get_input_embeddings(), tokenizer).weight.detach()  # (T, d)


def _same_rows(got, expected, E, ids, case):
    """Slot by slot; a wrong slot is described by the text token whose row it holds (what the answer did)."""
    got = same_shape(CALL, got, tuple(expected.shape), "one row of d numbers per virtual token")
    got = got.detach().to(expected.device, expected.dtype)
    right = torch.isclose(got, expected, atol=1e-6, rtol=0).all(-1)  # (T,)
    if right.all():
        return
    rows = E[torch.as_tensor(ids, device=E.device)]  # (n, d): the text's rows
    holds = []
    for row in got:
        match = torch.isclose(rows, row, atol=1e-6, rtol=0).all(-1).nonzero()  # which text token's row, if any
        holds.append(str(int(match[0])) if len(match) else "-")
    wrong = (~right).nonzero()[:, 0].tolist()
    raise AssertionError(
        f"{case}: {len(wrong)} of {len(right)} slots hold the wrong row (slots {wrong}). Your slots hold the rows of "
        f"the text's tokens at positions [{', '.join(holds)}] of ids ('-': a row of no token of the text)")


@test_case(points=1)
def test_a_text_longer_than_the_prompt(text_prompt, model, tokenizer):
    text_prompt, E = _setup(text_prompt, model, tokenizer)
    gen = fresh_generator()
    for T in (int(torch.randint(4, 9, (), generator=gen)), 1):
        text, ids = _text(tokenizer, gen, T + int(torch.randint(2, 8, (), generator=gen)))
        case = f"a text of {len(ids)} tokens into T={T} slots"
        expected = _library(model, tokenizer, text, T)
        _same_rows(text_prompt(E, list(ids), T), expected, E, ids, case)


@test_case(points=1)
def test_a_text_shorter_than_the_prompt(text_prompt, model, tokenizer):
    text_prompt, E = _setup(text_prompt, model, tokenizer)
    gen = fresh_generator()
    for n_words, T in ((3, 8), (2, 7), (1, 5), (4, 10)):
        text, ids = _text(tokenizer, gen, n_words)
        if len(ids) >= T:
            continue
        case = f"a text of {len(ids)} tokens into T={T} slots"
        expected = _library(model, tokenizer, text, T)
        _same_rows(text_prompt(E, list(ids), T), expected, E, ids, case)


@test_case(points=1)
def test_a_text_as_long_as_the_prompt(text_prompt, model, tokenizer):
    text_prompt, E = _setup(text_prompt, model, tokenizer)
    text, ids = _text(tokenizer, fresh_generator(), 5)
    case = f"a text of {len(ids)} tokens into T={len(ids)} slots"
    expected = _library(model, tokenizer, text, len(ids))
    _same_rows(text_prompt(E, list(ids), len(ids)), expected, E, ids, case)
