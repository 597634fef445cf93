"""The `Task`: a labelled dataset, a prompt template and a verbalizer, and the batches they make.

Prompt tuning (Lester et al. 2021, §2) casts every classification task as text-to-text:
the model reads a *source* string and must produce the *target*, a label word. A `Task`
holds the three ingredients of that casting:

* ``splits``: ``datasets.Dataset`` s with columns ``text``, ``label`` (int) and, for pair
  tasks, ``text_b``;
* ``template``: how an example becomes the source, e.g. ``"Review: {text}\\nSentiment:"``;
* ``label_words``: the verbalizer, ``label_words[i]`` is the word for label id ``i``, written
  without a leading space; the target string is ``" " + word``.

Batches follow ARCHITECTURE.md. A **causal** batch is left padded and ends every row with the
target, so the label positions are the last ``k`` positions of every row (``logits_to_keep =
k + 1`` covers the predictions of all of them); without targets, each row ends right after the
template, where rank classification reads the next-token distribution. A **seq2seq** batch
sends the source to the encoder and the label word (plus eos) to the decoder, right padded.

**Truncation.** When ``max_length`` (the model's context) is known, the *example text* is cut
from its end, token by token, until ``num_virtual_tokens + len(source) + len(target)`` fits;
the template and the target are never cut. For pair tasks the longer field is cut first. If
even the template and the target alone do not fit, a ``ValueError`` says so. ``train()`` and
``evaluate()`` pass the model's own context (:func:`softprompt.context.batch_max_length`) and, when
the user set no ``max_length``, warn how many examples are cut (:meth:`Task.too_long` finds them).

**Checked data.** Text fields must be strings and labels integer class ids (numpy ints too; not
floats, strings, bools or ``None``), both when the Task is built and when a batch is made from
hand-written rows; a :class:`TaskDataError` (a ``ValueError`` and a ``TypeError``) names the row.
"""

from __future__ import annotations

import operator
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import torch
from datasets import Dataset

from ..label_words import label_word_ids

__all__ = ["Task", "TaskDataError", "SPLITS", "TEXT_FIELDS", "length_limit"]

SPLITS = ("train", "validation", "test")
TEXT_FIELDS = ("text", "text_b")  # the columns a template may name
IGNORE_INDEX = -100  # label positions the loss skips (Hugging Face convention)
_UNBOUNDED = 10**9  # tokenizers without a real limit report model_max_length ~ 1e30


class TaskDataError(ValueError, TypeError):
    """A value of the wrong type in a task's data (a ``None`` text, a float label); a ValueError and a TypeError."""


def template_fields(template: str) -> list[str]:
    """The field names a template uses, in order: ``"Q: {text} A: {text_b}"`` -> ``["text", "text_b"]``."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


@dataclass(eq=False)
class Task:
    """A classification task cast as text-to-text (Lester et al. 2021, §2).

    Build one with :func:`softprompt.load_task`; construct it directly for your own data.
    """

    name: str
    family: str
    description: str
    splits: dict[str, Dataset]
    template: str
    label_words: list[str]
    source: str = "builtin"  # "builtin" (generated offline), "hub" (a dataset recipe) or "custom"
    metadata: dict = field(default_factory=dict)  # e.g. hub_id, config, generator seed

    def __post_init__(self):
        fields = template_fields(self.template)
        if "text" not in fields:
            raise ValueError(
                f"template={self.template!r} has no {{text}} field; write e.g. 'Review: {{text}}\\nLabel:'."
            )
        unknown = [f for f in fields if f not in TEXT_FIELDS]
        if unknown:
            raise ValueError(
                f"template={self.template!r} names fields {unknown}; a template may use only {list(TEXT_FIELDS)}."
            )
        if isinstance(self.label_words, str) or not isinstance(self.label_words, Sequence):
            raise TaskDataError(
                f"label_words={self.label_words!r} of task {self.name!r} must be a list of words, one per class, "
                f"e.g. ['negative', 'positive']."
            )
        if len(self.label_words) < 2:
            raise ValueError(f"label_words={self.label_words!r}: a classification task needs at least two label words.")
        for word in self.label_words:
            if not isinstance(word, str) or not word.strip() or word != word.strip():
                raise ValueError(
                    f"label word {word!r} of task {self.name!r} must be a non-empty string without surrounding "
                    f"spaces; the leading space is added by Task.target()."
                )
        if len(set(self.label_words)) != len(self.label_words):
            raise ValueError(
                f"label_words={self.label_words!r} of task {self.name!r} repeat a word; make them distinct."
            )
        if not self.splits:
            raise ValueError(f"task {self.name!r} has no splits; give at least one of {SPLITS}.")
        for split, ds in self.splits.items():
            self._check_split(split, ds, fields)

    def _check_split(self, split: str, ds: Dataset, fields: list[str]) -> None:
        if len(ds) == 0:
            raise ValueError(f"split {split!r} of task {self.name!r} is empty; every split needs at least one example.")
        missing = [c for c in [*fields, "label"] if c not in ds.column_names]
        if missing:
            raise ValueError(
                f"split {split!r} of task {self.name!r} lacks columns {missing} (has {ds.column_names}); "
                f"rename them to 'text', 'text_b' and 'label'."
            )
        for column in dict.fromkeys(fields):
            self._check_text_column(split, ds, column)
        self._check_label_column(split, ds)
        labels = ds["label"]
        lo, hi = min(labels), max(labels)
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(
                f"split {split!r} of task {self.name!r} has labels in [{lo}, {hi}] but the task has "
                f"{self.num_classes} label words; labels must be 0..{self.num_classes - 1} "
                f"(GLUE test splits use -1 for 'unlabelled': carve a test split from validation instead)."
            )

    def _check_text_column(self, split: str, ds: Dataset, column: str) -> None:
        values = ds.with_format("arrow")[column]  # (N,) arrow array: its type and null count cost nothing
        if _is_string_type(values.type) and values.null_count == 0:
            return
        row, value = _first_bad(ds[column], lambda v: isinstance(v, str)) or (0, ds[0][column])
        raise TaskDataError(
            f"split {split!r} of task {self.name!r}: column {column!r} must hold strings, but row {row} is "
            f"{value!r} ({type(value).__name__}); fill or drop such rows first, e.g. "
            f"ds.filter(lambda r: isinstance(r[{column!r}], str)), or convert them with str()."
        )

    def _check_label_column(self, split: str, ds: Dataset) -> None:
        values = ds.with_format("arrow")["label"]  # (N,)
        if pa.types.is_integer(values.type) and values.null_count == 0:
            return
        labels = ds["label"]
        bad = None
        if pa.types.is_floating(values.type):  # name a 0.5 before a 1.0: casting would truncate it
            bad = _first_bad(labels, lambda v: v is not None and float(v).is_integer())
        bad = bad or _first_bad(labels, lambda v: isinstance(v, int) and not isinstance(v, bool))
        row, value = bad or (0, labels[0])
        raise TaskDataError(
            f"split {split!r} of task {self.name!r}: labels must be integer class ids 0..{self.num_classes - 1}, "
            f"but column 'label' holds {values.type} values (row {row}: {value!r}). "
            + _label_fix(value, self.label_words)
        )

    # ------------------------------------------------------------------ the text-to-text casting

    @property
    def num_classes(self) -> int:
        return len(self.label_words)

    @property
    def fields(self) -> list[str]:
        """The example columns the template reads: ``["text"]`` or ``["text", "text_b"]``."""
        return list(dict.fromkeys(template_fields(self.template)))

    @property
    def is_pair(self) -> bool:
        return "text_b" in self.fields

    def format(self, example: Mapping) -> str:
        """The source string: the template filled with the example's fields (strings; anything else is refused)."""
        missing = [f for f in self.fields if f not in example]
        if missing:
            raise ValueError(
                f"task {self.name!r}: the example lacks fields {missing} that template={self.template!r} uses "
                f"(it has {sorted(example)})."
            )
        for f in self.fields:
            if not isinstance(example[f], str):
                raise TaskDataError(
                    f"task {self.name!r}: field {f!r} of the example is {example[f]!r} "
                    f"({type(example[f]).__name__}), not a string; text fields must hold strings "
                    f"(fill or drop such examples, or convert them with str())."
                )
        return self.template.format(**{f: example[f] for f in self.fields})

    def class_id(self, label) -> int:
        """``label`` as a validated class id: an integer (Python or numpy, not bool) in ``0..num_classes-1``."""
        is_bool = isinstance(label, bool) or str(getattr(label, "dtype", "")) in ("bool", "torch.bool")
        try:
            index = None if is_bool else operator.index(label)
        except TypeError:
            index = None
        if index is None:
            raise TaskDataError(
                f"label={label!r} ({type(label).__name__}) of task {self.name!r} is not an integer class id "
                f"0..{self.num_classes - 1}. " + _label_fix(label, self.label_words)
            )
        if not 0 <= index < self.num_classes:
            raise ValueError(f"label={label} is out of range for task {self.name!r}; use 0..{self.num_classes - 1}.")
        return index

    def target(self, label: int) -> str:
        """The target string for a label id: ``" " + label_words[label]``."""
        return " " + self.label_words[self.class_id(label)]

    def label_token_ids(self, tokenizer, *, require_distinct_first: bool = True) -> list[list[int]]:
        """Token ids of each target ``" " + word``, as a continuation (no special tokens).

        Rank classification compares the *first* token of each label word at one position, so
        those first tokens must differ; set ``require_distinct_first=False`` to skip that check
        (e.g. for generation-only use).
        """
        ids = []
        unk = tokenizer.unk_token_id
        for word in self.label_words:
            toks = label_word_ids(tokenizer, word)  # " " + word
            if not toks or (unk is not None and unk in toks and word != tokenizer.unk_token):
                raise ValueError(
                    f"label word {word!r} of task {self.name!r} does not encode with this tokenizer "
                    f"(got {tokenizer.convert_ids_to_tokens(toks)}); pick a word in its vocabulary, "
                    f"or build the Task with other label_words."
                )
            ids.append(toks)
        if require_distinct_first:
            firsts = [t[0] for t in ids]
            if len(set(firsts)) != len(firsts):
                clash = {w: tokenizer.convert_ids_to_tokens(t[:1])[0] for w, t in zip(self.label_words, ids)}
                raise ValueError(
                    f"label words of task {self.name!r} share a first token ({clash}); rank classification "
                    f"needs distinct first tokens, so choose label words that start differently."
                )
        return ids

    # ------------------------------------------------------------------ data access

    def sample(self, split: str = "train", n: int = 8, seed: int = 0) -> Dataset:
        """``n`` examples of ``split`` drawn without replacement, the same ones for the same seed."""
        ds = self[split]
        if not 0 < n <= len(ds):
            raise ValueError(f"n={n} is out of range for split {split!r} of task {self.name!r} (1..{len(ds)}).")
        idx = random.Random(seed).sample(range(len(ds)), n)
        return ds.select(idx)

    def __getitem__(self, split: str) -> Dataset:
        if split not in self.splits:
            raise KeyError(f"task {self.name!r} has no split {split!r}; it has {sorted(self.splits)}.")
        return self.splits[split]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        words = ", ".join(f"{i}={self.target(i)!r}" for i in range(self.num_classes))
        first_split = next(iter(self.splits.values()))
        ex = first_split[0]
        lines = [
            f"Task({self.name!r}, family={self.family!r}, source={self.source!r})",
            f"  {self.description}",
            f"  splits:      {sizes}",
            f"  label words: {words}",
            f"  template:    {self.template!r}",
            f"  example:     {self.format(ex)!r} -> {self.target(ex['label'])!r}",
        ]
        return "\n".join(lines)

    # ------------------------------------------------------------------ batches

    def causal_batch(
        self,
        examples,
        tokenizer,
        with_targets: bool = True,
        max_length: int | None = None,
        num_virtual_tokens: int = 0,
    ) -> dict[str, torch.Tensor]:
        """A left-padded batch for a decoder-only LM, target at the very end of each row.

        Returns ``input_ids (B, L)``, ``attention_mask (B, L)``, ``class_labels (B,)`` and, with
        targets, ``labels (B, L)``: ``-100`` everywhere except the target tokens. Without targets,
        rows end right after the template (rank classification, generation).
        ``examples``: a Dataset slice (dict of lists), a list of dicts, or a Dataset.
        ``max_length``: the model's context; ``None`` uses ``tokenizer.model_max_length`` when finite.
        """
        rows = _as_rows(examples)
        targets = self._target_ids(tokenizer, rows, eos=False) if with_targets else [[] for _ in rows]
        sources = self._source_ids(tokenizer, rows, targets, max_length, num_virtual_tokens)
        seqs = [s + t for s, t in zip(sources, targets)]
        input_ids, attention_mask = _padded(seqs, _pad_id(tokenizer), "left")  # (B, L), (B, L)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if with_targets:
            batch["labels"], _ = _padded(targets, IGNORE_INDEX, "left", width=input_ids.shape[1])  # (B, L)
        batch["class_labels"] = torch.tensor([self.class_id(r["label"]) for r in rows], dtype=torch.long)  # (B,)
        return batch

    def seq2seq_batch(
        self,
        examples,
        tokenizer,
        with_targets: bool = True,
        max_length: int | None = None,
        num_virtual_tokens: int = 0,
    ) -> dict[str, torch.Tensor]:
        """A right-padded batch for an encoder-decoder LM: source -> encoder, label word + eos -> labels.

        Returns ``input_ids (B, S)``, ``attention_mask (B, S)``, ``class_labels (B,)`` and, with
        targets, ``labels (B, T)`` padded with ``-100`` (the model shifts them into decoder inputs).
        ``max_length`` bounds the encoder side (prompt + source).
        """
        rows = _as_rows(examples)
        no_target = [[] for _ in rows]
        sources = self._source_ids(tokenizer, rows, no_target, max_length, num_virtual_tokens)
        input_ids, attention_mask = _padded(sources, _pad_id(tokenizer), "right")  # (B, S), (B, S)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if with_targets:
            targets = self._target_ids(tokenizer, rows, eos=True)
            batch["labels"], _ = _padded(targets, IGNORE_INDEX, "right")  # (B, T)
        batch["class_labels"] = torch.tensor([self.class_id(r["label"]) for r in rows], dtype=torch.long)  # (B,)
        return batch

    # ------------------------------------------------------------------ tokenization helpers

    def _target_ids(self, tokenizer, rows, eos: bool) -> list[list[int]]:
        words = self.label_token_ids(tokenizer, require_distinct_first=False)
        out = []
        for r in rows:
            ids = list(words[self.class_id(r["label"])])
            if eos:
                if tokenizer.eos_token_id is None:
                    raise ValueError(
                        "the tokenizer has no eos token; seq2seq targets end with eos. Set tokenizer.eos_token."
                    )
                ids.append(tokenizer.eos_token_id)
            out.append(ids)
        return out

    def too_long(self, examples, tokenizer, max_length: int | None = None, num_virtual_tokens: int = 0,
                 with_targets: bool = False) -> list[bool]:
        """Per example, whether a batch cuts its text: prompt + source (+ target) longer than ``max_length``.

        The rule :meth:`causal_batch` (``with_targets``: a training batch, the label word must fit too) and
        :meth:`seq2seq_batch` follow; a tokenizer's own truncation of the formatted text (a classifier's
        batch) cuts the same rows. ``max_length``: as in the batches (``None``: the tokenizer's finite limit).
        """
        rows = _as_rows(examples)
        limit = length_limit(tokenizer, max_length)
        if limit is None:
            return [False] * len(rows)
        targets = self._target_ids(tokenizer, rows, eos=False) if with_targets else [[] for _ in rows]
        sources = tokenizer([self.format(r) for r in rows], add_special_tokens=True)["input_ids"]
        return [len(src) > _source_budget(limit, num_virtual_tokens, tgt) for src, tgt in zip(sources, targets)]

    def _source_ids(self, tokenizer, rows, targets, max_length, num_virtual_tokens) -> list[list[int]]:
        """Tokenized sources, the example text truncated so that prompt + source + target fits."""
        if num_virtual_tokens < 0:
            raise ValueError(f"num_virtual_tokens={num_virtual_tokens} must be >= 0.")
        limit = length_limit(tokenizer, max_length)
        sources = tokenizer([self.format(r) for r in rows], add_special_tokens=True)["input_ids"]
        if limit is None:
            return [list(s) for s in sources]
        out = []
        for row, src, tgt in zip(rows, sources, targets):
            budget = _source_budget(limit, num_virtual_tokens, tgt)
            if len(src) > budget:
                src = self._truncated_source(tokenizer, row, budget, limit, num_virtual_tokens, len(tgt))
            out.append(list(src))
        return out

    def _truncated_source(self, tokenizer, row, budget, limit, num_virtual_tokens, target_len) -> list[int]:
        empty = dict(row, **{f: "" for f in self.fields})
        bare = tokenizer(self.format(empty), add_special_tokens=True)["input_ids"]
        if len(bare) > budget:
            raise ValueError(
                f"task {self.name!r}: the template alone takes {len(bare)} tokens and the target {target_len}, "
                f"with {num_virtual_tokens} virtual tokens that exceeds the context of {limit} tokens; "
                f"use fewer virtual tokens, a shorter template, or a larger max_length."
            )
        texts = {f: str(row[f]) for f in self.fields}
        ends = {f: _token_ends(tokenizer, t) for f, t in texts.items()}  # char offset where each token ends
        keep = {f: len(e) for f, e in ends.items()}  # tokens kept per field
        while True:
            cut = {f: texts[f][: ends[f][keep[f] - 1]].rstrip() if keep[f] else "" for f in texts}
            src = tokenizer(self.format(dict(row, **cut)), add_special_tokens=True)["input_ids"]
            over = len(src) - budget
            if over <= 0:  # always reached: with every field empty the source is `bare`, which fits
                return src
            longest = max(keep, key=keep.get)  # cut the longer field first
            keep[longest] = max(0, keep[longest] - over)


def _source_budget(limit: int, num_virtual_tokens: int, target: list[int]) -> int:
    """The tokens a source may use: the row's ``limit`` less the prompt and the target."""
    return limit - num_virtual_tokens - len(target)


def _is_string_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t)


def _first_bad(values: list, ok) -> tuple[int, object] | None:
    """The first ``(row, value)`` of ``values`` that is not ``ok``; ``None`` if all are."""
    return next(((i, v) for i, v in enumerate(values) if not ok(v)), None)


def _label_fix(value, label_words: list[str]) -> str:
    """What to do about a label that is not an integer class id."""
    if value is None:
        return "Fill or drop the unlabelled rows (e.g. ds.filter(lambda r: r['label'] is not None))."
    if isinstance(value, float) and value.is_integer():
        return "Cast the column to integers: ds = ds.cast_column('label', datasets.Value('int64'))."
    if isinstance(value, str):
        return (f"Map the strings to class ids first: ds.map(lambda r: {{'label': int(r['label'])}}) for digits, "
                f"or {label_words!r}.index(r['label']) for label words.")
    if isinstance(value, bool):
        return "Booleans are not class ids: use 0 and 1 (e.g. ds.map(lambda r: {'label': int(r['label'])}))."
    return f"Map each label to the index of its label word in {label_words!r}."


def _token_ends(tokenizer, text: str) -> list[int]:
    """For each token of ``text``, the character offset where it ends (so ``text[:end]`` keeps it whole)."""
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return [end for _, end in offsets]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # slow tokenizers: decode growing prefixes
    return [len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True)) for i in range(len(ids))]


def _as_rows(examples) -> list[Mapping]:
    """Accept a list of dicts, a dict of lists (a Dataset slice) or a Dataset; return a list of dicts."""
    if isinstance(examples, Dataset):
        rows = examples.to_list()
    elif isinstance(examples, Mapping):
        keys = list(examples)
        lengths = {len(examples[k]) for k in keys}
        if len(lengths) != 1:
            raise ValueError(
                f"examples is a dict of lists of unequal lengths {sorted(lengths)}; slice a Dataset instead."
            )
        rows = [dict(zip(keys, vals)) for vals in zip(*(examples[k] for k in keys))]
    elif isinstance(examples, Sequence) and not isinstance(examples, str):
        rows = list(examples)
    else:
        raise TypeError(
            f"examples must be a list of dicts, a dict of lists or a Dataset, not {type(examples).__name__}."
        )
    if not rows:
        raise ValueError("examples is empty; a batch needs at least one example.")
    if "label" not in rows[0]:
        raise ValueError(f"examples lack a 'label' column (have {sorted(rows[0])}).")
    return rows


def _padded(seqs: list[list[int]], value: int, side: str, width: int | None = None):
    """Stack token lists into a ``(B, width)`` tensor filled with ``value`` on the ``side`` ("left"/"right").

    Also returns the ``(B, width)`` 0/1 mask of the real tokens.
    """
    width = width or max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), value, dtype=torch.long)  # (B, width)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, width)
    for i, seq in enumerate(seqs):
        if seq:
            cols = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
            out[i, cols] = torch.tensor(seq)
            mask[i, cols] = 1
    return out, mask


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token first.")
    return pad


def length_limit(tokenizer, max_length: int | None) -> int | None:
    """The length a row must fit: ``max_length`` if given, else the tokenizer's finite ``model_max_length``."""
    if max_length is not None:
        if max_length <= 0:
            raise ValueError(f"max_length={max_length} must be positive (the model's context length).")
        return int(max_length)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit is not None and limit < _UNBOUNDED else None
