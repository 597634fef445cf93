"""What kind of model is this? One answer for the whole library: :func:`model_task_type`.

A soft prompt works the same on every model, but what the model's output *means* depends on its head:
next-token logits (a decoder with an LM head: ``CAUSAL_LM``), decoder logits of an encoder-decoder
(``SEQ_2_SEQ_LM``), or class logits (``SEQ_CLS``). A prompt set up for the wrong kind runs without an
error and computes nonsense (``CAUSAL_LM`` on a BERT classifier gives logits of shape ``(B, 0)``), so
:func:`check_task_type` refuses the mismatch when the prompt model is built.

The answer comes from the model's class, checked against Hugging Face's auto-class tables
(``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` and friends), then from its name (``*ForCausalLM``,
``*LMHeadModel``, ``*ForSequenceClassification``) and config (``is_encoder_decoder``), and last, for
custom classes none of those name, from whether it has an LM head (``get_output_embeddings()``).
"""

from __future__ import annotations

from functools import lru_cache

from torch import nn
from transformers.models.auto import modeling_auto

from .enums import TaskType

__all__ = ["model_task_type", "check_task_type", "is_prompt_model", "find_classifier_head", "CLASSIFIER_HEAD_NAMES"]

# PEFT's PeftModelForSequenceClassification makes these top-level children trainable and saves them.
CLASSIFIER_HEAD_NAMES = ("classifier", "score")

# Class-name endings, for models the auto tables do not list (custom or remote-code classes).
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_SEQ_CLS_SUFFIXES = ("ForSequenceClassification",)
# Heads whose outputs are not next-token logits, though some of them have an LM-sized output layer.
_OTHER_HEAD_SUFFIXES = ("ForMaskedLM", "ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice",
                        "ForPreTraining", "ForNextSentencePrediction")


@lru_cache(maxsize=None)
def _auto_class_names(table: str) -> frozenset[str]:
    """The class names in one of transformers' ``*_MAPPING_NAMES`` tables (empty if it has no such table)."""
    names: set[str] = set()
    for value in getattr(modeling_auto, table, {}).values():
        names.update([value] if isinstance(value, str) else value)
    return frozenset(names)


def _has_lm_head(model: nn.Module) -> bool:
    get = getattr(model, "get_output_embeddings", None)
    try:
        return get is not None and get() is not None
    except (NotImplementedError, AttributeError):
        return False


def is_prompt_model(model: nn.Module) -> bool:
    """True for a PromptModel (a prompt and a base model); False for a plain Hugging Face model."""
    return hasattr(model, "get_prompt") and hasattr(model, "base_model")


def model_task_type(model: nn.Module) -> TaskType | None:
    """The task type ``model`` serves: ``CAUSAL_LM``, ``SEQ_2_SEQ_LM``, ``SEQ_CLS``, or None (none of those).

    A :class:`~softprompt.PromptModel` (anything with a ``task_type``) answers with its own. None means
    the model has no head a prompt can be trained through: a bare encoder or decoder (``BertModel``,
    ``T5Model``), a masked LM, a token classifier, ...
    """
    task_type = getattr(model, "task_type", None)
    if task_type is not None:
        try:
            return TaskType(str(getattr(task_type, "value", task_type)).upper())
        except ValueError:
            pass
    name = type(model).__name__
    if name in _auto_class_names("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES") or name.endswith(
        _SEQ_CLS_SUFFIXES
    ):
        return TaskType.SEQ_CLS
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return TaskType.SEQ_2_SEQ_LM if _has_lm_head(model) else None
    if name in _auto_class_names("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES") or name.endswith(_CAUSAL_SUFFIXES):
        return TaskType.CAUSAL_LM
    if name in _auto_class_names("MODEL_FOR_MASKED_LM_MAPPING_NAMES") or name.endswith(_OTHER_HEAD_SUFFIXES):
        return None
    # A class the tables do not name (custom, multimodal, remote code): a decoder if it has an LM head.
    return TaskType.CAUSAL_LM if _has_lm_head(model) else None


_NEEDS = {
    TaskType.CAUSAL_LM: "a decoder with a language-model head (AutoModelForCausalLM)",
    TaskType.SEQ_2_SEQ_LM: "an encoder-decoder model (AutoModelForSeq2SeqLM)",
    TaskType.SEQ_CLS: "a classification head (AutoModelForSequenceClassification)",
}


def check_task_type(model: nn.Module, task_type: TaskType | str) -> TaskType:
    """``task_type`` as a :class:`TaskType`, after checking that ``model`` can serve it; else a ``ValueError``.

    ``CAUSAL_LM`` needs a decoder with an LM head (not an encoder-decoder, not a classifier, not an
    encoder or masked LM); ``SEQ_2_SEQ_LM`` needs ``config.is_encoder_decoder``; ``SEQ_CLS`` needs a
    classification head (a top-level child named like ``classifier`` / ``score``, as PEFT finds it).
    """
    task = TaskType(str(getattr(task_type, "value", task_type)).upper())
    name = type(model).__name__
    kind = model_task_type(model)
    is_enc_dec = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    fix = f"use task_type='{kind.value}'" if kind is not None else f"load the model as {_NEEDS[task]}"
    if task == TaskType.SEQ_2_SEQ_LM and not is_enc_dec:
        raise ValueError(f"task_type='SEQ_2_SEQ_LM' but {name} is not an encoder-decoder model; {fix}.")
    if task == TaskType.CAUSAL_LM:
        if is_enc_dec:
            raise ValueError(
                f"task_type='CAUSAL_LM' but {name} is an encoder-decoder model; use task_type='SEQ_2_SEQ_LM'."
            )
        if kind != TaskType.CAUSAL_LM:
            what = "a sequence classifier" if kind == TaskType.SEQ_CLS else "not a decoder with a language-model head"
            raise ValueError(
                f"task_type='CAUSAL_LM' but {name} is {what}: its outputs are not next-token logits (the prompt "
                f"model would return logits of shape (B, 0) or worse). CAUSAL_LM needs {_NEEDS[task]}; {fix}."
            )
    if task == TaskType.SEQ_CLS:
        find_classifier_head(model)  # raises with its own message
    return task


def find_classifier_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The classification head of a sequence-classification model, found as PEFT finds it:
    the first top-level child whose name contains ``"classifier"`` or ``"score"``."""
    for name, module in model.named_children():
        if any(head in name for head in CLASSIFIER_HEAD_NAMES):
            return name, module
    raise ValueError(
        f"{type(model).__name__} has no child named like {CLASSIFIER_HEAD_NAMES}; task_type='SEQ_CLS' needs a "
        "sequence-classification model (e.g. AutoModelForSequenceClassification)."
    )
