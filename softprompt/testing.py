"""Tiny random models and an offline tokenizer, for tests and quick experiments.

Nothing here touches the network: the tokenizer is a word-level vocabulary built in memory,
the models are built from configs with a few thousand parameters each. Every architecture
family the library supports is represented: a decoder-only Llama and GPT-2, an
encoder-decoder T5, and an encoder BERT with a classification head.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

__all__ = ["TINY_ARCHITECTURES", "TINY_WORDS", "tiny_tokenizer", "tiny_model"]

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]

# A small English vocabulary: label words, task words, and filler, so that text init,
# class-label init and the built-in task templates tokenize without unknown tokens.
TINY_WORDS = """
positive negative neutral good bad great terrible excellent awful fine okay love hate
movie film book product food restaurant service story plot actor acting music song
the a an this that these those it is was are were be been being and or but not no yes
i you he she we they me my your our their of to in on at for with from by as about
very really so too quite rather also just only still even more most less least
review sentiment topic label answer question statement formal informal casual polite
sports science politics business technology health travel weather art history
what why how when where who which predict classify decide tell if whether text sentence
happy sad angry calm fast slow big small new old hot cold loud quiet cheap expensive
blue green red yellow apple banana cherry grape foo bar baz qux
one two three four five six seven eight nine ten
. , ! ? : ; ' " - ( )
""".split()

TINY_ARCHITECTURES = ("llama", "gpt2", "t5", "bert")


def tiny_tokenizer(padding_side: str = "left") -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over :data:`TINY_WORDS`; needs no download.

    Words split on whitespace and punctuation; unknown words map to ``<unk>``.
    """
    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(set(TINY_WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side=padding_side,
    )
    return tok


def tiny_model(arch: str = "llama", *, vocab_size: int | None = None, seed: int = 0, num_labels: int = 2):
    """A randomly initialized model of family ``arch`` (one of :data:`TINY_ARCHITECTURES`), in eval mode.

    Hidden size 32, 2 layers, 4 heads: a forward pass takes milliseconds.
    """
    tok = tiny_tokenizer()
    v = vocab_size or len(tok)
    ids = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    torch.manual_seed(seed)
    if arch == "llama":
        cfg = LlamaConfig(
            vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, **ids,
        )
        model = LlamaForCausalLM(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=256, **ids)
        model = GPT2LMHeadModel(cfg)
    elif arch == "t5":
        cfg = T5Config(
            vocab_size=v, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
            decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
        model = T5ForConditionalGeneration(cfg)
    elif arch == "bert":
        cfg = BertConfig(
            vocab_size=v, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=256, num_labels=num_labels, pad_token_id=tok.pad_token_id,
        )
        model = BertForSequenceClassification(cfg)
    else:
        raise ValueError(f"arch={arch!r} is not a tiny architecture; use one of {TINY_ARCHITECTURES}.")
    model.config.pad_token_id = tok.pad_token_id
    return model.eval()
