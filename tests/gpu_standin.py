"""Stand-ins for the gpu profile on a CPU: a tiny SmolLM2-shaped model and hub-shaped datasets.

``tests/test_gpu_profile_notebooks.py`` runs every notebook under ``SOFTPROMPT_PROFILE=gpu`` with
these in place of the hub: the code path, the knobs and the task names of the GPU run, but a model
that loads in a second and datasets of a few dozen rows.

* :func:`write_standin_model`: a randomly initialized ``LlamaForCausalLM`` (the family of
  SmolLM2-360M) with SmolLM2's real tokenizer, read from the offline default model, saved as a
  local directory for ``SOFTPROMPT_MODEL``. Wide enough (``d=512``) that random directions stay far
  from every vocabulary row (best cosine ~0.2 for d=512), as in the real model, but one layer with
  one narrow head, so that a training step costs milliseconds.
* :func:`write_hub_data`: every hub dataset the gpu profile reads, written as the hub lays them
  out (parquet, the real column names, ``ClassLabel`` features, GLUE's unlabelled test splits with
  ``label == -1``, BoolQ's bool ``answer``), one folder per task for ``SOFTPROMPT_DATA_DIR``.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from datasets import ClassLabel, Dataset, Features, Value
from transformers import LlamaConfig, LlamaForCausalLM

from softprompt.models import load_tokenizer

TRAIN_ROWS, EVAL_ROWS = 80, 24  # per task: enough for batch_size 32 and the 32-shot target

_POSITIVE = "a warm funny moving brilliant delightful sharp tender charming gripping".split()
_NEGATIVE = "a dull clumsy tedious flat lifeless muddled bland tiresome shallow".split()
_TOPICS = {  # AG News classes
    "world": "the minister the election the border the embassy the summit".split(),
    "sports": "the match the coach the league the striker the season".split(),
    "business": "the shares the bank the merger the profits the market".split(),
    "science": "the software the chip the telescope the vaccine the robot".split(),
}
_FILLER = "this that story film plot scene cast it was is really quite rather very".split()


def _sentence(rng: random.Random, words: list[str], n: int = 6) -> str:
    return " ".join(rng.choice(_FILLER) if i % 2 else rng.choice(words) for i in range(n)) + "."


def write_standin_model(path: Path, *, hidden_size: int = 512, seed: int = 0) -> Path:
    """A tiny random Llama with SmolLM2's tokenizer, saved to ``path`` (config, weights, tokenizer)."""
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=1, num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # the pad row starts at zero (padding_idx); a trained model has no zero row
        model.get_input_embeddings().weight[tokenizer.pad_token_id].normal_(0, config.initializer_range)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _labels(names) -> ClassLabel:
    return ClassLabel(names=list(names))


def _glue(rng, n, label_names, make_row, *, unlabelled: bool = False) -> list[dict]:
    rows = []
    for i in range(n):
        label = rng.randrange(len(label_names))
        rows.append({**make_row(rng, label), "label": -1 if unlabelled else label, "idx": i})
    return rows


def _pair(first: str, second: str):
    """Rows of a sentence-pair task: the label decides whether the two texts share their words."""
    def make(rng, label):
        words = _POSITIVE if label == 0 else _NEGATIVE
        other = _NEGATIVE if label == 0 else _POSITIVE
        return {first: _sentence(rng, words)[:-1] + "?" if "question" in first else _sentence(rng, words),
                second: _sentence(rng, words if rng.random() < 0.8 else other)}
    return make


def _sentiment(column: str):
    def make(rng, label):
        return {column: _sentence(rng, _POSITIVE if label == 1 else _NEGATIVE)}
    return make


# task name -> (config subfolder or None, {hub split: labelled?}, label names, row maker, extra columns' features)
_TASKS = {
    "sst2": ("sst2", {"train": True, "validation": True, "test": False}, ["negative", "positive"],
             _sentiment("sentence"), {"sentence": Value("string")}),
    "mnli": ("mnli", {"train": True, "validation_matched": True, "validation_mismatched": True,
                      "test_matched": False, "test_mismatched": False},
             ["entailment", "neutral", "contradiction"], _pair("premise", "hypothesis"),
             {"premise": Value("string"), "hypothesis": Value("string")}),
    "qnli": ("qnli", {"train": True, "validation": True, "test": False}, ["entailment", "not_entailment"],
             _pair("question", "sentence"), {"question": Value("string"), "sentence": Value("string")}),
    "qqp": ("qqp", {"train": True, "validation": True, "test": False}, ["not_duplicate", "duplicate"],
            _pair("question1", "question2"), {"question1": Value("string"), "question2": Value("string")}),
}


def _write(ds: Dataset, folder: Path, split: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))


def write_hub_data(root: Path, *, seed: int = 0) -> Path:
    """Hub-shaped local copies of every hub task of the gpu profile under ``root/<task>/``."""
    rng = random.Random(seed)
    for name, (config, splits, label_names, make, columns) in _TASKS.items():
        features = Features({**columns, "label": _labels(label_names), "idx": Value("int32")})
        for split, labelled in splits.items():
            n = TRAIN_ROWS if split == "train" else EVAL_ROWS
            rows = _glue(rng, n, label_names, make, unlabelled=not labelled)
            _write(Dataset.from_list(rows, features=features), root / name / config, split)
    sentiment = Features({"text": Value("string"), "label": _labels(["neg", "pos"])})
    for split in ("train", "validation", "test"):  # rotten_tomatoes: three labelled splits
        rows = [{"text": _sentiment("text")(rng, y)["text"], "label": y}
                for y in (rng.randrange(2) for _ in range(TRAIN_ROWS if split == "train" else EVAL_ROWS))]
        _write(Dataset.from_list(rows, features=sentiment), root / "rotten_tomatoes", split)
    topics = Features({"text": Value("string"), "label": _labels(["World", "Sports", "Business", "Sci/Tech"])})
    for split in ("train", "test"):
        rows = [{"text": _sentence(rng, list(_TOPICS.values())[y]), "label": y}
                for y in (rng.randrange(4) for _ in range(TRAIN_ROWS if split == "train" else EVAL_ROWS))]
        _write(Dataset.from_list(rows, features=topics), root / "ag_news", split)
    boolq = Features({"question": Value("string"), "answer": Value("bool"), "passage": Value("string")})
    for split in ("train", "validation"):
        rows = []
        for _ in range(TRAIN_ROWS if split == "train" else EVAL_ROWS):
            answer = rng.random() < 0.6  # BoolQ leans towards yes
            rows.append({"question": "is it " + rng.choice(_POSITIVE if answer else _NEGATIVE),
                         "answer": answer, "passage": _sentence(rng, _POSITIVE if answer else _NEGATIVE, 10)})
        _write(Dataset.from_list(rows, features=boolq), root / "boolq", split)
    return root


HUB_TASKS = ("sst2", "rotten_tomatoes", "ag_news", "boolq", "mnli", "qnli", "qqp")
