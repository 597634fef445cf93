"""Evaluating a prompt: rank classification in one forward pass, or exact-match generation.

**Rank classification** (Lester et al. 2021, §3: "we score each label's text and pick the highest"; we
use the cheap form of it). A task's causal batch ends every left-padded row right after the
template (``"Review: ... Sentiment:"``), so the next token is where the label word would start.
One forward pass with ``logits_to_keep=1`` computes the LM head at that last position only (a
``(B, 1, V)`` tensor instead of ``(B, L, V)``), and the score of class ``k`` is the log-probability
of the first token of ``" " + label_words[k]``. The Task checks that those first tokens differ.
For a causal LM the prompt's keys and values come from a :class:`~softprompt.PromptPrefixCache`
(``use_cache=True``): the prompt runs through the model once per call, not once per batch.
Seq2seq LMs score the first decoder step the same way; classification heads (SEQ_CLS) use their logits.

**Generation** (``method="generate"``): greedy decoding of a few tokens, then exact match against
the label words (case-insensitive, surrounding whitespace and trailing punctuation ignored; the
output may continue after the label word only past a space or a newline).

``evaluate`` also accepts a plain Hugging Face model: that is the zero-shot baseline, no prompt.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch
from torch import nn

from .context import batch_max_length, check_num_labels, check_token_ids
from .task_ids import task_id_for

__all__ = ["evaluate", "class_scores", "iter_batches", "summarize", "match_label", "model_kind"]

METHODS = ("rank", "generate")


# -- what kind of model ------------------------------------------------------------------------------

def model_kind(model: nn.Module) -> str:
    """``"CAUSAL_LM"``, ``"SEQ_2_SEQ_LM"`` or ``"SEQ_CLS"``, for a PromptModel or a plain HF model."""
    task_type = getattr(model, "task_type", None)
    if task_type is not None:
        return str(getattr(task_type, "value", task_type)).upper()
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return "SEQ_2_SEQ_LM"
    if type(model).__name__.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    return "CAUSAL_LM"


def _is_prompt_model(model: nn.Module) -> bool:
    return hasattr(model, "get_prompt") and hasattr(model, "base_model")


def _num_virtual_tokens(model: nn.Module) -> int:
    return int(getattr(model, "num_virtual_tokens", 0) or 0) if _is_prompt_model(model) else 0


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _task_ids(model: nn.Module, task_id: int | None, batch_size: int) -> dict:
    """``{"task_ids": (B,)}`` for a multitask prompt, ``{}`` otherwise; a clear error when it does not fit."""
    task_id = task_id_for(model, task_id, what="this model's prompt")
    if task_id is None:
        return {}
    return {"task_ids": torch.full((batch_size,), task_id, dtype=torch.long, device=_device(model))}


# -- data ---------------------------------------------------------------------------------------------

def _split(task, split: str, max_examples: int | None):
    if split not in task.splits:
        raise ValueError(f"task {task.name!r} has no split {split!r}; its splits are {sorted(task.splits)}.")
    data = task.splits[split]
    if len(data) == 0:
        raise ValueError(f"split {split!r} of task {task.name!r} is empty; nothing to evaluate.")
    if max_examples is not None:
        if max_examples < 1:
            raise ValueError(f"max_examples must be >= 1 or None; got {max_examples}.")
        data = data.select(range(min(max_examples, len(data))))
    return data


def length_order(task, tokenizer, data) -> list[int]:
    """Indices of ``data`` from the longest formatted example to the shortest (in tokens; stable)."""
    lengths = [len(ids) for ids in tokenizer([task.format(ex) for ex in data])["input_ids"]]
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def _unsort(values, order: list[int]):
    """Undo ``values = [x[i] for i in order]``: a list, or a tensor along dim 0."""
    if isinstance(values, torch.Tensor):
        out = torch.empty_like(values)
        out[torch.tensor(order, dtype=torch.long)] = values
        return out
    if not values:
        return values
    out = [None] * len(order)
    for v, i in zip(values, order):
        out[i] = v
    return out


def iter_batches(data, batch_size: int) -> Iterator[dict]:
    """Consecutive slices of a ``datasets.Dataset`` (dicts of lists), ``batch_size`` rows each."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    for start in range(0, len(data), batch_size):
        yield data[start:start + batch_size]


def _encode(model: nn.Module, tokenizer, task, examples: dict, new_tokens: int = 0) -> dict:
    """The model inputs for ``examples``, without targets, on the model's device.

    The text is truncated so that the prompt, the text and ``new_tokens`` generated tokens fit the context.
    """
    kind = model_kind(model)
    T = _num_virtual_tokens(model)
    limit = batch_max_length(model, tokenizer, None, T, new_tokens)  # None: no limit known
    if kind == "CAUSAL_LM":
        if tokenizer.padding_side != "left":
            raise ValueError(
                "causal LMs need a LEFT-padding tokenizer for rank classification and generation; "
                "set tokenizer.padding_side = 'left' (softprompt.load_model does this)."
            )
        batch = task.causal_batch(examples, tokenizer, with_targets=False, max_length=limit, num_virtual_tokens=T)
    elif kind == "SEQ_2_SEQ_LM":
        batch = task.seq2seq_batch(examples, tokenizer, max_length=limit, num_virtual_tokens=T)
    else:  # SEQ_CLS: the formatted text, right padded like any encoder batch
        texts = [task.format(dict(zip(examples, row))) for row in zip(*examples.values())]
        batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                          max_length=None if limit is None else limit - T)
    check_token_ids(model, batch["input_ids"])
    device = _device(model)
    return {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}


# -- rank classification -------------------------------------------------------------------------------

def first_token_ids(task, tokenizer) -> list[int]:
    """The first token of each label word's continuation ``" " + word`` (validated distinct by the Task)."""
    firsts = [ids[0] for ids in task.label_token_ids(tokenizer)]
    if len(set(firsts)) != len(firsts):  # the Task should have raised already; keep the invariant local
        raise ValueError(f"labels {task.label_words} share a first token; rank classification needs them distinct.")
    return firsts


@torch.no_grad()
def class_scores(model: nn.Module, tokenizer, task, examples: dict, *, task_id: int | None = None,
                 cache=None) -> torch.Tensor:
    """Log-probabilities ``(B, K)`` of each class for a batch of ``examples`` (rank classification).

    Causal LM: the log-softmax over the vocabulary at the last position, read at each label's first
    token. ``cache`` (a :class:`~softprompt.PromptPrefixCache` for ``model``) supplies the prompt's
    keys and values. Seq2seq: the same at the first decoder step. SEQ_CLS: the head's log-softmax.
    """
    batch = _encode(model, tokenizer, task, examples)
    ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, L)
    kind = model_kind(model)
    if kind == "SEQ_CLS":
        logits = model(input_ids=ids, attention_mask=mask, **_task_ids(model, task_id, len(ids))).logits  # (B, K)
        return logits.float().log_softmax(-1)
    if kind == "CAUSAL_LM":
        if cache is not None:
            last = cache.logits(ids, mask, logits_to_keep=1)[:, -1]  # (B, V)
        else:
            extra = _task_ids(model, task_id, len(ids)) if _is_prompt_model(model) else {}
            last = model(input_ids=ids, attention_mask=mask, logits_to_keep=1, **extra).logits[:, -1]  # (B, V)
    else:  # SEQ_2_SEQ_LM: one decoder step from the start token
        start = model.config.decoder_start_token_id
        if start is None:
            raise ValueError("the model config has no decoder_start_token_id; set it to score the first decoder step.")
        dec = torch.full((len(ids), 1), start, dtype=torch.long, device=ids.device)  # (B, 1)
        extra = _task_ids(model, task_id, len(ids)) if _is_prompt_model(model) else {}
        last = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, **extra).logits[:, -1]  # (B, V)
    firsts = torch.tensor(first_token_ids(task, tokenizer), device=last.device)
    return last.float().log_softmax(-1)[:, firsts]  # (B, K)


# -- exact-match generation ----------------------------------------------------------------------------

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


@torch.no_grad()
def generate_predictions(model: nn.Module, tokenizer, task, examples: dict, *, task_id: int | None = None,
                         cache=None, max_new_tokens: int | None = None) -> tuple[list[int], list[str]]:
    """Greedy-decode a few tokens per example; return (predicted class or -1, generated text)."""
    kind = model_kind(model)
    if kind == "SEQ_CLS":
        raise ValueError("method='generate' needs a language model; a classification head cannot generate.")
    if max_new_tokens is None:  # the longest label word, plus one token to see where it ends
        max_new_tokens = max(len(t) for t in task.label_token_ids(tokenizer)) + 1
    batch = _encode(model, tokenizer, task, examples, new_tokens=max_new_tokens if kind == "CAUSAL_LM" else 0)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    gen_kw = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    if cache is not None:
        new = cache.generate(ids, mask, **gen_kw)
    elif _is_prompt_model(model):
        new = model.generate(input_ids=ids, attention_mask=mask, **_task_ids(model, task_id, len(ids)), **gen_kw)
    else:
        out = model.generate(input_ids=ids, attention_mask=mask, **gen_kw)
        new = out if kind == "SEQ_2_SEQ_LM" else out[:, ids.shape[1]:]
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [match_label(t, task.label_words) for t in texts], texts


# -- putting it together -------------------------------------------------------------------------------

def summarize(predictions: list[int], labels: list[int], label_words: list[str]) -> dict:
    """Accuracy, per-class counts and the confusion matrix (rows: true class, columns: predicted).

    A prediction of -1 (generation matched no label word) counts as wrong and is tallied in
    ``"unmatched"``; it has no column in the confusion matrix.
    """
    K = len(label_words)
    confusion = [[0] * K for _ in range(K)]
    unmatched = 0
    for p, y in zip(predictions, labels):
        if p < 0:
            unmatched += 1
        else:
            confusion[y][p] += 1
    n = len(labels)
    correct = sum(int(p == y) for p, y in zip(predictions, labels))
    per_class = {}
    for k, word in enumerate(label_words):
        n_k = sum(1 for y in labels if y == k)
        per_class[word] = {
            "n": n_k,
            "correct": confusion[k][k],
            "predicted": sum(row[k] for row in confusion),
            "accuracy": confusion[k][k] / n_k if n_k else float("nan"),
        }
    return {
        "accuracy": correct / n if n else float("nan"),
        "n": n,
        "correct": correct,
        "per_class": per_class,
        "confusion": confusion,
        "unmatched": unmatched,
        "label_words": list(label_words),
    }


def evaluate(prompt_model: nn.Module, tokenizer, task, split: str = "test", *, method: str = "rank",
             batch_size: int = 32, max_examples: int | None = None, task_id: int | None = None,
             use_cache: bool = True, max_new_tokens: int | None = None, return_predictions: bool = False,
             ensemble: list[str] | None = None, sort_by_length: bool = True, progress: bool = False) -> dict:
    """Accuracy of ``prompt_model`` on ``task.splits[split]``.

    Args:
        prompt_model: a :class:`~softprompt.PromptModel`, or a plain Hugging Face model (zero-shot).
        tokenizer: the model's tokenizer (left padding for causal LMs).
        task: a :class:`~softprompt.Task`.
        method: ``"rank"`` (one forward pass, highest-scoring label word) or ``"generate"``
            (greedy decoding, exact match).
        batch_size, max_examples: rows per forward pass; evaluate only the first ``max_examples``.
        task_id: which task's prompt a multitask (MPT) prompt model uses.
        use_cache: reuse the prompt's keys/values across batches (causal LMs; same results, faster).
        max_new_tokens: for ``"generate"``; default: the longest label word's tokens + 1.
        return_predictions: add ``"predictions"`` (class ids, -1 = no label word matched), ``"labels"``,
            and ``"scores"`` (a ``(N, K)`` tensor of log-probs, rank) or ``"generations"`` (texts).
        ensemble: prompt ensembling (Lester et al. 2021, Table 3): ``prompt_model`` is a
            :class:`~softprompt.PromptBank` and these of its prompts vote on every example (majority,
            ties to the highest mean log-prob). Adds ``"members"``: each prompt's own accuracy.
        sort_by_length: batch examples of similar token length together (longest first), so rows
            carry little padding; results come back in the split's order and do not change, since
            padding never changes a row's output here.
        progress: show a ``tqdm`` bar.

    Returns:
        a dict with ``accuracy``, ``n``, ``correct``, ``per_class`` (word -> n, correct, predicted,
        accuracy), ``confusion`` (K x K, rows true), ``unmatched``, ``label_words``, ``method``, ``split``.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is unknown; use one of {METHODS}.")
    data = _split(task, split, max_examples)
    if model_kind(prompt_model) == "SEQ_CLS":
        check_num_labels(prompt_model, task)
    is_bank = hasattr(prompt_model, "ensemble_scores")
    if is_bank != (ensemble is not None):
        raise ValueError(
            "ensemble=[names] goes with a PromptBank as the model (and a PromptBank needs ensemble=[names]); "
            "for a single prompt pass its PromptModel, or ensemble=[name]."
        )
    if is_bank:
        if method != "rank":
            raise ValueError("ensembles vote over rank classification; use method='rank'.")
        return _evaluate_ensemble(prompt_model, task, data, list(ensemble), batch_size, split, return_predictions,
                                  sort_by_length, progress)
    if _is_prompt_model(prompt_model):
        task_id = task_id_for(prompt_model, task_id, what="this model's prompt")  # early: missing, stray or bad
    elif task_id is not None:
        raise ValueError("task_id only applies to a multitask PromptModel; this is a plain model.")
    cache = None
    if use_cache and _is_prompt_model(prompt_model) and model_kind(prompt_model) == "CAUSAL_LM":
        from .prefix_cache import PromptPrefixCache

        cache = PromptPrefixCache(prompt_model, task_id=task_id)

    order = length_order(task, tokenizer, data) if sort_by_length else list(range(len(data)))
    batches = iter_batches(data.select(order) if sort_by_length else data, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=-(-len(data) // batch_size), desc=f"evaluate {task.name}/{split}")
    modes = [(m, m.training) for m in prompt_model.modules()]  # restored exactly afterwards
    prompt_model.eval()
    predictions: list[int] = []
    scores, texts = [], []
    try:
        for examples in batches:
            if method == "rank":
                s = class_scores(prompt_model, tokenizer, task, examples, task_id=task_id, cache=cache)  # (B, K)
                scores.append(s.cpu())
                predictions += s.argmax(-1).tolist()
            else:
                p, t = generate_predictions(prompt_model, tokenizer, task, examples, task_id=task_id, cache=cache,
                                            max_new_tokens=max_new_tokens)
                predictions += p
                texts += t
    finally:
        for m, training in modes:
            m.training = training
    predictions, texts = _unsort(predictions, order), _unsort(texts, order)
    scores = [_unsort(torch.cat(scores), order)] if scores else []
    labels = [int(y) for y in data["label"]]
    result = summarize(predictions, labels, task.label_words)
    result.update(method=method, split=split)
    if return_predictions:
        result.update(predictions=predictions, labels=labels)
        if method == "rank":
            result["scores"] = torch.cat(scores)
        else:
            result["generations"] = texts
    return result


def _evaluate_ensemble(bank, task, data, names, batch_size, split, return_predictions, sort_by_length,
                       progress) -> dict:
    """:func:`evaluate` for a PromptBank ensemble: the vote's accuracy and each member's."""
    from .serving import majority_vote

    order = length_order(task, bank._tokenizer(), data) if sort_by_length else list(range(len(data)))
    batches = iter_batches(data.select(order) if sort_by_length else data, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=-(-len(data) // batch_size), desc=f"ensemble {task.name}/{split}")
    predictions, members, scores = [], [], []
    for examples in batches:
        s = bank.ensemble_scores(task, examples, names)  # (B, P, K)
        vote = majority_vote(s)
        predictions += vote["predictions"].tolist()
        members.append(vote["member_predictions"].cpu())
        scores.append(s.cpu())
    predictions = _unsort(predictions, order)
    scores = [_unsort(torch.cat(scores), order)]
    labels = [int(y) for y in data["label"]]
    result = summarize(predictions, labels, task.label_words)
    member_preds = _unsort(torch.cat(members), order)  # (N, P)
    truth = torch.tensor(labels)
    result["members"] = {n: float((member_preds[:, i] == truth).float().mean()) for i, n in enumerate(names)}
    result.update(method="rank", split=split, ensemble=names)
    if return_predictions:
        result.update(predictions=predictions, labels=labels, scores=torch.cat(scores))
    return result
