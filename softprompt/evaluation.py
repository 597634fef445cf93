"""Evaluating a prompt by rank classification: score each label word, pick the highest (GPT-3 and T0 style).

This is the series' choice; Lester et al. 2021 (§3) generate the label text, T5-style (``method="generate"``).

We use the cheap form of it. A task's causal batch ends every left-padded row right after the template
(``"Review: ... Sentiment:"``), where the label word would start. One forward pass with ``logits_to_keep=1``
computes the LM head there only (``(B, 1, V)``, not ``(B, L, V)``); class ``k`` scores the log-probability of
the first token of ``" " + label_words[k]`` (the Task checks those differ). Seq2seq LMs score the first
decoder step the same way; classification heads (SEQ_CLS) use their logits. The fast path, the default: for a
causal LM a :class:`~softprompt.PromptPrefixCache` runs the prompt once per call, not once per batch (same
scores). Beside this module: :mod:`softprompt.generation` (``method="generate"``), :mod:`softprompt.eval_batches`,
:func:`softprompt.serving.evaluate_ensemble`. A plain Hugging Face model gives the zero-shot baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import TaskType
from .context import check_num_labels, warn_if_cut
from .eval_batches import (encode_inputs, eval_mode, is_prompt_model, iter_batches, length_order, model_kind_of,
                           ordered_batches, prompt_length, split_examples, task_id_inputs, unsort)
from .generation import generate_predictions, match_label, new_tokens
from .label_words import first_token_ids
from .precision import autocast
from .prefix_cache import PromptPrefixCache
from .task_ids import task_id_for

__all__ = ["evaluate", "class_scores", "first_token_ids", "summarize", "iter_batches", "length_order", "match_label"]

METHODS = ("rank", "generate")


@torch.no_grad()
def class_scores(model: nn.Module, tokenizer, task, examples: dict, *, task_id: int | None = None,
                 cache: PromptPrefixCache | None = None, max_length: int | None = None) -> torch.Tensor:
    """Log-probabilities ``(B, K)`` of each class for a batch of ``examples`` (rank classification, §3).

    Causal LM: the log-softmax over the vocabulary at the last position, read at each label's first
    token; ``cache`` (for ``model``) supplies the prompt's keys and values. Seq2seq: the same at the
    first decoder step. SEQ_CLS: the head's log-softmax. Rows fit ``max_length`` positions (None: the context).
    """
    ids, mask = encode_inputs(model, tokenizer, task, examples, max_length=max_length).values()  # (B, L), (B, L)
    kind = model_kind_of(model)
    extra = {} if cache is not None else task_id_inputs(model, task_id, len(ids))  # {"task_ids": (B,)} for MPT
    if kind == TaskType.SEQ_CLS:
        return model(input_ids=ids, attention_mask=mask, **extra).logits.float().log_softmax(-1)  # (B, K)
    if kind == TaskType.CAUSAL_LM and cache is not None:  # the fast path: the prompt's keys/values reused
        last = cache.logits(ids, mask, logits_to_keep=1)[:, -1]  # (B, V)
    elif kind == TaskType.CAUSAL_LM:  # the plain path: [prompt][pads][tokens] through the model
        last = model(input_ids=ids, attention_mask=mask, logits_to_keep=1, **extra).logits[:, -1]  # (B, V)
    else:  # SEQ_2_SEQ_LM: one decoder step from the start token
        start = model.config.decoder_start_token_id
        if start is None:
            raise ValueError("the model config has no decoder_start_token_id; set it to score the first decoder step.")
        dec = torch.full((len(ids), 1), start, dtype=torch.long, device=ids.device)  # (B, 1)
        last = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, **extra).logits[:, -1]  # (B, V)
    firsts = torch.tensor(first_token_ids(task, tokenizer), device=last.device)  # (K,)
    return last.float().log_softmax(-1)[:, firsts]  # (B, K)


def summarize(predictions: list[int], labels: list[int], label_words: list[str]) -> dict:
    """Accuracy, per-class counts and the confusion matrix (rows: true class, columns: predicted).

    A prediction of -1 (generation matched no label word) counts as wrong and is tallied in ``"unmatched"``."""
    confusion = [[0] * len(label_words) for _ in label_words]  # (K, K)
    for p, y in zip(predictions, labels):
        if p >= 0:
            confusion[y][p] += 1
    n, correct = len(labels), sum(int(p == y) for p, y in zip(predictions, labels))
    per_class = {}
    for k, word in enumerate(label_words):
        n_k = sum(1 for y in labels if y == k)
        per_class[word] = {"n": n_k, "correct": confusion[k][k], "predicted": sum(row[k] for row in confusion),
                           "accuracy": confusion[k][k] / n_k if n_k else float("nan")}
    return {"accuracy": correct / n if n else float("nan"), "n": n, "correct": correct, "per_class": per_class,
            "confusion": confusion, "unmatched": sum(1 for p in predictions if p < 0), "label_words": list(label_words)}


def evaluate(prompt_model: nn.Module, tokenizer, task, split: str = "test", *, method: str = "rank",
             batch_size: int = 32, max_examples: int | None = None, max_length: int | None = None,
             task_id: int | None = None,
             use_cache: bool = True, max_new_tokens: int | None = None, return_predictions: bool = False,
             sort_by_length: bool = True, progress: bool = False) -> dict:
    """Accuracy of ``prompt_model`` (a PromptModel, or a plain Hugging Face model: zero-shot) on ``task.splits[split]``.

    ``method``: ``"rank"`` (rank classification: the highest-scoring label word) or ``"generate"`` (greedy decoding,
    exact match; ``max_new_tokens`` defaults to the longest label word + 1). ``batch_size`` rows per forward pass, the
    first ``max_examples`` examples, each cut to ``max_length`` positions (prompt included; None: the context);
    ``task_id`` picks an MPT prompt's task (Wang et al. 2023, §3); ``use_cache`` reuses the prompt's keys/values
    across batches (causal LMs; same results, faster); ``sort_by_length`` batches examples of similar length
    (results in the split's order, unchanged); ``progress`` shows a ``tqdm`` bar. A bfloat16/float16 model runs
    under autocast, its scores read in float32 (:mod:`softprompt.precision`).
    Returns ``accuracy``, ``n``, ``correct``, ``per_class`` (word -> n, correct, predicted, accuracy), ``confusion``
    (K x K, rows true), ``unmatched``, ``label_words``, ``method``, ``split``; ``return_predictions`` adds
    ``"predictions"`` (class ids, -1 = no label word matched), ``"labels"``, ``"scores"`` ((N, K) log-probs, rank)
    or ``"generations"`` (texts).
    """
    if not isinstance(prompt_model, nn.Module):
        raise ValueError(f"evaluate takes one model, got a {type(prompt_model).__name__}; to evaluate an ensemble "
                         "of prompts use softprompt.evaluate_ensemble(bank, task, names).")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; use one of {METHODS}.")
    data = split_examples(task, split, max_examples)
    if model_kind_of(prompt_model) == TaskType.SEQ_CLS:
        check_num_labels(prompt_model, task)
    if is_prompt_model(prompt_model):
        task_id = task_id_for(prompt_model, task_id, what="this model's prompt")  # early: missing, stray or bad
    elif task_id is not None:
        raise ValueError("task_id only applies to a multitask PromptModel; this is a plain model.")
    room = new_tokens(prompt_model, task, tokenizer, max_new_tokens)[1] if method == "generate" else 0
    warn_if_cut(prompt_model, tokenizer, [(task, data)], max_length=max_length, new_tokens=room,  # once, if the
                num_virtual_tokens=prompt_length(prompt_model), what=f"{split!r} examples", stacklevel=2)  # cut is ours
    fast = use_cache and is_prompt_model(prompt_model) and model_kind_of(prompt_model) == TaskType.CAUSAL_LM
    cache = PromptPrefixCache(prompt_model, task_id=task_id) if fast else None
    batches, order = ordered_batches(task, tokenizer, data, batch_size, sort_by_length=sort_by_length,
                                     progress=f"evaluate {task.name}/{split}" if progress else None)
    predictions, scores, texts = [], [], []
    with eval_mode(prompt_model), autocast(prompt_model):  # dropout off, training flags restored; half: autocast
        for examples in batches:
            if method == "rank":
                s = class_scores(prompt_model, tokenizer, task, examples, task_id=task_id, cache=cache,
                                 max_length=max_length)  # (B, K)
                scores.append(s.cpu())
                predictions += s.argmax(-1).tolist()
            else:
                p, t = generate_predictions(prompt_model, tokenizer, task, examples, task_id=task_id, cache=cache,
                                            max_new_tokens=max_new_tokens, max_length=max_length)
                predictions += p
                texts += t
    predictions, labels = unsort(predictions, order), [int(y) for y in data["label"]]
    result = dict(summarize(predictions, labels, task.label_words), method=method, split=split)
    if return_predictions:
        result.update(predictions=predictions, labels=labels)
        if method == "rank":
            result["scores"] = unsort(torch.cat(scores), order)  # (N, K)
        else:
            result["generations"] = unsort(texts, order)
    return result
