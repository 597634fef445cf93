"""Exercise 03.2 (★★): word_similarity(prompt_model, tokenizer) -> (T,) tensor. For each virtual token, the cosine to
its nearest vocabulary piece that is a word: special tokens skipped, and only pieces made of letters
(``nearest_tokens``' ``skip_special=True, words_only=True``)."""

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_seed, notebook_needs, require, same_shape
from softprompt.neighbors import display_token, vocab_mask

OK_FORMAT = False
name = "03.2"
points = 2


def _random_prompt(model, tokenizer, seed: int, T: int):
    config = sp.PromptTuningConfig(num_virtual_tokens=T, prompt_tuning_init="RANDOM", seed=seed)
    return sp.get_prompt_model(model, config, tokenizer=tokenizer)


def _values(word_similarity, pm, tokenizer, case: str) -> torch.Tensor:
    T = pm.num_virtual_tokens
    got = word_similarity(pm, tokenizer)
    got = same_shape("word_similarity(prompt_model, tokenizer)", got, (T,), f"{case}: one cosine per virtual token")
    return got.detach().float().cpu()


def _library(pm, tokenizer) -> torch.Tensor:
    return sp.nearest_tokens(pm, None, tokenizer, k=1, skip_special=True, words_only=True).scores[:, 0]  # (T,)


def _compare(got: torch.Tensor, expected: torch.Tensor, case: str, dtype, on: dict) -> None:
    # cosines lie in [-1, 1]: float32 rounding, or that of a half-precision table read without converting it
    atol = 1e-4 if dtype == torch.float32 else 8 * torch.finfo(dtype).eps
    bad = ~torch.isclose(got, expected, atol=atol, rtol=0)
    if bad.any():
        t = int(bad.nonzero()[0])
        where = f" (it sits exactly on the embedding of {on[t]})" if t in on else ""
        unfiltered = " A filter seems to be missing." if got[t] > expected[t] else ""
        raise AssertionError(
            f"{case}: {int(bad.sum())} of {len(got)} values are wrong; virtual token {t}{where}: you returned "
            f"{float(got[t]):.4f}, but its nearest word has cosine {float(expected[t]):.4f}.{unfiltered}")


@test_case(points=1)
def test_a_random_prompt(word_similarity, model, tokenizer):
    word_similarity = require("word_similarity", word_similarity)
    notebook_needs(model=model, tokenizer=tokenizer)
    with fresh_seed() as seed:
        pm = _random_prompt(model, tokenizer, seed, T=6)
        case = f"a RANDOM prompt of 6 virtual tokens (seed {seed})"
        got = _values(word_similarity, pm, tokenizer, case)
        expected = _library(pm, tokenizer)
        _compare(got, expected, case, model.dtype, {})


@test_case(points=1)
def test_virtual_tokens_on_a_special_token_and_on_punctuation(word_similarity, model, tokenizer):
    word_similarity = require("word_similarity", word_similarity)
    notebook_needs(model=model, tokenizer=tokenizer)
    with fresh_seed() as seed:
        pm = _random_prompt(model, tokenizer, seed, T=4)
        E = pm.word_embeddings.weight  # (V, d)
        V = E.shape[0]
        words = vocab_mask(tokenizer, V, skip_special=True, words_only=True)  # (V,) bool
        specials = [i for i in tokenizer.all_special_ids if i < V]
        special = max(specials, key=lambda i: float(E[i].norm()))  # the longest: a padding row may be all zeros
        other = next(i for i in range(min(V, len(tokenizer))) if not words[i] and i not in tokenizer.all_special_ids)
        with torch.no_grad():  # virtual token 0 on a special token, 1 on a piece that is not a word
            pm.prompt_encoder.embedding.weight[0] = E[special].float()
            pm.prompt_encoder.embedding.weight[1] = E[other].float()
        on = {0: f"{display_token(tokenizer, special)!r}, a special token",
              1: f"{display_token(tokenizer, other)!r}, not a word"}
        case = f"a RANDOM prompt (seed {seed}) with virtual tokens 0 and 1 moved onto two vocabulary pieces"
        got = _values(word_similarity, pm, tokenizer, case)
        expected = _library(pm, tokenizer)
        _compare(got, expected, case, model.dtype, on)
