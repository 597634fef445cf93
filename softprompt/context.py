"""What a model can read: how many positions (its context) and which token ids (its vocabulary).

``train()`` and ``evaluate()`` build their batches through these functions, so that a batch
never holds more positions than the model has, or a token id past its embedding matrix; both
would otherwise fail deep inside torch with ``IndexError: index out of range in self``.

* :func:`context_size` reads the context from the model's config (``n_positions``,
  ``max_position_embeddings``, ``n_ctx``, ...). Models with relative positions (T5) have none.
* :func:`position_table_size` counts the rows of a learned position table (GPT-2's ``wpe``): the hard
  limit ``PromptModel.forward`` checks, with no device sync, before a lookup would fail.
* :func:`batch_max_length` is the length a batch must fit: ``max_length`` if given, else the
  tokenizer's own finite ``model_max_length``, and never more than the model's context.
* :func:`warn_if_cut` says (a ``UserWarning``, once per call) how many examples are cut to fit a limit
  the user did not choose: no ``max_length`` given, or one past the context. A chosen cut stays silent.
* :func:`check_token_ids` refuses token ids the model's embeddings do not have, and
  :func:`check_num_labels` a classification head with another number of classes than the task.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .enums import TaskType
from .model_kind import model_task_type
from .tasks.task import length_limit

__all__ = ["context_size", "position_table_size", "batch_max_length", "warn_if_cut", "check_token_ids",
           "check_num_labels"]

# Config fields that hold the number of absolute positions, in the order they are tried.
POSITION_FIELDS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length", "seq_length")


def _config(model):
    config = getattr(model, "config", None)
    get_text_config = getattr(config, "get_text_config", None)  # multimodal configs nest the text model's
    return get_text_config() if callable(get_text_config) else config


def context_size(model) -> int | None:
    """The number of positions ``model`` (a PromptModel or a Hugging Face model) can read; ``None``: no limit.

    GPT-2: ``n_positions``; Llama, BERT: ``max_position_embeddings``. T5-style relative position
    buckets have no limit, even where the config also carries ``n_positions``.
    """
    config = _config(model)
    if config is None or getattr(config, "relative_attention_num_buckets", None) is not None:
        return None
    for name in POSITION_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


# Learned absolute position tables (GPT-2's ``wpe``, BERT's ``position_embeddings``, OPT/BART's ``embed_positions``).
_POSITION_TABLE_NAMES = ("wpe", "position_embeddings", "embed_positions")


def position_table_size(model: nn.Module) -> int | None:
    """The rows of ``model``'s learned absolute position table (GPT-2's ``wpe``, BERT's ``position_embeddings``):
    the hard limit past which a forward pass fails with ``IndexError``. None for rotary or relative positions
    (Llama, T5), which have no table; :func:`context_size` is then the config's declared context."""
    d = model.get_input_embeddings().embedding_dim
    limits = [
        m.num_embeddings - int(getattr(m, "offset", 0) or 0)  # OPT/BART keep 2 extra rows
        for name, m in model.named_modules()
        if isinstance(m, nn.Embedding) and name.rsplit(".", 1)[-1] in _POSITION_TABLE_NAMES and m.embedding_dim == d
    ]
    return min(limits) if limits else None


def batch_max_length(model, tokenizer, max_length: int | None = None, num_virtual_tokens: int = 0,
                     new_tokens: int = 0) -> int | None:
    """The length (virtual tokens included) that every row of a batch for ``model`` must fit, or ``None``.

    ``max_length`` if given, else the tokenizer's ``model_max_length`` when finite; capped at
    :func:`context_size`, less ``new_tokens`` positions kept free for generation. Raises
    ``ValueError`` when the prompt (and the new tokens) leave no room for any text.
    """
    requested = length_limit(tokenizer, max_length)
    context = context_size(model)
    limits = [n for n in (requested, context) if n is not None]
    if not limits:
        return None
    limit = min(limits)
    if num_virtual_tokens + new_tokens >= limit:
        source = "the model's context" if limit == context else "max_length (or tokenizer.model_max_length)"
        generated = f" plus {new_tokens} generated tokens" if new_tokens else ""
        raise ValueError(
            f"the prompt has T={num_virtual_tokens} virtual tokens{generated} but {source} is {limit} positions, "
            f"which leaves no room for the text and the label word; use fewer virtual tokens"
            f"{' or fewer new tokens' if new_tokens else ''}{'' if limit == context else ' or a larger max_length'}."
        )
    return limit - new_tokens


def warn_if_cut(model, tokenizer, tasks_and_examples, *, max_length: int | None, num_virtual_tokens: int = 0,
                new_tokens: int = 0, training: bool = False, what: str = "examples", stacklevel: int = 1) -> int:
    """Warn once if batches for ``model`` cut examples to a limit the user did not choose; return how many.

    ``tasks_and_examples``: ``[(task, examples)]``, every example a call will read (each counted once, by
    :meth:`~softprompt.Task.too_long`). The user chose the cut when ``max_length`` is given and fits the context:
    then nothing is counted and nothing said. ``training``: causal rows end with the label word, which must fit
    too. ``stacklevel``: as in ``warnings.warn``, counted from the caller (1: the line that calls this).
    Costs one tokenizer pass over the examples, and only when the limit is not the user's.
    """
    requested, context = length_limit(tokenizer, max_length), context_size(model)
    if max_length is not None and (context is None or requested <= context):
        return 0  # the user's own max_length is the cut
    limit = batch_max_length(model, tokenizer, max_length, num_virtual_tokens, new_tokens)
    if limit is None:
        return 0
    kind = model_task_type(model)
    with_targets = training and kind == TaskType.CAUSAL_LM
    cut = total = 0
    for task, examples in tasks_and_examples:
        flags = task.too_long(examples, tokenizer, max_length=limit, num_virtual_tokens=num_virtual_tokens,
                              with_targets=with_targets)
        cut, total = cut + sum(flags), total + len(flags)
    if cut:
        cap = limit + new_tokens  # the positions a row may fill, before any are kept free for generation
        warnings.warn(_cut_message(cut, total, what, cap, cap == context, max_length, num_virtual_tokens,
                                   new_tokens, kind, with_targets, tokenizer), UserWarning, stacklevel=stacklevel + 1)
    return cut


def _cut_message(cut, total, what, cap, is_context, max_length, T, new_tokens, kind, with_targets, tokenizer) -> str:
    where = f"the model's context of {cap} tokens" if is_context else f"tokenizer.model_max_length={cap} tokens"
    parts = ([f"the prompt's {T} virtual tokens"] if T else []) + ([f"{new_tokens} new tokens"] if new_tokens else [])
    included = f" ({' and '.join(parts)} included)" if parts else ""
    if kind == TaskType.SEQ_CLS:
        side = getattr(tokenizer, "truncation_side", "right")
        how = f"the tokenizer drops their {'last' if side == 'right' else 'first'} tokens (truncation_side={side!r})"
    else:
        how = f"each text loses its end, the template{' and the label word' if with_targets else ''} kept"
    unasked = f", not to max_length={max_length}" if max_length is not None else ""
    return (f"{cut} of {total} {what} are longer than {where}{included} and are cut to fit{unasked}: {how}. "
            f"Pass max_length (e.g. max_length={cap}, this same cut, or less) to choose the cut yourself.")


def _embedding_rows(model) -> int | None:
    emb = getattr(model, "word_embeddings", None)
    if emb is None and hasattr(model, "get_input_embeddings"):
        emb = model.get_input_embeddings()
    return getattr(emb, "num_embeddings", None)


def check_token_ids(model, ids: torch.Tensor, what: str = "input_ids", ignore_index: int | None = None) -> None:
    """Raise ``ValueError`` if a token id in ``ids`` is outside ``model``'s embedding matrix (one ``aminmax``).

    ``ignore_index`` (e.g. -100 in labels) marks positions that are not token ids. The check reads the values,
    so on an accelerator it waits for the device: callers run it on CPU batches.
    """
    size = _embedding_rows(model)
    if ignore_index is not None:
        ids = ids[ids != ignore_index]
    if size is None or ids.numel() == 0:
        return
    lo, hi = (int(x) for x in torch.aminmax(ids))
    if lo < 0 or hi >= size:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"the batch's {what} hold token id {bad} but the model's embedding matrix has only {size} rows "
            f"(ids 0..{size - 1}): the tokenizer does not belong to this model. Use the model's own tokenizer, "
            f"or, after adding tokens to it, call model.resize_token_embeddings(len(tokenizer)) before "
            f"building the prompt model."
        )


def check_num_labels(model, task) -> None:
    """Raise ``ValueError`` if a classification head's ``num_labels`` differs from the task's classes."""
    num_labels = getattr(_config(model), "num_labels", None)
    if num_labels is not None and num_labels != task.num_classes:
        raise ValueError(
            f"the model's classification head has num_labels={num_labels} but task {task.name!r} has "
            f"{task.num_classes} classes {task.label_words}; load the model with num_labels={task.num_classes}."
        )
