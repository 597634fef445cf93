"""The prompt tuning configuration: `PromptTuningConfig` (Lester et al. 2021).

A soft prompt is ``num_virtual_tokens`` trainable vectors of size ``token_dim`` put in front of
the input embeddings (Lester et al. §2). Everything else in the config says how those vectors
start out (§3.2, "Prompt Initialization") and which model they belong to.

The field names and defaults are PEFT's (``adapter_config.json`` files move both ways); ours add
CLASS_LABELS init (Lester §3.2), ``text_init_fill``, ``sample_vocab_size`` (Lester: the 5,000 most
common words), ``random_init_scale`` (RANDOM vectors as long as real embeddings) and ``seed``.
Two deliberate differences from PEFT: ``num_transformer_submodules`` defaults to 1 for every task
(Lester prompts the encoder only; PEFT uses 2 for ``SEQ_2_SEQ_LM``), and TEXT init does not demand
``tokenizer_name_or_path`` (pass a tokenizer, or :meth:`~PromptTuningConfig.filled_from_model`).

Beside this file: the choices (:mod:`softprompt.enums`), the checks ``__post_init__`` runs
(:mod:`softprompt.config_checks`), the dict forms (:mod:`softprompt.config_dicts`) and the fields
read from a model (:mod:`softprompt.config_from_model`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from .config_checks import check_prompt_config
from .config_dicts import config_from_dict, config_peft_dict, config_to_dict
from .config_from_model import filled_from_model
from .enums import PromptTuningInit, RandomInitScale, TaskType, TextInitFill

__all__ = ["TaskType", "PromptTuningInit", "TextInitFill", "RandomInitScale", "PromptTuningConfig"]


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
        check_prompt_config(self)  # a ValueError naming the field and the fix; enum strings become members

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
        """A copy with ``task_type``, ``token_dim``, ``num_layers``, ... filled from ``model`` (given ones checked).

        See :func:`softprompt.config_from_model.filled_from_model`.
        """
        return filled_from_model(self, model)

    # --- (de)serialization: see softprompt.config_dicts ------------------------------------------------
    def to_dict(self) -> dict:
        """All fields, ours included, as JSON-able values (enums as strings), plus ``peft_type``."""
        return config_to_dict(self)

    def peft_dict(self) -> dict:
        """Only PEFT's keys, with values PEFT's ``PromptTuningConfig`` accepts (RANDOM where ours has no match)."""
        return config_peft_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PromptTuningConfig:
        """Build from :meth:`to_dict` output or a PEFT ``adapter_config.json`` (unknown keys dropped, warned)."""
        return config_from_dict(cls, d)
