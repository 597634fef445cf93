"""Label words as token ids: the one rule every part of the library uses.

A task's label words are written without a leading space (``"positive"``); after a template that ends
in ``"Sentiment:"`` the model reads the label as the continuation ``" " + word`` (ARCHITECTURE.md).
Training targets, rank classification (score each label word's tokens and pick the highest; Lester et al.
2021 generate the label instead), neighbour tables and class-label init (Lester et al. 2021, §3.2) all encode a
label word with :func:`label_word_ids`:

=====================================================  =========================================================
caller                                                 what it encodes
=====================================================  =========================================================
``Task.label_token_ids`` (targets, rank scores)        ``label_word_ids(tok, word)``: ``" " + word``
``first_token_ids`` (rank classification, ensembles)   the first id of each of the Task's words
``neighbors.label_token_ids`` (tables, figures)        the first id of ``label_word_ids(tok, word)``
``initialization.label_word_token_ids`` (class init)   ``label_word_ids(tok, word.strip(), leading_space=``
                                                       ``uses_leading_space(tok))``: the space only where the
                                                       tokenizer marks it (GPT-2 style BPE)
=====================================================  =========================================================

This module is a leaf: it imports nothing from the library. The checks (unknown token, distinct first
tokens) stay with the callers, whose messages name the task or the config field to fix.
"""

from __future__ import annotations

__all__ = ["label_word_ids", "first_token_ids"]


def label_word_ids(tokenizer, word: str, *, leading_space: bool = True) -> list[int]:
    """Token ids of label word ``word`` as a continuation: ``" " + word``, no special tokens.

    ``leading_space=False`` encodes ``word`` alone (class-label init on tokenizers without a
    leading-space convention, where both spellings give the same pieces anyway).
    """
    text = " " + word if leading_space else word
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def first_token_ids(task, tokenizer) -> list[int]:
    """The first token of each label word's continuation ``" " + word``: what rank classification scores.

    ``task`` is a :class:`~softprompt.Task`; its ``label_token_ids`` checks those first tokens differ.
    """
    firsts = [ids[0] for ids in task.label_token_ids(tokenizer)]
    if len(set(firsts)) != len(firsts):  # the Task should have raised already; keep the invariant local
        raise ValueError(f"labels {task.label_words} share a first token; rank classification needs them distinct.")
    return firsts
