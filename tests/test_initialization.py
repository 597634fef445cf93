"""Init strategies (Lester et al. §3.2): RANDOM norm, SAMPLE_VOCAB's allowed set, TEXT repeat/fill, CLASS_LABELS."""

import math

import peft
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from softprompt.config import PromptTuningConfig
from softprompt.initialization import (
    class_label_init,
    common_word_token_ids,
    initial_prompt,
    label_word_token_ids,
    mean_embedding_norm,
    random_init,
    sample_vocab_init,
    text_init,
    uses_leading_space,
)
from softprompt.testing import tiny_model

CORPUS = [
    "the movie was great and the acting was positive",
    "a negative review of the film, 42 stars",
    "the plot is terrible; the music is great!",
] * 20


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE tokenizer (GPT-2 / SmolLM2 conventions: 'Ġ' word starts), trained in memory on a toy corpus."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"], show_progress=False)
    backend.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def emb():
    return tiny_model("llama").get_input_embeddings()


@pytest.fixture(scope="module")
def bpe_emb(bpe):
    return tiny_model("llama", vocab_size=len(bpe)).get_input_embeddings()


def row_ids(x, emb):
    """For each row of x, the id of the identical embedding row (-1 if none): which token a vector is."""
    W = emb.weight.detach()
    eq = (x[:, None, :] == W[None, :, :]).all(-1)  # (T, V)
    return [int(r.nonzero()[0]) if r.any() else -1 for r in eq]


# --- which tokens are sampled ------------------------------------------------------------------------------
def test_common_words_word_level(tokenizer):
    ids = common_word_token_ids(tokenizer, None)
    pieces = tokenizer.convert_ids_to_tokens(ids.tolist())
    assert all(p.isalpha() for p in pieces)
    assert not set(ids.tolist()) & set(tokenizer.all_special_ids)  # <unk>, <pad> ... never
    assert "," not in pieces and "positive" in pieces
    assert ids.tolist() == sorted(ids.tolist())
    assert common_word_token_ids(tokenizer, 10).tolist() == ids[:10].tolist()  # the k lowest ids


def test_common_words_byte_level(bpe):
    ids = common_word_token_ids(bpe, None)
    words = [bpe.decode([i]) for i in ids.tolist()]
    assert all(w[0] == " " and w[1:].isalpha() for w in words), words
    assert " the" in words and " positive" in words
    every = [bpe.decode([i]) for i in range(len(bpe))]
    assert " 42" in every and "the" in every  # digits and word-internal pieces exist but are not word-like
    assert len(common_word_token_ids(bpe, 5)) == 5


def test_leading_space_convention(bpe, tokenizer):
    assert uses_leading_space(bpe) and not uses_leading_space(tokenizer)
    assert label_word_token_ids(bpe, ["positive"]) == [bpe(" positive", add_special_tokens=False)["input_ids"]]
    assert label_word_token_ids(tokenizer, ["positive"]) == [[tokenizer.convert_tokens_to_ids("positive")]]


def test_label_word_errors(tokenizer):
    with pytest.raises(ValueError, match="'zebra'.*unknown token"):
        label_word_token_ids(tokenizer, ["positive", "zebra"])
    tokenizer.backend_tokenizer.normalizer = normalizers.Replace("~", "")
    with pytest.raises(ValueError, match="'~~'.*no tokens"):
        label_word_token_ids(tokenizer, ["~~"])


# --- RANDOM -----------------------------------------------------------------------------------------------------
def test_random_vocab_norm(emb):
    x = random_init(6, 32, word_embeddings=emb, generator=torch.Generator().manual_seed(0))  # (6, 32)
    target = emb.weight.detach().norm(dim=-1).mean()
    torch.testing.assert_close(x.norm(dim=-1), target.expand(6))
    assert x.std(0).min() > 0  # six different directions
    assert mean_embedding_norm(emb) == pytest.approx(float(target))


def test_random_peft_scale_is_standard_normal():
    x = random_init(64, 32, scale="peft", generator=torch.Generator().manual_seed(0))
    assert abs(x.mean()) < 0.1 and abs(x.std() - 1) < 0.1
    assert x.norm(dim=-1).mean() == pytest.approx(math.sqrt(32), rel=0.15)


def test_random_is_seeded(emb):
    c = PromptTuningConfig(num_virtual_tokens=4, seed=1)
    a, b = initial_prompt(c, emb), initial_prompt(c, emb)
    assert torch.equal(a, b)
    assert not torch.equal(a, initial_prompt(c.replace(seed=2), emb))


def test_random_needs_embeddings_for_vocab_norm():
    with pytest.raises(ValueError, match="word_embeddings"):
        random_init(3, 8)


# --- SAMPLE_VOCAB ------------------------------------------------------------------------------------------------
def test_sample_vocab_comes_from_allowed_set(emb, tokenizer):
    c = PromptTuningConfig(num_virtual_tokens=8, prompt_tuning_init="SAMPLE_VOCAB", sample_vocab_size=12, seed=0)
    x = initial_prompt(c, emb, tokenizer)  # (8, 32)
    ids = row_ids(x, emb)
    allowed = set(common_word_token_ids(tokenizer, 12).tolist())
    assert set(ids) <= allowed and len(set(ids)) == 8  # distinct tokens when there are enough
    assert torch.equal(x, initial_prompt(c, emb, tokenizer))


def test_sample_vocab_with_replacement_when_few_candidates(emb):
    x = sample_vocab_init(emb, 10, candidate_ids=torch.tensor([5, 6, 7]), generator=torch.Generator().manual_seed(0))
    assert set(row_ids(x, emb)) <= {5, 6, 7}


def test_sample_vocab_like_peft_draws_vocabulary_rows(emb):
    """PEFT samples the whole vocabulary; ours does too without a size limit. Both give exact embedding rows."""
    config = dict(num_virtual_tokens=6, token_dim=32, prompt_tuning_init="SAMPLE_VOCAB")
    theirs = peft.PromptEmbedding(peft.PromptTuningConfig(num_transformer_submodules=1, **config), emb)
    ours = initial_prompt(PromptTuningConfig(sample_vocab_size=None, seed=0, **config), emb)
    assert -1 not in row_ids(theirs.embedding.weight.detach(), emb)
    assert -1 not in row_ids(ours, emb)


# --- TEXT --------------------------------------------------------------------------------------------------------
def text_config(text, T, **kw):
    return PromptTuningConfig(num_virtual_tokens=T, prompt_tuning_init="TEXT", prompt_tuning_init_text=text, **kw)


@pytest.mark.parametrize("T", [2, 3, 7, 10])  # truncate, exact, repeat with a partial cycle, repeat
def test_text_repeat_matches_peft_exactly(T, emb, tokenizer, tmp_path):
    text = "classify the review"
    tokenizer.save_pretrained(tmp_path)
    theirs = peft.PromptEmbedding(
        peft.PromptTuningConfig(num_virtual_tokens=T, token_dim=32, num_transformer_submodules=1,
                                prompt_tuning_init="TEXT", prompt_tuning_init_text=text,
                                tokenizer_name_or_path=str(tmp_path)),
        emb,
    )
    ours = initial_prompt(text_config(text, T), emb, tokenizer)
    torch.testing.assert_close(ours, theirs.embedding.weight.detach(), rtol=0, atol=0)
    ids = tokenizer(text)["input_ids"]
    assert row_ids(ours, emb) == (ids * 4)[:T]


def test_text_fill_with_sampled_vocab(emb, tokenizer):
    c = text_config("classify the review", 9, text_init_fill="SAMPLE_VOCAB", sample_vocab_size=20, seed=0)
    ids = row_ids(initial_prompt(c, emb, tokenizer), emb)
    assert ids[:3] == tokenizer("classify the review")["input_ids"]
    assert set(ids[3:]) <= set(common_word_token_ids(tokenizer, 20).tolist())


def test_text_drops_special_tokens(emb, tokenizer):
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    assert tokenizer("good")["input_ids"] == [2, tokenizer.convert_tokens_to_ids("good"), 3]
    ids = row_ids(initial_prompt(text_config("good", 2), emb, tokenizer), emb)
    assert ids == [tokenizer.convert_tokens_to_ids("good")] * 2


def test_text_errors(emb, tokenizer):
    with pytest.raises(ValueError, match="needs a tokenizer"):
        initial_prompt(text_config("hello", 4), emb)
    with pytest.raises(ValueError, match="no tokens"):
        text_init(emb, [], 4)
    with pytest.warns(UserWarning, match="does not know"):
        initial_prompt(text_config("classify the zebra", 4), emb, tokenizer)
    with pytest.raises(ValueError, match="outside the model's embedding table"):
        text_init(emb, [10_000], 2)


# --- CLASS_LABELS ------------------------------------------------------------------------------------------------
def test_class_labels_average_and_fill(emb):
    W = emb.weight.detach()
    x = class_label_init(emb, [[10, 11, 12], [20]], 5, candidate_ids=torch.tensor([30, 31, 32]),
                         generator=torch.Generator().manual_seed(0))  # (5, 32)
    torch.testing.assert_close(x[0], W[[10, 11, 12]].mean(0))
    torch.testing.assert_close(x[1], W[20])
    assert set(row_ids(x[2:], emb)) == {30, 31, 32}


def test_class_labels_multi_piece_word(bpe, bpe_emb):
    pieces = bpe(" negativity", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1  # the toy vocabulary splits it
    c = PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="CLASS_LABELS",
                           prompt_tuning_class_labels=["positive", "negativity"], seed=0)
    x = initial_prompt(c, bpe_emb, bpe)
    W = bpe_emb.weight.detach()
    torch.testing.assert_close(x[0], W[bpe(" positive", add_special_tokens=False)["input_ids"]].mean(0))
    torch.testing.assert_close(x[1], W[pieces].mean(0))
    assert set(row_ids(x[2:], bpe_emb)) <= set(common_word_token_ids(bpe, 5000).tolist())


def test_class_labels_errors(emb, tokenizer):
    c = PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="CLASS_LABELS",
                           prompt_tuning_class_labels=["positive", "zebra"])
    with pytest.raises(ValueError, match="'zebra'"):
        initial_prompt(c, emb, tokenizer)
    with pytest.raises(ValueError, match="at least 3"):
        class_label_init(emb, [[1], [2], [3]], 2)


@pytest.mark.slow
def test_smollm2_common_words_and_norms(smollm2):
    model, tok = smollm2
    ids = common_word_token_ids(tok, 5000)
    words = [tok.decode([i]) for i in ids.tolist()]
    assert len(ids) == 5000 and words[:3] == [" t", " a", " the"]
    assert all(w[0] == " " and w[1:].isalpha() for w in words)
    assert label_word_token_ids(tok, ["positive", "negative"]) == [tok.encode(" positive"), tok.encode(" negative")]
    assert len(label_word_token_ids(tok, ["positive"])[0]) == 1
    emb = model.get_input_embeddings()
    vocab = random_init(20, 576, word_embeddings=emb, generator=torch.Generator().manual_seed(0))
    peft_like = random_init(20, 576, scale="peft", generator=torch.Generator().manual_seed(0))
    target = mean_embedding_norm(emb)  # about 3.2 for SmolLM2-135M
    torch.testing.assert_close(vocab.norm(dim=-1), torch.full((20,), target))
    assert peft_like.norm(dim=-1).mean() > 5 * target  # N(0, 1) starts far off the embedding manifold
