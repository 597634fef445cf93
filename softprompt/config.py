"""The prompt tuning configuration: `PromptTuningConfig` (Lester et al. 2021).

A soft prompt is ``num_virtual_tokens`` trainable vectors of size ``token_dim`` put in front of
the input embeddings (Lester et al. §2). Everything else in the config says how those vectors
start out (§3.2, "Prompt Initialization") and which model they belong to.

The field names and defaults are those of PEFT's ``PromptTuningConfig``, so an
``adapter_config.json`` written by either library can be read by the other. Ours adds:

* ``CLASS_LABELS`` init (Lester §3.2): one slot per label word, the rest sampled vocabulary;
* ``text_init_fill``: after the init text, *repeat* it (PEFT) or *fill with sampled vocabulary* (Lester);
* ``sample_vocab_size``: sample only from the most common word-like tokens (Lester: 5,000);
* ``random_init_scale``: ``RANDOM`` vectors scaled to the vocabulary's mean norm, so they start
  near the embedding manifold (PEFT draws N(0, 1), far off it for most models);
* ``seed``: the initialization is reproducible.

Two deliberate differences from PEFT:

* ``num_transformer_submodules`` defaults to 1 for every task type: Lester puts the prompt on the
  encoder only. PEFT defaults to 2 for ``SEQ_2_SEQ_LM`` (the same prompt again in the decoder).
* ``TEXT`` init does not demand ``tokenizer_name_or_path`` up front: a tokenizer object can be
  handed to ``PromptEmbedding``, and :meth:`PromptTuningConfig.filled_from_model` fills the name
  from the model. :meth:`PromptTuningConfig.peft_dict` always gives values PEFT accepts.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["TaskType", "PromptTuningInit", "TextInitFill", "RandomInitScale", "PromptTuningConfig"]


class _StrEnum(str, Enum):
    """A str Enum that prints as its value: ``task_type='CAUSAL_LM'`` in a config's repr, as in a JSON file."""

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)


class TaskType(_StrEnum):
    """What the base model does; decides how PromptModel builds inputs and labels."""

    CAUSAL_LM = "CAUSAL_LM"  # decoder-only: the prompt goes first, before any padding
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"  # encoder-decoder: the prompt goes in front of the encoder input
    SEQ_CLS = "SEQ_CLS"  # encoder with a classification head


class PromptTuningInit(_StrEnum):
    """How the prompt vectors start out (Lester et al. §3.2)."""

    RANDOM = "RANDOM"  # random vectors (scaled by `random_init_scale`)
    SAMPLE_VOCAB = "SAMPLE_VOCAB"  # embeddings of tokens sampled from the vocabulary
    TEXT = "TEXT"  # embeddings of the tokens of `prompt_tuning_init_text`
    CLASS_LABELS = "CLASS_LABELS"  # one slot per label word, the rest sampled vocabulary (not in PEFT)


class TextInitFill(_StrEnum):
    """What fills the slots after a TEXT init shorter than the prompt."""

    REPEAT = "REPEAT"  # repeat the text cyclically (PEFT)
    SAMPLE_VOCAB = "SAMPLE_VOCAB"  # sampled vocabulary (Lester's "remaining slots" rule)


class RandomInitScale(_StrEnum):
    """How large RANDOM init vectors are."""

    VOCAB_NORM = "vocab_norm"  # random direction, length = mean norm of the vocabulary's embeddings
    PEFT = "peft"  # nn.Embedding's N(0, 1) init, as PEFT does (norm about sqrt(d))


# Keys PEFT writes into adapter_config.json that hold no information for us.
_PEFT_BOOKKEEPING = ("peft_type", "auto_mapping", "peft_version", "modules_to_save")

# The keys of PEFT's PromptTuningConfig.to_dict() (peft 0.21), peft_version aside: PEFT fills that in.
_PEFT_KEYS = (
    "task_type", "peft_type", "auto_mapping", "base_model_name_or_path", "revision", "inference_mode",
    "num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers",
    "modules_to_save", "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs",
)


def _enum(cls: type[Enum], value, name: str):
    """Coerce a string (any case) or enum member into ``cls``; else a ValueError naming the field and the choices."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        for member in cls:
            if value.lower() in (member.value.lower(), member.name.lower()):
                return member
    choices = ", ".join(repr(m.value) for m in cls)
    raise ValueError(f"{name}={value!r} is not valid; use one of {choices}.")


def _positive_int(value, name: str, *, optional: bool = True):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive int.")
    return value


@dataclass
class PromptTuningConfig:
    """Configuration of a soft prompt (Lester et al. 2021); PEFT's field names and defaults, plus ours.

    Example::

        config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20,
                                    prompt_tuning_init="CLASS_LABELS",
                                    prompt_tuning_class_labels=["positive", "negative"])
        config = config.filled_from_model(model)  # token_dim, num_layers, ... from model.config
    """

    peft_type: ClassVar[str] = "PROMPT_TUNING"

    # --- PEFT's fields (PeftConfig, PromptLearningConfig, PromptTuningConfig) ---------------------
    task_type: TaskType | str | None = field(
        default=None, metadata={"help": "CAUSAL_LM, SEQ_2_SEQ_LM or SEQ_CLS; filled from the model when None."}
    )
    num_virtual_tokens: int = field(
        default=None, metadata={"help": "Prompt length T per transformer submodule (Lester et al. §3: 1 to 150)."}
    )
    token_dim: int | None = field(
        default=None, metadata={"help": "Size d of each prompt vector = the model's embedding size; filled from it."}
    )
    num_transformer_submodules: int | None = field(
        default=None, metadata={"help": "1 = prompt on the encoder only (Lester, our default); 2 = also the decoder."}
    )
    num_attention_heads: int | None = field(default=None, metadata={"help": "Filled from the model's config."})
    num_layers: int | None = field(default=None, metadata={"help": "Filled from the model's config."})
    prompt_tuning_init: PromptTuningInit | str = field(
        default=PromptTuningInit.RANDOM, metadata={"help": "RANDOM, SAMPLE_VOCAB, TEXT or CLASS_LABELS (§3.2)."}
    )
    prompt_tuning_init_text: str | None = field(default=None, metadata={"help": "The text TEXT init starts from."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer for TEXT / CLASS_LABELS; filled from the model's name if None."}
    )
    tokenizer_kwargs: dict | None = field(
        default=None, metadata={"help": "Extra from_pretrained kwargs for that tokenizer; never trust_remote_code."}
    )
    base_model_name_or_path: str | None = field(default=None, metadata={"help": "The base model; filled from it."})
    revision: str | None = field(default=None, metadata={"help": "The base model's revision, if any."})
    inference_mode: bool = field(default=False, metadata={"help": "True: frozen, and init is skipped (PEFT)."})

    # --- ours ------------------------------------------------------------------------------------------
    prompt_tuning_class_labels: list[str] | None = field(
        default=None, metadata={"help": "Label words for CLASS_LABELS init, one prompt slot each (Lester §3.2)."}
    )
    text_init_fill: TextInitFill | str = field(
        default=TextInitFill.REPEAT, metadata={"help": "After a short init text: REPEAT it (PEFT) or SAMPLE_VOCAB."}
    )
    sample_vocab_size: int | None = field(
        default=5000, metadata={"help": "Sample from the k most common word-like tokens (Lester: 5,000); None = all."}
    )
    random_init_scale: RandomInitScale | str = field(
        default=RandomInitScale.VOCAB_NORM, metadata={"help": "'vocab_norm' (mean vocab norm) or 'peft' (N(0, 1))."}
    )
    seed: int | None = field(default=None, metadata={"help": "Seed for the init; None uses torch's global RNG."})

    def __post_init__(self):
        if self.task_type is not None:
            self.task_type = _enum(TaskType, self.task_type, "task_type")
        if self.num_virtual_tokens is None:
            raise ValueError("num_virtual_tokens is required: pass a positive int, e.g. num_virtual_tokens=20.")
        if isinstance(self.num_virtual_tokens, bool) or not isinstance(self.num_virtual_tokens, int) \
                or self.num_virtual_tokens <= 0:
            raise ValueError(
                f"num_virtual_tokens={self.num_virtual_tokens!r} must be a positive int (the prompt length), "
                "e.g. num_virtual_tokens=20."
            )
        for name in ("token_dim", "num_attention_heads", "num_layers", "sample_vocab_size"):
            _positive_int(getattr(self, name), name)
        if self.num_transformer_submodules not in (None, 1, 2):
            raise ValueError(
                f"num_transformer_submodules={self.num_transformer_submodules!r} must be 1 (encoder only) or 2 "
                "(encoder and decoder, SEQ_2_SEQ_LM only)."
            )
        if self.num_transformer_submodules == 2 and self.task_type not in (None, TaskType.SEQ_2_SEQ_LM):
            raise ValueError(
                f"num_transformer_submodules=2 needs task_type='SEQ_2_SEQ_LM', not {self.task_type.value!r}: "
                "a decoder-only or encoder model has one submodule; use num_transformer_submodules=1."
            )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed={self.seed!r} must be an int or None.")
        if not isinstance(self.inference_mode, bool):
            raise ValueError(f"inference_mode={self.inference_mode!r} must be True or False.")

        self.prompt_tuning_init = _enum(PromptTuningInit, self.prompt_tuning_init, "prompt_tuning_init")
        self.text_init_fill = _enum(TextInitFill, self.text_init_fill, "text_init_fill")
        self.random_init_scale = _enum(RandomInitScale, self.random_init_scale, "random_init_scale")
        self._check_init()

    def _check_init(self):
        init = self.prompt_tuning_init
        if init == PromptTuningInit.TEXT:
            text = self.prompt_tuning_init_text
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    "prompt_tuning_init='TEXT' needs prompt_tuning_init_text, a non-empty string, e.g. "
                    "prompt_tuning_init_text='Classify the sentiment of this review:'."
                )
        labels = self.prompt_tuning_class_labels
        if init == PromptTuningInit.CLASS_LABELS:
            if isinstance(labels, str) or not labels:
                raise ValueError(
                    "prompt_tuning_init='CLASS_LABELS' needs prompt_tuning_class_labels, a non-empty list of label "
                    "words, e.g. prompt_tuning_class_labels=['positive', 'negative']."
                )
            bad = [w for w in labels if not isinstance(w, str) or not w.strip()]
            if bad:
                raise ValueError(
                    f"prompt_tuning_class_labels holds empty or non-string label words {bad!r}; remove them."
                )
            self.prompt_tuning_class_labels = list(labels)
            if len(labels) > self.num_virtual_tokens:
                raise ValueError(
                    f"num_virtual_tokens={self.num_virtual_tokens} is smaller than the {len(labels)} class labels: "
                    f"CLASS_LABELS init needs one slot per label; raise num_virtual_tokens to at least {len(labels)}."
                )
        elif labels is not None:
            raise ValueError(
                f"prompt_tuning_class_labels is only used with prompt_tuning_init='CLASS_LABELS', not {init.value!r}; "
                "set prompt_tuning_init='CLASS_LABELS' or drop the labels."
            )
        if self.tokenizer_kwargs is not None:
            if not isinstance(self.tokenizer_kwargs, dict):
                raise ValueError(f"tokenizer_kwargs={self.tokenizer_kwargs!r} must be a dict or None.")
            if init not in (PromptTuningInit.TEXT, PromptTuningInit.CLASS_LABELS):
                raise ValueError(
                    f"tokenizer_kwargs is only used with prompt_tuning_init='TEXT' or 'CLASS_LABELS', not "
                    f"{init.value!r}; drop tokenizer_kwargs."
                )
            if "trust_remote_code" in self.tokenizer_kwargs:
                raise ValueError(
                    "tokenizer_kwargs may not hold trust_remote_code: building a prompt must never run code "
                    "downloaded with a tokenizer. Remove it."
                )

    # --- derived values --------------------------------------------------------------------------------
    @property
    def total_virtual_tokens(self) -> int:
        """Rows of the prompt embedding: ``num_virtual_tokens`` per transformer submodule."""
        return self.num_virtual_tokens * (self.num_transformer_submodules or 1)

    @property
    def needs_tokenizer(self) -> bool:
        """True when the init reads words (TEXT, CLASS_LABELS) and so needs a tokenizer."""
        return self.prompt_tuning_init in (PromptTuningInit.TEXT, PromptTuningInit.CLASS_LABELS)

    @property
    def uses_tokenizer(self) -> bool:
        """True when the init reads a tokenizer: TEXT and CLASS_LABELS, and sampling from common words."""
        return self.needs_tokenizer or (
            self.prompt_tuning_init == PromptTuningInit.SAMPLE_VOCAB and self.sample_vocab_size is not None
        )

    def replace(self, **changes) -> PromptTuningConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def filled_from_model(self, model) -> PromptTuningConfig:
        """A copy with the fields a model decides filled in from it; given values are checked against it.

        Fills ``task_type`` (from :func:`softprompt.model_kind.model_task_type`: ``*ForSequenceClassification``
        -> SEQ_CLS, encoder-decoder -> SEQ_2_SEQ_LM, a decoder with an LM head -> CAUSAL_LM), ``token_dim``
        (the input embedding size), ``num_layers``, ``num_attention_heads``,
        ``num_transformer_submodules`` (1: Lester's encoder-only prompt; PEFT uses 2 for seq2seq),
        ``base_model_name_or_path``, and ``tokenizer_name_or_path`` (the model's name) when the init reads
        a tokenizer (see :attr:`uses_tokenizer`).

        Raises:
            ValueError: a given ``token_dim`` differs from the model's embedding size, or ``task_type``
                does not fit the model (e.g. CAUSAL_LM on an encoder-decoder or a classifier; see
                :func:`softprompt.model_kind.check_task_type`).
        """
        mc = model.config
        text_cfg = getattr(mc, "text_config", None)  # multimodal models: the language part
        cfg = text_cfg if text_cfg is not None else mc
        changes: dict[str, Any] = {}

        from .model_kind import check_task_type, model_task_type

        task = self.task_type
        if task is None:
            task = model_task_type(model)
            if task is None:
                raise ValueError(
                    f"Cannot tell which task_type {type(model).__name__} serves: it has no language-model head and "
                    "no classification head (a bare encoder, a masked LM?). Load it with AutoModelForCausalLM, "
                    "AutoModelForSeq2SeqLM or AutoModelForSequenceClassification, or set task_type."
                )
            changes["task_type"] = task
        check_task_type(model, task)  # e.g. CAUSAL_LM on an encoder-decoder or on a BERT classifier

        d_model = _first_attr(cfg, ("hidden_size", "n_embd", "d_model"))
        emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        d = getattr(emb, "embedding_dim", None) or d_model  # the prompt lives where the input embeddings live
        if d is None:
            raise ValueError(f"Cannot tell the embedding size of {type(model).__name__}; set token_dim yourself.")
        if self.token_dim is None:
            changes["token_dim"] = d
        elif self.token_dim != d:
            raise ValueError(
                f"token_dim={self.token_dim} does not match the model's embedding size {d}; "
                f"set token_dim={d} or leave it None to fill it from the model."
            )
        if self.num_layers is None:
            changes["num_layers"] = _first_attr(cfg, ("num_hidden_layers", "num_layers", "n_layer"))
        if self.num_attention_heads is None:
            changes["num_attention_heads"] = _first_attr(
                cfg, ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")
            )
        if self.num_transformer_submodules is None:
            changes["num_transformer_submodules"] = 1
        name = _portable_name(getattr(mc, "name_or_path", None) or getattr(mc, "_name_or_path", None) or None)
        if self.base_model_name_or_path is None and name:
            changes["base_model_name_or_path"] = name
        if self.uses_tokenizer and self.tokenizer_name_or_path is None:
            base = changes.get("base_model_name_or_path", self.base_model_name_or_path)
            if base:
                changes["tokenizer_name_or_path"] = base
        return dataclasses.replace(self, **changes)

    # --- (de)serialization ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """All fields, ours included, as JSON-able values (enums as strings), plus ``peft_type``."""
        out = {"peft_type": self.peft_type}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, (list, dict)):
                value = type(value)(value)  # a copy: editing the dict must not edit the config
            out[f.name] = value
        return out

    def peft_dict(self) -> dict:
        """Only PEFT's keys, with values PEFT's ``PromptTuningConfig`` accepts.

        Init fields matter only before training, so where ours have no PEFT equivalent the file says
        ``RANDOM``: CLASS_LABELS init, and TEXT init without a tokenizer name. ``tokenizer_kwargs``
        is kept for TEXT only (PEFT rejects it otherwise). ``num_transformer_submodules`` is written
        out (1 when unset) so that PEFT does not pick its seq2seq default of 2.
        """
        d = self.to_dict()
        out = {k: d.get(k) for k in _PEFT_KEYS}
        init = self.prompt_tuning_init
        if init == PromptTuningInit.CLASS_LABELS or (
            init == PromptTuningInit.TEXT and not self.tokenizer_name_or_path
        ):
            out["prompt_tuning_init"] = PromptTuningInit.RANDOM.value
        if out["prompt_tuning_init"] != PromptTuningInit.TEXT.value:
            out["tokenizer_kwargs"] = None
        if out["num_transformer_submodules"] is None:
            out["num_transformer_submodules"] = 1
        return out

    @classmethod
    def from_dict(cls, d: dict) -> PromptTuningConfig:
        """Build from :meth:`to_dict` output or a PEFT ``adapter_config.json``.

        PEFT's bookkeeping keys (``peft_type``, ``auto_mapping``, ``peft_version``, ``modules_to_save``)
        are dropped; ``trust_remote_code`` is removed from ``tokenizer_kwargs`` with a warning; unknown
        keys (a newer file) are dropped with a warning, as PEFT does.
        """
        d = dict(d)
        peft_type = d.get("peft_type")
        if peft_type is not None and str(getattr(peft_type, "value", peft_type)) != cls.peft_type:
            raise ValueError(
                f"This config has peft_type={peft_type!r}, not {cls.peft_type!r}: load it with the config class "
                f"for that method (e.g. MultitaskPromptTuningConfig for 'MULTITASK_PROMPT_TUNING')."
            )
        for key in _PEFT_BOOKKEEPING:
            d.pop(key, None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            warnings.warn(f"{cls.__name__}.from_dict: ignoring unknown keys {unknown}.", stacklevel=2)
        kwargs = {k: v for k, v in d.items() if k in names}
        tk = kwargs.get("tokenizer_kwargs")
        if isinstance(tk, dict) and "trust_remote_code" in tk:
            warnings.warn("from_dict: removed trust_remote_code from tokenizer_kwargs (never passed on).", stacklevel=2)
            kwargs["tokenizer_kwargs"] = {k: v for k, v in tk.items() if k != "trust_remote_code"} or None
        init = str(kwargs.get("prompt_tuning_init", "RANDOM")).upper()
        if kwargs.get("tokenizer_kwargs") and init not in ("TEXT", "CLASS_LABELS"):
            kwargs["tokenizer_kwargs"] = None
        return cls(**kwargs)


def _portable_name(name: str | None) -> str | None:
    """A preset loaded through softprompt's offline cache is named by its hub id, not by the cache path.

    ``load_model("smollm2-135m-instruct")`` offline loads from ``~/.cache/softprompt/smollm2-...``;
    a saved config should say ``HuggingFaceTB/SmolLM2-135M-Instruct``, which means something elsewhere.
    """
    if not name:
        return name
    from .models import PRESETS, cache_dir

    path = Path(name)
    if path.parent.resolve() == cache_dir().resolve():
        for key, preset in PRESETS.items():
            if path.name.lower().startswith(key + "-"):
                return preset.hub_id
    return name


def _first_attr(config, names):
    """The first of ``names`` that ``config`` has (None if none): configs spell the same thing differently."""
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None
