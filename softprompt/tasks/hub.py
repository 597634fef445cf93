"""Hub recipes: the source tasks of multitask prompt tuning (Wang et al. 2023, §4.1) as `Task` s.

SST-2, rotten_tomatoes, AG News, BoolQ, MNLI, QNLI and QQP, for the GPU profile. Each recipe
says where the data lives on the Hugging Face hub, how its columns map onto ``text``,
``text_b`` and ``label``, and how to cast it as text-to-text (template and label words).

**Splits.** GLUE test splits carry no labels (``label == -1``), so, as in the MPT paper, a
recipe uses the hub's labelled *validation* split as ``test`` and carves its own
``validation`` from ``train`` (a seeded, deterministic draw of ``validation_size`` rows,
default ``min(1000, len(train) // 10)``); rotten_tomatoes ships all three labelled splits.

**Local copies.** ``data_dir=`` points at a folder holding the hub's files for the recipe's
splits, named by split (``train.parquet``, ``train-00000-of-00001.parquet``, ``train.jsonl``,
``validation_matched.parquet``, ``train/0000.parquet`` ..., optionally under a subfolder named
after the config, e.g. ``glue/sst2/``); ``data_files=`` maps hub split names to files
directly. Local files are read into memory with pyarrow (parquet, jsonl, csv): nothing is
downloaded and nothing is written to the datasets cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from datasets import Dataset

from .task import SPLITS, Task

__all__ = ["HUB_RECIPES", "HubRecipe", "HubDatasetError", "load_hub_task"]

_EXTENSIONS = ("parquet", "jsonl", "json", "csv")


class HubDatasetError(RuntimeError):
    """A hub dataset could not be loaded (the hub unreachable, offline mode, or missing local files)."""


@dataclass(frozen=True)
class HubRecipe:
    """Where a hub dataset lives and how it becomes a `Task`."""

    name: str
    family: str
    description: str
    hub_id: str
    config: str | None
    columns: dict  # hub column -> task column ("text", "text_b", "label")
    template: str
    label_words: tuple[str, ...]
    split_map: dict  # task split -> hub split, or None to carve it from train

    @property
    def hub_splits(self) -> list[str]:
        return sorted({s for s in self.split_map.values() if s is not None} | {"train"})


_CARVE = None  # a task split carved from the hub's train split

HUB_RECIPES: dict[str, HubRecipe] = {r.name: r for r in (
    HubRecipe("sst2", "sentiment", "SST-2 (GLUE): movie review sentences, negative or positive.",
              "nyu-mll/glue", "sst2", {"sentence": "text", "label": "label"},
              "Review: {text}\nSentiment:", ("negative", "positive"),
              {"train": "train", "validation": _CARVE, "test": "validation"}),
    HubRecipe("rotten_tomatoes", "sentiment", "Rotten Tomatoes movie review snippets, negative or positive.",
              "cornell-movie-review-data/rotten_tomatoes", None, {"text": "text", "label": "label"},
              "Review: {text}\nSentiment:", ("negative", "positive"),
              {"train": "train", "validation": "validation", "test": "test"}),
    HubRecipe("ag_news", "topic", "AG News headlines and leads: world, sports, business or science/tech.",
              "fancyzhx/ag_news", None, {"text": "text", "label": "label"},
              "Article: {text}\nTopic:", ("world", "sports", "business", "science"),
              {"train": "train", "validation": _CARVE, "test": "test"}),
    HubRecipe("boolq", "inference", "BoolQ: a yes/no question about a Wikipedia passage.",
              "google/boolq", None, {"passage": "text", "question": "text_b", "answer": "label"},
              "Passage: {text}\nQuestion: {text_b}?\nAnswer:", ("no", "yes"),
              {"train": "train", "validation": _CARVE, "test": "validation"}),
    HubRecipe("mnli", "inference", "MultiNLI (GLUE): does the premise entail, allow or contradict the hypothesis?",
              "nyu-mll/glue", "mnli", {"premise": "text", "hypothesis": "text_b", "label": "label"},
              "Premise: {text}\nHypothesis: {text_b}\nDoes the premise entail the hypothesis?",
              ("yes", "maybe", "no"),
              {"train": "train", "validation": _CARVE, "test": "validation_matched"}),
    HubRecipe("qnli", "inference", "QNLI (GLUE): does the sentence contain the answer to the question?",
              "nyu-mll/glue", "qnli", {"question": "text", "sentence": "text_b", "label": "label"},
              "Question: {text}\nSentence: {text_b}\nDoes the sentence answer the question?", ("yes", "no"),
              {"train": "train", "validation": _CARVE, "test": "validation"}),
    HubRecipe("qqp", "paraphrase", "QQP (GLUE): do two Quora questions ask the same thing?",
              "nyu-mll/glue", "qqp", {"question1": "text", "question2": "text_b", "label": "label"},
              "Question 1: {text}\nQuestion 2: {text_b}\nDo they ask the same thing?", ("no", "yes"),
              {"train": "train", "validation": _CARVE, "test": "validation"}),
)}


def load_hub_task(
    recipe: HubRecipe,
    *,
    data_dir: str | os.PathLike | None = None,
    data_files: dict | None = None,
    validation_size: int | None = None,
    seed: int = 0,
) -> Task:
    """Load a recipe's data (hub, ``data_dir`` or ``data_files``) and cast it as a `Task`."""
    if data_dir is not None and data_files is not None:
        raise ValueError("pass either data_dir= or data_files=, not both.")
    if data_files is not None:
        raw = {split: _read_files(_as_paths(files)) for split, files in data_files.items()}
    elif data_dir is not None:
        raw = _read_local(recipe, Path(data_dir))
    else:
        raw = _download(recipe)
    missing = [s for s in recipe.hub_splits if s not in raw]
    if missing:
        raise HubDatasetError(
            f"task {recipe.name!r} needs the hub splits {recipe.hub_splits} but got {sorted(raw)}; "
            f"provide files for {missing}."
        )
    hub = {s: _normalize(recipe, s, raw[s]) for s in recipe.hub_splits}
    splits = _assemble(recipe, hub, validation_size, seed)
    return Task(
        name=recipe.name, family=recipe.family, description=recipe.description, splits=splits,
        template=recipe.template, label_words=list(recipe.label_words), source="hub",
        metadata={"hub_id": recipe.hub_id, "config": recipe.config,
                  "local": None if data_dir is None and data_files is None else str(data_dir or "data_files")},
    )


def _assemble(recipe: HubRecipe, hub: dict[str, Dataset], validation_size: int | None, seed: int) -> dict:
    """Map hub splits onto train/validation/test, carving the missing ones from train (seeded)."""
    train = hub["train"]
    carve = [split for split in SPLITS if recipe.split_map[split] is _CARVE]
    splits = {split: hub[recipe.split_map[split]] for split in SPLITS if recipe.split_map[split] is not _CARVE}
    if carve:
        n = validation_size if validation_size is not None else min(1000, max(1, len(train) // 10))
        if not 0 < n * len(carve) < len(train):
            raise ValueError(
                f"validation_size={n} does not fit the {len(train)} training rows of {recipe.name!r}; "
                f"choose 1..{max(1, len(train) // (len(carve) + 1))}."
            )
        order = np.random.default_rng(seed).permutation(len(train))
        for i, split in enumerate(carve):
            splits[split] = train.select(np.sort(order[i * n:(i + 1) * n]))
        splits["train"] = train.select(np.sort(order[len(carve) * n:]))
    return {split: splits[split] for split in SPLITS}


def _normalize(recipe: HubRecipe, split: str, ds: Dataset) -> Dataset:
    """Keep the recipe's columns, renamed to text / text_b / label, labels as int."""
    missing = [c for c in recipe.columns if c not in ds.column_names]
    if missing:
        raise HubDatasetError(
            f"split {split!r} of {recipe.hub_id} ({recipe.config}) lacks columns {missing} "
            f"(has {ds.column_names}); is this the right dataset for task {recipe.name!r}?"
        )
    ds = ds.select_columns(list(recipe.columns)).rename_columns(recipe.columns)
    labels = [int(v) for v in ds["label"]]  # bool (BoolQ) or int64 (GLUE, ClassLabel) -> int
    return ds.remove_columns("label").add_column("label", labels)


def _download(recipe: HubRecipe) -> dict[str, Dataset]:
    where = recipe.hub_id + (f" (config {recipe.config!r})" if recipe.config else "")
    try:
        dd = datasets.load_dataset(recipe.hub_id, recipe.config)
    except Exception as exc:  # offline mode, no network, hub errors: one clear message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubDatasetError(
            f"could not load the hub dataset {where} for task {recipe.name!r}: the Hugging Face hub is "
            f"unreachable or offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) [{type(exc).__name__}: "
            f"{first}]. Offline, use a built-in task (softprompt.list_tasks(source='builtin')) or pass "
            f"data_dir= pointing at a local copy of the dataset's files."
        ) from exc
    return dict(dd)


def _read_local(recipe: HubRecipe, data_dir: Path) -> dict[str, Dataset]:
    if not data_dir.is_dir():
        raise HubDatasetError(f"data_dir={str(data_dir)!r} is not a directory; point it at a local copy of "
                              f"{recipe.hub_id}.")
    roots = [data_dir] + ([data_dir / recipe.config] if recipe.config else [])
    out = {}
    for split in recipe.hub_splits:
        files = sorted({p for root in roots for ext in _EXTENSIONS
                        for pattern in (f"{split}.{ext}", f"{split}-*.{ext}", f"{split}/*.{ext}")
                        for p in root.glob(pattern)})
        if not files:
            raise HubDatasetError(
                f"no files for split {split!r} of task {recipe.name!r} in data_dir={str(data_dir)!r}; expected "
                f"e.g. {split}.parquet, {split}-00000-of-00001.parquet or {split}.jsonl"
                + (f" (also looked in {recipe.config}/)" if recipe.config else "") + "."
            )
        out[split] = _read_files(files)
    return out


def _as_paths(files) -> list[Path]:
    return [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(f) for f in files]


def _read_files(files: list[Path]) -> Dataset:
    """Read parquet / jsonl / csv files into one in-memory Dataset (pyarrow; no cache files)."""
    tables = []
    for f in files:
        if not f.is_file():
            raise HubDatasetError(f"data file {str(f)!r} does not exist.")
        suffix = f.suffix.lower()
        if suffix == ".parquet":
            tables.append(pq.read_table(f))
        elif suffix in (".jsonl", ".json"):
            tables.append(pa_json.read_json(f))
        elif suffix == ".csv":
            tables.append(pa_csv.read_csv(f))
        else:
            raise HubDatasetError(f"data file {str(f)!r}: unsupported format {suffix!r}; use parquet, jsonl or csv.")
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    return Dataset(table.replace_schema_metadata(None))
