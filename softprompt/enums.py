"""The choices a prompt config offers, as ``str`` Enums (PEFT's style): one leaf module every other imports.

``softprompt.config`` and ``softprompt.multitask`` re-export these; read the comments as the menu.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "TaskType", "PromptTuningInit", "TextInitFill", "RandomInitScale",
    "MultitaskPromptTuningInit", "TaskFactorInit", "SOURCE_INITS",
]


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


class MultitaskPromptTuningInit(str, Enum):
    """How P* (and, from a source, the task factors) start out. PEFT's five modes plus two of Lester's."""

    RANDOM = "RANDOM"  # P* random (vanilla prompt init)
    SAMPLE_VOCAB = "SAMPLE_VOCAB"  # P* = sampled vocabulary embeddings (not in PEFT's MPT)
    TEXT = "TEXT"  # P* = embeddings of prompt_tuning_init_text
    CLASS_LABELS = "CLASS_LABELS"  # P* = label word embeddings, Lester §3.2 (not in PEFT)
    AVERAGE_SOURCE_TASKS = "AVERAGE_SOURCE_TASKS"  # P*, mean_k u_k, mean_k v_k of a source file (Wang §3.2)
    EXACT_SOURCE_TASK = "EXACT_SOURCE_TASK"  # P*, u_k, v_k of source task k = prompt_tuning_init_task
    ONLY_SOURCE_SHARED = "ONLY_SOURCE_SHARED"  # P* of a source file; fresh task factors


# The MPT inits that read a trained source prompt (Wang et al. §3.2, target adaptation).
SOURCE_INITS = (
    MultitaskPromptTuningInit.AVERAGE_SOURCE_TASKS,
    MultitaskPromptTuningInit.EXACT_SOURCE_TASK,
    MultitaskPromptTuningInit.ONLY_SOURCE_SHARED,
)


class TaskFactorInit(str, Enum):
    """How the task factors u_k, v_k start when they are not read from a source."""

    IDENTITY = "IDENTITY"  # u_k v_kᵀ = 1 exactly: P_k = P* at step 0 (ours, the default)
    PEFT = "PEFT"  # u, v ~ N(0, 0.02²): P_k ≈ 4e-4 · P* at step 0 (PEFT, for parity)
