"""Tasks: built-in generated data, hub recipes on local fixtures, the Task casting and its batches."""

from pathlib import Path

import pytest
import torch
from datasets import Dataset

from softprompt import Task, list_tasks, load_task
from softprompt.tasks import TaskNotFoundError
from softprompt.tasks.builtin import BUILTIN_TASKS, build_splits
from softprompt.tasks.hub import HUB_RECIPES, HubDatasetError
from softprompt.testing import tiny_model

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
BUILTIN = list(BUILTIN_TASKS)


def _toy(label_words=("negative", "positive"), template="Review: {text}\nSentiment:", **splits):
    splits = splits or {"train": Dataset.from_dict({"text": ["good movie", "bad movie"], "label": [1, 0]})}
    return Task("toy", "sentiment", "A toy task.", splits, template, list(label_words), source="custom")


# ------------------------------------------------------------------ registry


def test_list_tasks_has_builtin_families_and_hub_recipes():
    builtin = list_tasks(source="builtin")
    assert len(builtin) >= 8
    assert list_tasks()[: len(builtin)] == builtin  # built-in first
    assert set(list_tasks(source="hub")) == {"sst2", "rotten_tomatoes", "ag_news", "boolq", "mnli", "qnli", "qqp"}
    assert {"sentiment_movies", "sentiment_products", "sentiment_restaurants", "arbitrary_sentiment"} <= set(
        list_tasks(family="sentiment"))
    with pytest.raises(ValueError, match="source="):
        list_tasks(source="web")


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(TaskNotFoundError) as err:
        load_task("sentiment_movie")
    msg = str(err.value)
    assert "'sentiment_movie'" in msg and "sentiment_movies" in msg and "sst2" in msg


def test_builtin_task_rejects_options():
    with pytest.raises(TypeError, match="no options"):
        load_task("topic", data_dir="x")


# ------------------------------------------------------------------ built-in data


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_splits_deterministic_disjoint_balanced(name):
    task = load_task(name)
    fresh = build_splits.__wrapped__(name)  # regenerate, bypassing the in-process cache
    seen = set()
    for split, n in BUILTIN_TASKS[name].split_sizes.items():
        cols = {c: task[split][c] for c in [*task.fields, "label"]}
        assert cols == {c: fresh[split][c] for c in cols}  # same data every time
        assert len(cols["label"]) == n
        counts = torch.bincount(torch.tensor(cols["label"]), minlength=task.num_classes)
        assert counts.tolist() == [n // task.num_classes] * task.num_classes  # exactly balanced
        keys = set(zip(*(cols[f] for f in task.fields)))
        assert len(keys) == n and not keys & seen  # unique within and across splits
        seen |= keys
    words = [len(t.split()) for t in task["train"]["text"]]
    assert 6 <= sum(words) / len(words) <= 20  # short sentences: training runs on a CPU


def test_yes_no_tasks_answer_what_the_passage_says():
    """The yn_* generators: label 0 (yes) exactly when the question's claim holds in the passage."""
    import re

    for name in ("yn_membership", "yn_colors", "yn_schedule", "yn_facts"):
        task = load_task(name)
        assert task.label_words == ["yes", "no"] and task.family == "yes_no" and len(task["test"]) >= 512
        for ex in task["train"].select(range(300)):
            text, q, yes = ex["text"], ex["text_b"], ex["label"] == 0
            if name == "yn_membership":
                thing = re.fullmatch(r"Did I pack an? (\w+)\?", q).group(1)
                holds = re.search(rf"\b{thing}\b", text) is not None
            elif name == "yn_colors":
                thing, color = re.fullmatch(r"Is the (\w+) (\w+)\?", q).groups()
                holds = f"the {thing} is {color}" in text.lower()
            elif name == "yn_schedule":
                who, event, day = re.fullmatch(r"Is (\w+)'s (.+) on (\w+)\?", q).groups()
                holds = re.search(rf"\ban? {re.escape(event)} on {day}\b", text) is not None
            else:
                m = re.fullmatch(r"Is \w+ an? (\w+)\?", q) or re.fullmatch(r"Does \w+ live in (\w+)\?", q)
                holds = re.search(rf"\b{m.group(1)}\b", text) is not None
            assert holds == yes, (name, text, q, ex["label"])
    review = load_task("yn_review")["train"]
    for text, label in zip(review["text"][:300], review["label"][:300]):
        assert not (any(w in text for w in ("awful", "terrible", "worst")) and label == 0), text


def test_intent_is_a_four_way_control_with_a_512_example_test_split():
    task = load_task("intent")
    assert task.label_words == ["weather", "music", "travel", "food"] and len(task["test"]) == 512
    for text, label in zip(task["train"]["text"][:200], task["train"]["label"][:200]):
        if "flight" in text.lower() or "playlist" in text.lower():
            assert label == (2 if "flight" in text.lower() else 1), text


def test_builtin_labels_follow_the_words():
    """Spot-check the casting: the phrase banks never mix polarities or registers."""
    for name, neg, pos in [
        ("sentiment_restaurants", ("awful", "terrible", "worst"), ("wonderful", "superb", "best")),
        ("sentiment_movies", ("yawning", "groaning", "rolling"), ("cheering", "chills", "holding its breath")),
    ]:
        ds = load_task(name)["train"]
        for text, label in zip(ds["text"][:300], ds["label"][:300]):
            assert not (any(w in text for w in neg) and label == 1), text
            assert not (any(w in text for w in pos) and label == 0), text
    formal = load_task("formality")["train"]
    assert all(("lol" in r["text"] or "thx" in r["text"]) <= (r["label"] == 1) for r in formal)
    qs = load_task("question_or_statement")["train"]
    assert all(not any(c in r["text"] for c in "?.!") for r in qs)  # word order alone decides


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_label_words_encode_on_the_tiny_tokenizer(name, tokenizer):
    ids = load_task(name).label_token_ids(tokenizer)
    assert all(len(t) == 1 for t in ids) and len({t[0] for t in ids}) == len(ids)


def test_repr_and_sample():
    task = load_task("topic")
    text = repr(task)
    for part in ("'topic'", "train=640", "validation=128", "test=256", "' politics'", "Headline:", "->"):
        assert part in text
    a, b = task.sample("train", 5, seed=3), task.sample("train", 5, seed=3)
    assert a.to_dict() == b.to_dict() and a.to_dict() != task.sample("train", 5, seed=4).to_dict()
    with pytest.raises(ValueError, match="out of range"):
        task.sample("test", 10_000)
    with pytest.raises(KeyError, match="no split 'dev'"):
        task["dev"]


# ------------------------------------------------------------------ Task validation


def test_task_validates_its_inputs():
    ok = Dataset.from_dict({"text": ["a"], "label": [0]})
    with pytest.raises(ValueError, match="is empty"):
        _toy(train=ok.select([]))
    with pytest.raises(ValueError, match="labels in \\[-1, 0\\]"):
        _toy(test=Dataset.from_dict({"text": ["a", "b"], "label": [-1, 0]}))
    with pytest.raises(ValueError, match="lacks columns \\['text'\\]"):
        _toy(train=Dataset.from_dict({"sentence": ["a"], "label": [0]}))
    with pytest.raises(ValueError, match="no \\{text\\} field"):
        _toy(template="Label:", train=ok)
    with pytest.raises(ValueError, match="only"):
        _toy(template="{text} {premise}", train=ok)
    with pytest.raises(ValueError, match="leading space|surrounding"):
        _toy(label_words=(" negative", "positive"), train=ok)
    with pytest.raises(ValueError, match="repeat"):
        _toy(label_words=("good", "good"), train=ok)


def test_label_word_missing_from_tokenizer_or_sharing_first_token(tokenizer):
    with pytest.raises(ValueError, match="'splendid'.*does not encode"):
        _toy(label_words=("splendid", "bad")).label_token_ids(tokenizer)
    clash = _toy(label_words=("good", "good-bad"))  # word-level: 'good-bad' -> good, -, bad
    with pytest.raises(ValueError, match="share a first token"):
        clash.label_token_ids(tokenizer)
    assert clash.label_token_ids(tokenizer, require_distinct_first=False)[1][0] == tokenizer.convert_tokens_to_ids(
        "good")


# ------------------------------------------------------------------ causal batches


def test_causal_batch_left_padded_target_at_the_end(tokenizer):
    task = load_task("sentiment_movies")
    rows = task["train"][:6]
    batch = task.causal_batch(rows, tokenizer)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    word_ids = [t[0] for t in task.label_token_ids(tokenizer)]
    assert ids.shape == mask.shape == labels.shape and ids.dtype == torch.long
    assert batch["class_labels"].tolist() == rows["label"]
    assert (mask[:, -1] == 1).all() and (mask[:, 0] == 0).any()  # padding on the left only
    for i in range(len(rows["label"])):
        real = int(mask[i].sum())
        assert mask[i, -real:].all() and not mask[i, :-real].any()
        assert (ids[i, :-real] == tokenizer.pad_token_id).all()
        assert ids[i, -1] == labels[i, -1] == word_ids[rows["label"][i]]  # target last
        assert (labels[i, :-1] == -100).all()
        src = tokenizer(task.format({"text": rows["text"][i]}))["input_ids"]
        assert ids[i, -real:-1].tolist() == src


def test_causal_batch_without_targets_ends_after_the_template(tokenizer):
    task = load_task("entailment")
    batch = task.causal_batch(task["test"][:4], tokenizer, with_targets=False)
    assert "labels" not in batch
    end = tokenizer(" true?", add_special_tokens=False)["input_ids"]  # "...Is the claim true?"
    assert batch["input_ids"][:, -len(end):].tolist() == [end] * 4


def test_causal_batch_accepts_dict_list_and_dataset(tokenizer):
    task = load_task("formality")
    ds = task["validation"].select(range(3))
    a = task.causal_batch(ds[:3], tokenizer)
    b = task.causal_batch(list(ds), tokenizer)
    c = task.causal_batch(ds, tokenizer)
    for k in a:
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k])
    with pytest.raises(ValueError, match="empty"):
        task.causal_batch([], tokenizer)
    with pytest.raises(TypeError, match="list of dicts"):
        task.causal_batch("a sentence", tokenizer)


def test_multi_token_target_fills_the_last_positions(tokenizer):
    task = _toy(label_words=("bad", "good-great"))  # ' good-great' -> 3 tokens
    batch = task.causal_batch(task["train"][:2], tokenizer)  # labels [1, 0]
    target = tokenizer(" good-great", add_special_tokens=False)["input_ids"]
    assert len(target) == 3
    assert batch["labels"][0, -3:].tolist() == target and (batch["labels"][0, :-3] == -100).all()
    assert (batch["labels"][1, :-1] == -100).all()


def test_truncation_cuts_the_text_not_template_or_target(tokenizer):
    long_text = " ".join(["good movie"] * 40)
    task = _toy(train=Dataset.from_dict({"text": [long_text, "bad"], "label": [1, 0]}))
    full = task.causal_batch(task["train"][:2], tokenizer)
    assert full["input_ids"].shape[1] > 60
    batch = task.causal_batch(task["train"][:2], tokenizer, max_length=30, num_virtual_tokens=8)
    ids = batch["input_ids"]
    assert ids.shape[1] == 22  # 30 - 8 virtual tokens
    head = tokenizer("Review:", add_special_tokens=False)["input_ids"]
    tail = tokenizer("\nSentiment: positive", add_special_tokens=False)["input_ids"]
    assert ids[0, : len(head)].tolist() == head and ids[0, -len(tail):].tolist() == tail
    assert batch["labels"][0, -1] == tokenizer.convert_tokens_to_ids("positive")
    # the short row is untouched
    assert torch.equal(batch["input_ids"][1][batch["attention_mask"][1].bool()],
                       full["input_ids"][1][full["attention_mask"][1].bool()])
    # the tokenizer's own limit applies when max_length is not given
    tokenizer.model_max_length = 25
    assert task.causal_batch(task["train"][:2], tokenizer)["input_ids"].shape[1] == 25
    with pytest.raises(ValueError, match="template alone"):
        task.causal_batch(task["train"][:1], tokenizer, max_length=10, num_virtual_tokens=6)


def test_truncation_of_pair_tasks_cuts_the_longer_field(tokenizer):
    task = _toy(template="A: {text} B: {text_b} Answer:", label_words=("no", "yes"),
                train=Dataset.from_dict({"text": [" ".join(["one"] * 30)], "text_b": ["two three"], "label": [1]}))
    batch = task.causal_batch(task["train"][:1], tokenizer, max_length=16)
    ids = batch["input_ids"][0].tolist()
    assert len(ids) == 16
    assert ids[-7:] == tokenizer("B: two three Answer: yes", add_special_tokens=False)["input_ids"]


def test_causal_batch_trains_a_tiny_model(tokenizer):
    """The batch is what a causal LM needs: loss over the target only, logits_to_keep covers it."""
    task = load_task("topic")
    model = tiny_model("llama")
    batch = task.causal_batch(task["train"][:4], tokenizer)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    kept = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=2)
    assert torch.isfinite(out.loss)
    assert torch.allclose(kept.logits, out.logits[:, -2:], atol=1e-5)


# ------------------------------------------------------------------ seq2seq batches


def test_seq2seq_batch_right_padded_targets_end_with_eos(tokenizer):
    task = load_task("emotion")
    rows = task["train"][:5]
    tokenizer.padding_side = "right"
    batch = task.seq2seq_batch(rows, tokenizer)
    mask, labels = batch["attention_mask"], batch["labels"]
    assert (mask[:, 0] == 1).all()  # right padding
    words = task.label_token_ids(tokenizer)
    for i, y in enumerate(rows["label"]):
        assert labels[i].tolist() == words[y] + [tokenizer.eos_token_id]
    out = tiny_model("t5")(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
    assert torch.isfinite(out.loss)
    assert "labels" not in task.seq2seq_batch(rows, tokenizer, with_targets=False)


def test_seq2seq_batch_truncates_the_encoder_side(tokenizer):
    task = _toy(train=Dataset.from_dict({"text": [" ".join(["good"] * 50)], "label": [1]}))
    batch = task.seq2seq_batch(task["train"][:1], tokenizer, max_length=20, num_virtual_tokens=5)
    assert batch["input_ids"].shape == (1, 15) and batch["labels"].shape == (1, 2)


# ------------------------------------------------------------------ hub recipes (offline, local fixtures)


@pytest.mark.parametrize("name", sorted(HUB_RECIPES))
def test_hub_recipe_loads_a_local_copy(name):
    task = load_task(name, data_dir=FIXTURES / name)
    recipe = HUB_RECIPES[name]
    assert task.source == "hub" and list(task.splits) == ["train", "validation", "test"]
    for ds in task.splits.values():
        assert set(ds.column_names) == set(task.fields) | {"label"}
        assert all(isinstance(v, int) and 0 <= v < task.num_classes for v in ds["label"])
    # test is the hub's labelled validation split, never the unlabelled GLUE test split
    test_rows = {"sst2": 4, "rotten_tomatoes": 2, "ag_news": 4, "boolq": 2, "mnli": 3, "qnli": 2, "qqp": 2}
    assert len(task["test"]) == test_rows[name]
    if recipe.split_map["validation"] is None:  # carved from train, disjoint, deterministic
        again = load_task(name, data_dir=FIXTURES / name)
        assert task["validation"].to_dict() == again["validation"].to_dict()
        train = {tuple(r.values()) for r in task["train"]}
        assert not any(tuple(r.values()) in train for r in task["validation"])
    task.format(task["train"][0])


def test_hub_recipe_column_mapping():
    boolq = load_task("boolq", data_dir=FIXTURES / "boolq")
    r = boolq["test"][0]
    assert r == {"text": "The Sun is the star at the center of the Solar System.", "text_b": "is the sun a star",
                 "label": 1}
    assert boolq.target(r["label"]) == " yes"
    mnli = load_task("mnli", data_dir=FIXTURES / "mnli")
    assert mnli["test"]["label"] == [0, 1, 2] and mnli.label_words == ["yes", "maybe", "no"]


def test_hub_recipe_data_files_and_validation_size():
    files = {"train": str(FIXTURES / "sst2" / "train.jsonl"), "validation": [FIXTURES / "sst2" / "validation.jsonl"]}
    task = load_task("sst2", data_files=files, validation_size=3)
    assert (len(task["train"]), len(task["validation"]), len(task["test"])) == (9, 3, 4)
    with pytest.raises(ValueError, match="validation_size=20"):
        load_task("sst2", data_files=files, validation_size=20)
    with pytest.raises(HubDatasetError, match="needs the hub splits"):
        load_task("sst2", data_files={"train": files["train"]})


def test_hub_recipe_missing_local_files(tmp_path):
    with pytest.raises(HubDatasetError, match="no files for split 'validation_matched'"):
        load_task("mnli", data_dir=FIXTURES / "sst2")
    with pytest.raises(HubDatasetError, match="not a directory"):
        load_task("qqp", data_dir=tmp_path / "nowhere")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    (tmp_path / "test.jsonl").write_text('{"text": "a", "label": 0}\n')
    with pytest.raises(HubDatasetError, match="lacks columns \\['sentence'\\]"):
        load_task("sst2", data_files={"train": tmp_path / "train.jsonl", "validation": tmp_path / "test.jsonl"})


def test_hub_unreachable_gives_one_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(HubDatasetError) as err:
        load_task("qnli")
    msg = str(err.value)
    for part in ("nyu-mll/glue", "'qnli'", "unreachable", "offline", "built-in", "data_dir="):
        assert part in msg


# ------------------------------------------------------------------ the default model's tokenizer


@pytest.mark.slow
def test_label_words_are_single_distinct_tokens_for_smollm2():
    from softprompt import load_tokenizer

    tok = load_tokenizer()
    for name in BUILTIN:
        task = load_task(name)
        assert all(len(t) == 1 for t in task.label_token_ids(tok)), name
        # tokenizing source and target apart gives the same pieces as tokenizing them together
        r = task["train"][0]
        joint = tok(task.format(r) + task.target(r["label"]))["input_ids"]
        batch = task.causal_batch([r], tok)
        assert batch["input_ids"][0].tolist() == joint
    for recipe in HUB_RECIPES.values():
        words = [tok(" " + w, add_special_tokens=False)["input_ids"] for w in recipe.label_words]
        assert len({w[0] for w in words}) == len(words), recipe.name
