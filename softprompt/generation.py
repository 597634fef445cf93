"""Exact-match evaluation by generation: greedy-decode a few tokens, then match them to a label word.

The other way to read a prompt-tuned model's answer (Lester et al. 2021, §3 score the label words
instead, :func:`softprompt.evaluation.class_scores`): the model writes its answer and we check whether
it spells one of the task's label words (case-insensitive, surrounding whitespace and trailing
punctuation ignored; the output may continue after the label word only past a space or a newline).
``evaluate(..., method="generate")`` runs this per batch. This module never imports evaluation.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .enums import TaskType
from .eval_batches import encode_inputs, is_prompt_model, model_kind_of, task_id_inputs

__all__ = ["generate_predictions", "match_label", "new_tokens"]


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def match_label(generated: str, label_words: list[str]) -> int:
    """The class whose label word the generated text spells, or -1.

    Exact match after normalizing case and whitespace; the text may go on after the word only past
    whitespace (``"positive\\nReview"`` matches ``positive``, ``"positively"`` does not), and trailing
    ``. , ! ;`` after the word are ignored. Longer label words are tried first.
    """
    text = _normalize(generated.split("\n")[0])
    order = sorted(range(len(label_words)), key=lambda k: -len(label_words[k]))
    for k in order:
        word = _normalize(label_words[k])
        if text == word or text.startswith(word + " ") or re.fullmatch(re.escape(word) + r"[.,!;:]*", text):
            return k
    return -1


def new_tokens(model: nn.Module, task, tokenizer, max_new_tokens: int | None = None) -> tuple[int, int]:
    """``(max_new_tokens, positions)``: the tokens to generate (default: the longest label word, ``" " + word``,
    plus one token to see where it ends) and the positions they take in the input's context (a causal LM writes
    after the input; a seq2seq LM in its decoder: 0)."""
    if max_new_tokens is None:
        max_new_tokens = max(len(t) for t in task.label_token_ids(tokenizer)) + 1
    return max_new_tokens, max_new_tokens if model_kind_of(model) == TaskType.CAUSAL_LM else 0


@torch.no_grad()
def generate_predictions(model: nn.Module, tokenizer, task, examples: dict, *, task_id: int | None = None,
                         cache=None, max_new_tokens: int | None = None,
                         max_length: int | None = None) -> tuple[list[int], list[str]]:
    """Greedy-decode a few tokens per example; return (predicted class or -1, generated text).

    ``cache`` (a :class:`~softprompt.PromptPrefixCache` for ``model``) supplies the prompt's keys and values.
    """
    kind = model_kind_of(model)
    if kind == TaskType.SEQ_CLS:
        raise ValueError("method='generate' needs a language model; a classification head cannot generate.")
    max_new_tokens, room = new_tokens(model, task, tokenizer, max_new_tokens)  # room: context kept for the answer
    batch = encode_inputs(model, tokenizer, task, examples, new_tokens=room, max_length=max_length)
    ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, L)
    gen_kw = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    if cache is not None:
        new = cache.generate(ids, mask, **gen_kw)  # (B, new)
    elif is_prompt_model(model):
        new = model.generate(input_ids=ids, attention_mask=mask, **task_id_inputs(model, task_id, len(ids)), **gen_kw)
    else:
        out = model.generate(input_ids=ids, attention_mask=mask, **gen_kw)
        new = out if kind == TaskType.SEQ_2_SEQ_LM else out[:, ids.shape[1]:]  # (B, new)
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [match_label(t, task.label_words) for t in texts], texts
