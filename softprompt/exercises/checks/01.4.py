"""Exercise 01.4 (★★): label_slot(E, tokenizer, word), the (d,) vector CLASS_LABELS puts in a label word's slot."""

import torch
from otter.test_files import test_case

from softprompt.config import PromptTuningConfig
from softprompt.exercises import fresh_generator, notebook_needs, require, same_shape
from softprompt.initialization import common_word_token_ids, label_word_token_ids, uses_leading_space
from softprompt.prompt_embedding import PromptEmbedding

OK_FORMAT = False
name = "01.4"
points = 3

CALL = "label_slot(E, tokenizer, word)"


_COMMON = {}  # this check run's common words, per tokenizer: finding them reads the whole vocabulary


def _common(tokenizer):
    if id(tokenizer) not in _COMMON:
        _COMMON[id(tokenizer)] = common_word_token_ids(tokenizer, 2000)
    return _COMMON[id(tokenizer)]


def _setup(label_slot, model, tokenizer):
    notebook_needs(model=model, tokenizer=tokenizer)
    return require("label_slot", label_slot), model.get_input_embeddings().weight.detach().float()  # E: (V, d)


def _words(tokenizer, gen, n):
    """``n`` distinct random common words, each one token after a space."""
    common = _common(tokenizer)
    words = [tokenizer.decode([i]).strip() for i in common[torch.randperm(len(common), generator=gen)].tolist()]
    plain = [w for w in words[: 40 * n] if len(w) > 2 and w.islower()]  # words, not fragments like 'St'
    one_token = [w for w in plain if len(label_word_token_ids(tokenizer, [w])[0]) == 1]
    return one_token[:n]


def _split_word(tokenizer, gen):
    """A single word of several tokens (two common words run together), where the tokenizer has such words."""
    words = _words(tokenizer, gen, 20)
    for first, second in zip(words[::2], words[1::2]):
        word = first + second
        pieces = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(pieces) > 1 and tokenizer.unk_token_id not in pieces:
            return word
    return None  # a word-level vocabulary: a word is one token or unknown


def _library_slot(model, tokenizer, word):
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=1, prompt_tuning_init="CLASS_LABELS",
                                prompt_tuning_class_labels=[word])
    return PromptEmbedding(config, model.get_input_embeddings(), tokenizer).weight.detach()[0]  # (d,)


def _what_it_is(got, E, tokenizer, word):
    """What a wrong slot holds, among the usual slips; None when it is none of them."""
    pieces = label_word_token_ids(tokenizer, [word])[0]
    rows = E[torch.as_tensor(pieces, device=E.device)]  # (n, d)
    slips = {"the sum of the word's piece rows, not their mean": rows.sum(0)}
    if len(pieces) > 1:
        slips["the row of the word's first piece only"] = rows[0]
        slips["the row of the word's last piece only"] = rows[-1]
    if uses_leading_space(tokenizer):
        alone = E[torch.as_tensor(tokenizer(word, add_special_tokens=False)["input_ids"], device=E.device)]
        slips[f"built from the pieces of {word!r} at the start of a text; a label word is read after a "
              f"space, as in 'Sentiment: {word}'"] = alone.mean(0)
    return next((slip for slip, vector in slips.items() if torch.allclose(got, vector, atol=1e-5, rtol=1e-4)), None)


def _same_slot(label_slot, E, model, tokenizer, word):
    expected = _library_slot(model, tokenizer, word)  # (d,)
    n = len(label_word_token_ids(tokenizer, [word])[0])
    case = f"label {word!r} ({n} token{'s' if n > 1 else ''})"
    got = same_shape(f"{CALL} for {case}", label_slot(E, tokenizer, word), tuple(expected.shape), "one vector of d")
    got = got.detach().to(expected.device, expected.dtype)
    if torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
        return
    slip = _what_it_is(got, E, tokenizer, word)
    gap = float((got - expected).abs().max())
    raise AssertionError(f"{case}: your slot is not the one CLASS_LABELS builds (largest difference {gap:.3g})"
                         + (f": it is {slip}." if slip else "."))


@test_case(points=1)
def test_a_word_of_several_tokens(label_slot, model, tokenizer):
    label_slot, E = _setup(label_slot, model, tokenizer)
    word = _split_word(tokenizer, fresh_generator())
    if word is not None:
        _same_slot(label_slot, E, model, tokenizer, word)


@test_case(points=1)
def test_one_token_words(label_slot, model, tokenizer):
    label_slot, E = _setup(label_slot, model, tokenizer)
    for word in _words(tokenizer, fresh_generator(), 3):
        _same_slot(label_slot, E, model, tokenizer, word)


@test_case(points=1)
def test_a_label_of_two_words(label_slot, model, tokenizer):
    label_slot, E = _setup(label_slot, model, tokenizer)
    _same_slot(label_slot, E, model, tokenizer, " ".join(_words(tokenizer, fresh_generator(), 2)))
