"""Where a soft prompt starts: the initial ``(T, d)`` tensor for each init mode (Lester et al. 2021, §3.2, §5).

Lester et al. §3.2 compare three starts, and §5 (Figure 3b) finds the order
*class labels > sampled vocabulary > random uniform*, with the gap closing for large models:

* :func:`random_init`: random vectors. PEFT draws N(0, 1) per entry, a vector of norm about sqrt(d),
  much longer than real token embeddings; ``scale="vocab_norm"`` keeps the random direction but
  gives each vector the mean norm of the vocabulary's embeddings, so it starts where words live.
* :func:`sample_vocab_init`: embeddings of tokens sampled from the vocabulary. Lester samples from
  the 5,000 most common tokens; :func:`common_word_token_ids` gives such a set without corpus counts.
* :func:`text_init`: the embeddings of a text's tokens, truncated to T; shorter texts are followed by
  the text again (PEFT's cyclic repeat) or by sampled vocabulary.
* :func:`class_label_init`: Lester's class-label init: slot i holds the embedding of label word i
  (the mean over its pieces when the word is several tokens), the remaining slots sampled vocabulary.

Every function is pure: it reads the (frozen) word embeddings and returns a new float32 tensor.
Randomness comes from an explicit ``torch.Generator`` (None: torch's global RNG), so a seed fixes it.
:func:`initial_prompt` picks the function a :class:`~softprompt.config.PromptTuningConfig` asks for;
:func:`prompt_start` is what ``PromptEmbedding`` calls: that, with the config's tokenizer loaded when none is given.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from .enums import PromptTuningInit, RandomInitScale, TextInitFill
from .label_words import label_word_ids
from .models import PRESETS, load_tokenizer

if TYPE_CHECKING:  # for annotations only: this module is a leaf beside the config
    from .config import PromptTuningConfig

__all__ = [
    "common_word_token_ids", "label_word_token_ids", "uses_leading_space",
    "random_init", "sample_vocab_init", "text_init", "class_label_init", "initial_prompt", "make_generator",
    "prompt_start", "config_tokenizer",
]

# Word-start markers in token strings: byte-level BPE (GPT-2, Llama 3, SmolLM2) and SentencePiece (T5, Llama 2).
_WORD_START = ("Ġ", "▁")


def make_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed``; None (torch's global RNG) when ``seed`` is None."""
    return None if seed is None else torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Which tokens to sample from
# --------------------------------------------------------------------------------------------
def common_word_token_ids(tokenizer, k: int | None = 5000) -> torch.Tensor:
    """Ids of the ``k`` most common word-like tokens, ascending (Lester et al. §3.2: "the 5,000 most common").

    *Most common* without corpus counts: a BPE vocabulary numbers its tokens in merge order, and
    earlier merges are the more frequent pairs, so a lower id means a more common token.
    SentencePiece vocabularies are sorted by piece score (log-probability), which points the same way.
    Lowest ids first is therefore the frequency proxy.

    *Word-like*: not a special or added token, and
    - in a vocabulary with word-start markers (``Ġ`` byte-level BPE, ``▁`` SentencePiece): the marker
      followed by letters only (``Ġpositive``, ``▁movie``), i.e. a whole word as it appears after a space;
    - otherwise (word-level or WordPiece vocabularies, like the tiny test tokenizer): letters only
      (WordPiece continuations ``##ing`` are excluded by this).

    Returns all word-like ids when fewer than ``k`` exist (``k=None``: all of them).

    Raises:
        ValueError: the vocabulary holds no word-like token at all.
    """
    vocab_size = len(tokenizer)
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    pieces = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    has_markers = any(p is not None and p.startswith(_WORD_START) for p in pieces)
    ids = []
    for i, piece in enumerate(pieces):
        if i in special or not piece:
            continue
        if has_markers:
            # Decode the piece: byte-level BPE spells bytes as letters ("ĠĠ" is two spaces, not a word).
            word_like = piece[0] in _WORD_START and tokenizer.convert_tokens_to_string([piece]).strip().isalpha()
        else:
            word_like = piece.isalpha()
        if word_like:
            ids.append(i)
            if k is not None and len(ids) >= k:
                break
    if not ids:
        raise ValueError(
            f"{type(tokenizer).__name__} has no word-like tokens to sample from; use sample_vocab_size=None "
            "(the whole vocabulary) or another init."
        )
    return torch.tensor(ids, dtype=torch.long)


def uses_leading_space(tokenizer) -> bool:
    """True when a word after a space tokenizes differently from the same word at the start (GPT-2 style BPE).

    Then a label word is encoded as ``" " + word``: the pieces the model sees after a template
    (``"Sentiment: positive"``). Word-level, WordPiece and SentencePiece tokenizers treat both alike.
    """
    return tokenizer.tokenize(" hello") != tokenizer.tokenize("hello")


def label_word_token_ids(tokenizer, words: list[str]) -> list[list[int]]:
    """The token ids of each label word, as the model sees it after a space (Lester et al. §3.2).

    ``" " + word`` for tokenizers with a leading-space convention (see :func:`uses_leading_space`),
    ``word`` otherwise; no special tokens (:func:`softprompt.label_words.label_word_ids`).

    Raises:
        ValueError: a word encodes to no tokens or to the unknown token; the message names the word.
    """
    leading_space = uses_leading_space(tokenizer)
    out = []
    for word in words:
        ids = label_word_ids(tokenizer, word.strip(), leading_space=leading_space)
        if not ids:
            raise ValueError(f"Label word {word!r} encodes to no tokens; choose a word the tokenizer knows.")
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            pieces = tokenizer.convert_ids_to_tokens(ids)
            raise ValueError(
                f"Label word {word!r} encodes to the unknown token {tokenizer.unk_token!r} (pieces {pieces}); "
                "its embedding would say nothing about the label. Choose a word in the tokenizer's vocabulary."
            )
        out.append(ids)
    return out


# --------------------------------------------------------------------------------------------
# Init functions: each returns a new (T, d) float32 tensor
# --------------------------------------------------------------------------------------------
def _weight(word_embeddings: nn.Embedding | torch.Tensor) -> torch.Tensor:
    w = word_embeddings.weight if isinstance(word_embeddings, nn.Module) else word_embeddings
    return w.detach()


def _lookup(word_embeddings, ids) -> torch.Tensor:
    w = _weight(word_embeddings)
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.numel() and int(ids.max()) >= w.shape[0]:
        raise ValueError(
            f"Token id {int(ids.max())} is outside the model's embedding table ({w.shape[0]} rows): "
            "the tokenizer does not belong to this model. Use the model's own tokenizer."
        )
    return w[ids.to(w.device)].to(torch.float32).clone()  # (n, d)


def mean_embedding_norm(word_embeddings) -> float:
    """The mean L2 norm of the vocabulary's embedding rows."""
    return _weight(word_embeddings).to(torch.float32).norm(dim=-1).mean().item()


def random_init(
    num_tokens: int,
    dim: int,
    *,
    scale: RandomInitScale | str = RandomInitScale.VOCAB_NORM,
    word_embeddings=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random prompt vectors (Lester et al. §3.2, "random initialization").

    ``scale="peft"``: entries N(0, 1), as ``nn.Embedding`` (and so PEFT) initializes.
    ``scale="vocab_norm"``: a uniformly random direction (a normalized Gaussian) times the mean
    norm of ``word_embeddings``' rows, so each vector is as long as a typical token embedding.
    """
    scale = RandomInitScale(scale) if not isinstance(scale, RandomInitScale) else scale
    x = torch.randn(num_tokens, dim, generator=generator)  # (T, d)
    if scale == RandomInitScale.PEFT:
        return x
    if word_embeddings is None:
        raise ValueError("random_init(scale='vocab_norm') needs word_embeddings to measure the vocabulary's norm.")
    x = x / x.norm(dim=-1, keepdim=True) * mean_embedding_norm(word_embeddings)  # (T, d), each row the mean norm
    return x.to(_weight(word_embeddings).device)


def _sample_ids(candidate_ids: torch.Tensor, n: int, generator) -> torch.Tensor:
    """``n`` ids drawn from ``candidate_ids``: without replacement when there are enough, else with."""
    if n <= len(candidate_ids):
        pick = torch.randperm(len(candidate_ids), generator=generator)[:n]
    else:
        pick = torch.randint(0, len(candidate_ids), (n,), generator=generator)
    return candidate_ids[pick]


def sample_vocab_init(
    word_embeddings,
    num_tokens: int,
    *,
    candidate_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Embeddings of ``num_tokens`` tokens sampled from ``candidate_ids`` (Lester et al. §3.2, "sampled vocabulary").

    ``candidate_ids=None`` samples the whole embedding table, as PEFT does. Distinct tokens are drawn
    when there are enough candidates (PEFT draws with replacement).
    """
    if candidate_ids is None:
        candidate_ids = torch.arange(_weight(word_embeddings).shape[0])
    return _lookup(word_embeddings, _sample_ids(candidate_ids, num_tokens, generator))  # (T, d)


def text_init(
    word_embeddings,
    token_ids: list[int],
    num_tokens: int,
    *,
    fill: TextInitFill | str = TextInitFill.REPEAT,
    candidate_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The embeddings of a text's tokens (Lester et al. §3.2; PEFT's ``TEXT`` init).

    A text longer than the prompt is truncated to its first ``num_tokens`` tokens. A shorter one is
    followed by ``fill``: ``REPEAT`` repeats the text cyclically, exactly as PEFT does
    (``ids * ceil(T / n)`` then truncated); ``SAMPLE_VOCAB`` fills the rest with sampled vocabulary
    (Lester's rule for slots the init words do not cover).
    """
    fill = TextInitFill(fill) if not isinstance(fill, TextInitFill) else fill
    ids = list(token_ids)
    if not ids:
        raise ValueError("The init text encodes to no tokens; give prompt_tuning_init_text some words.")
    ids = ids[:num_tokens]
    if len(ids) == num_tokens:
        return _lookup(word_embeddings, ids)  # (T, d)
    if fill == TextInitFill.REPEAT:
        ids = (ids * math.ceil(num_tokens / len(ids)))[:num_tokens]
        return _lookup(word_embeddings, ids)  # (T, d)
    rest = sample_vocab_init(
        word_embeddings, num_tokens - len(ids), candidate_ids=candidate_ids, generator=generator
    )  # (T - n, d)
    return torch.cat([_lookup(word_embeddings, ids), rest.to(_weight(word_embeddings).device)])  # (T, d)


def class_label_init(
    word_embeddings,
    label_token_ids: list[list[int]],
    num_tokens: int,
    *,
    candidate_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Lester et al.'s class-label init (§3.2): one slot per class, the rest sampled vocabulary.

    Slot i (i < number of classes) is the embedding of label word i; "for labels with multiple
    tokens, we average the token embeddings". The remaining ``num_tokens - C`` slots are embeddings
    of sampled vocabulary, as in the paper. Label slots come first.
    """
    if len(label_token_ids) > num_tokens:
        raise ValueError(
            f"{len(label_token_ids)} class labels do not fit in {num_tokens} prompt slots; "
            f"raise num_virtual_tokens to at least {len(label_token_ids)}."
        )
    labels = torch.stack([_lookup(word_embeddings, ids).mean(dim=0) for ids in label_token_ids])  # (C, d)
    if len(label_token_ids) == num_tokens:
        return labels
    rest = sample_vocab_init(
        word_embeddings, num_tokens - len(label_token_ids), candidate_ids=candidate_ids, generator=generator
    )  # (T - C, d)
    return torch.cat([labels, rest.to(labels.device)])  # (T, d)


# --------------------------------------------------------------------------------------------
# The config's choice
# --------------------------------------------------------------------------------------------
def initial_prompt(
    config: PromptTuningConfig,
    word_embeddings,
    tokenizer=None,
    *,
    num_tokens: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The initial ``(T_total, d)`` prompt that ``config`` asks for.

    ``tokenizer`` is needed for TEXT and CLASS_LABELS, and for SAMPLE_VOCAB (and the fills that
    sample) when ``config.sample_vocab_size`` is set, to find the common word-like tokens; without
    one, sampling falls back to the whole vocabulary, as PEFT. ``generator`` defaults to one seeded
    with ``config.seed`` (torch's global RNG when the seed is None).
    """
    T = num_tokens or config.total_virtual_tokens
    w = _weight(word_embeddings)
    d = config.token_dim or w.shape[1]
    if d != w.shape[1]:
        raise ValueError(
            f"token_dim={d} does not match the word embeddings' size {w.shape[1]}; set token_dim={w.shape[1]}."
        )
    gen = generator if generator is not None else make_generator(config.seed)
    init = config.prompt_tuning_init
    if init == PromptTuningInit.RANDOM:
        return random_init(T, d, scale=config.random_init_scale, word_embeddings=word_embeddings, generator=gen)

    if init in (PromptTuningInit.TEXT, PromptTuningInit.CLASS_LABELS) and tokenizer is None:
        raise ValueError(
            f"prompt_tuning_init={init.value!r} needs a tokenizer: pass one, or set tokenizer_name_or_path "
            "(config.filled_from_model(model) sets it from the model's name)."
        )
    samples = init != PromptTuningInit.TEXT or config.text_init_fill == TextInitFill.SAMPLE_VOCAB
    candidates = None
    if samples and tokenizer is not None and config.sample_vocab_size is not None:
        candidates = common_word_token_ids(tokenizer, config.sample_vocab_size)
        candidates = candidates[candidates < w.shape[0]]
        if len(candidates) == 0:
            raise ValueError(
                f"None of the tokenizer's common words has a row in the model's embedding table ({w.shape[0]} rows): "
                "the tokenizer does not belong to this model. Use the model's own tokenizer."
            )
    if init == PromptTuningInit.SAMPLE_VOCAB:
        return sample_vocab_init(word_embeddings, T, candidate_ids=candidates, generator=gen)
    if init == PromptTuningInit.TEXT:
        ids = tokenizer(config.prompt_tuning_init_text, add_special_tokens=False)["input_ids"]
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            warnings.warn(
                f"The init text {config.prompt_tuning_init_text!r} has words the tokenizer does not know; "
                "they start as the unknown token's embedding.",
                stacklevel=2,
            )
        return text_init(word_embeddings, ids, T, fill=config.text_init_fill, candidate_ids=candidates, generator=gen)
    label_ids = label_word_token_ids(tokenizer, config.prompt_tuning_class_labels)
    return class_label_init(word_embeddings, label_ids, T, candidate_ids=candidates, generator=gen)


def prompt_start(config: PromptTuningConfig, word_embeddings, tokenizer=None) -> torch.Tensor | None:
    """The ``(T_total, d)`` start of a new prompt (Lester et al. §3.2), or None to keep ``nn.Embedding``'s own.

    None in ``config.inference_mode`` (the weights are about to be loaded, as in PEFT), and for RANDOM init
    with ``random_init_scale='peft'`` and no seed: ``nn.Embedding``'s N(0, 1) init is then exactly PEFT's
    RANDOM under the same torch seed. Without a ``tokenizer``, the config's is loaded when the init reads one.
    """
    keeps_default = (
        config.prompt_tuning_init == PromptTuningInit.RANDOM
        and config.random_init_scale == RandomInitScale.PEFT
        and config.seed is None
    )
    if config.inference_mode or keeps_default:
        return None
    if tokenizer is None and config.uses_tokenizer:
        tokenizer = config_tokenizer(config)
    return initial_prompt(config, word_embeddings, tokenizer)  # (T_total, d)


def config_tokenizer(config: PromptTuningConfig):
    """Load the config's tokenizer (presets work offline); None when it names none and none is strictly needed."""
    name = config.tokenizer_name_or_path
    if name is None:
        if config.needs_tokenizer:
            raise ValueError(
                f"prompt_tuning_init={config.prompt_tuning_init.value!r} needs a tokenizer: pass "
                "PromptEmbedding(config, word_embeddings, tokenizer=...), or set tokenizer_name_or_path "
                "(config.filled_from_model(model) sets it from the model's name)."
            )
        warnings.warn(
            f"sample_vocab_size={config.sample_vocab_size} needs a tokenizer to find common words; none given, so "
            "SAMPLE_VOCAB samples the whole vocabulary (as PEFT). Pass tokenizer=... or set tokenizer_name_or_path.",
            stacklevel=4,
        )
        return None
    kwargs = {k: v for k, v in (config.tokenizer_kwargs or {}).items() if k != "trust_remote_code"}
    # A preset's hub id (what filled_from_model writes) loads through the preset, so it works offline too.
    name = next((key for key, p in PRESETS.items() if p.hub_id.lower() == str(name).lower()), name)
    return load_tokenizer(name, **kwargs)
