"""The library's contract for bad task data: a clear error naming the cause, never a silent wrong result.

Text columns hold strings (a ``None`` would become the word "None"); labels are integer class ids
in range (no floats, strings, bools or ``None``); batches for train() and evaluate() fit the model's
context (the text is cut, the label word kept) and use only token ids the model has.
"""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel

from softprompt.config import PromptTuningConfig
from softprompt.context import batch_max_length, context_size
from softprompt.evaluation import evaluate
from softprompt.prompt_model import get_prompt_model
from softprompt.tasks.task import Task, TaskDataError
from softprompt.testing import tiny_model, tiny_tokenizer
from softprompt.batching import Batches
from softprompt.training import TrainingConfig, train

LONG = " ".join(["the movie was really good and the story was very fine"] * 12)  # ~144 words


def make_task(train=None, template="review : {text} . sentiment :", label_words=("negative", "positive"), **kw):
    train = train if train is not None else Dataset.from_dict({"text": ["good movie", "bad film"], "label": [1, 0]})
    words = list(label_words) if isinstance(label_words, tuple) else label_words  # a str stays a str
    return Task(name="toy", family="sentiment", description="toy", splits={"train": train, **kw},
                template=template, label_words=words)


def rows(texts, labels, **cols):
    return Dataset.from_dict({"text": texts, "label": labels, **cols})


def small_gpt2(n_positions=32, vocab_size=None):
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab_size or len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=n_positions,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return GPT2LMHeadModel(cfg).eval()


def prompt(model, T=4, task_type="CAUSAL_LM"):
    return get_prompt_model(model, PromptTuningConfig(task_type=task_type, num_virtual_tokens=T))


# ------------------------------------------------------------------ 1. text columns hold strings

def test_none_text_names_task_split_row_and_column():
    with pytest.raises(ValueError, match=r"split 'train' of task 'toy': column 'text' must hold strings.*row 1"):
        make_task(rows(["good", None, "bad"], [1, 0, 0]))


def test_none_text_b_of_a_pair_task_is_refused():
    with pytest.raises(TypeError, match=r"column 'text_b'.*row 0 is None"):
        make_task(rows(["a"], [0], text_b=[None]), template="{text} ? {text_b} :", label_words=("no", "yes"))


def test_non_string_text_column_is_refused():
    with pytest.raises(ValueError, match=r"column 'text' must hold strings, but row 0 is 5 \(int\)"):
        make_task(rows([5, 6], [0, 1]))


def test_format_refuses_none_in_hand_built_examples(tokenizer):
    task = make_task()
    with pytest.raises(ValueError, match=r"field 'text' of the example is None.*not a string"):
        task.causal_batch([{"text": None, "label": 0}], tokenizer)
    with pytest.raises(ValueError, match=r"lacks fields \['text'\]"):
        task.format({"label": 0})


# ------------------------------------------------------------------ 2. labels are integer class ids

@pytest.mark.parametrize("labels,cause", [
    ([0, 0.5], r"row 1: 0.5"),
    ([1.0, 0.0], r"row 0: 1.0.*cast_column\('label'"),
    (["0", "1"], r"row 0: '0'.*Map the strings"),
    ([0, None], r"row 1: None.*unlabelled"),
    ([True, False], r"row 0: True.*Booleans are not class ids"),
])
def test_labels_must_be_integer_class_ids(labels, cause):
    prefix = r"split 'train' of task 'toy': labels must be integer class ids 0..1.*"
    with pytest.raises(ValueError, match=prefix + cause):
        make_task(rows(["good", "bad"], labels))


def test_a_fractional_label_is_named_before_an_integer_valued_float():
    with pytest.raises(ValueError, match=r"row 2: 0.5") as info:
        make_task(rows(["a", "b", "c"], [1.0, 0.0, 0.5]))
    assert "cast_column" not in str(info.value)  # casting would truncate 0.5 to 0


def test_string_labels_are_also_a_type_error():
    with pytest.raises(TypeError):  # what min() raised before: code catching TypeError still works
        make_task(rows(["good", "bad"], ["0", "1"]))
    assert issubclass(TaskDataError, ValueError) and issubclass(TaskDataError, TypeError)


def test_numpy_int_labels_are_fine(tokenizer):
    task = make_task(rows(["good", "bad"], [np.int64(1), np.int32(0)]))
    batch = task.causal_batch([{"text": "good", "label": np.int64(1)}], tokenizer)
    assert batch["class_labels"].tolist() == [1]


@pytest.mark.parametrize("label", [0.5, 1.0, "1", None, True])
def test_hand_built_rows_with_bad_labels_are_refused(tokenizer, label):
    task = make_task()
    with pytest.raises(ValueError, match=r"is not an integer class id 0..1"):
        task.causal_batch([{"text": "good", "label": label}], tokenizer)
    with pytest.raises(ValueError, match=r"is not an integer class id"):
        task.causal_batch([{"text": "good", "label": label}], tokenizer, with_targets=False)


# ------------------------------------------------------------------ 3. the model's context

def test_context_size_reads_the_model_config():
    assert context_size(small_gpt2(n_positions=48)) == 48  # n_positions
    assert context_size(tiny_model("llama")) == 256  # max_position_embeddings
    assert context_size(tiny_model("bert")) == 256
    t5 = tiny_model("t5")
    t5.config.n_positions = 512  # pretrained T5 configs carry it, but relative positions have no limit
    assert context_size(t5) is None
    assert context_size(prompt(small_gpt2(n_positions=40))) == 40  # through a PromptModel


def test_batch_max_length_caps_at_the_context_and_refuses_a_prompt_that_fills_it(tokenizer):
    model = small_gpt2(n_positions=32)
    assert tokenizer.model_max_length > 1e20  # no limit from the tokenizer: the model's context applies
    assert batch_max_length(model, tokenizer) == 32
    assert batch_max_length(model, tokenizer, max_length=20) == 20
    assert batch_max_length(model, tokenizer, max_length=1000) == 32
    with pytest.raises(ValueError, match=r"T=32 virtual tokens but the model's context is 32 positions"):
        batch_max_length(model, tokenizer, num_virtual_tokens=32)


def test_training_batches_fit_the_context_and_keep_the_label_word(tokenizer):
    pm = prompt(small_gpt2(n_positions=32), T=4)
    task = make_task(rows([LONG, "bad film"], [1, 0]))
    batches = Batches(pm, tokenizer, [task], [[0, 1]], TrainingConfig(batch_size=2, seed=0))
    batch = batches(1)
    assert batch["input_ids"].shape[1] == 32 - 4
    positive = tokenizer.convert_tokens_to_ids("positive")
    negative = tokenizer.convert_tokens_to_ids("negative")
    last = batch["labels"][:, -1].tolist()
    assert sorted(last) == sorted([positive, negative])  # every row still ends with its label word
    tail = tokenizer(". sentiment :", add_special_tokens=False)["input_ids"]
    long_row = last.index(positive)
    assert batch["input_ids"][long_row, -len(tail) - 1:-1].tolist() == tail  # the template's end survives


def test_gpt2_with_a_small_context_trains_and_evaluates_on_long_text(tokenizer):
    pm = prompt(small_gpt2(n_positions=32), T=4)
    data = rows([LONG, "bad film", LONG + " bad", "good"], [1, 0, 0, 1])
    task = make_task(data, validation=data)
    history = train(pm, tokenizer, task, steps=2, batch_size=4, progress=False, eval_every=2)
    assert len(history.loss) == 2 and "accuracy" in history.metrics[-1][1]
    for method in ("rank", "generate"):
        assert evaluate(pm, tokenizer, task, split="validation", method=method)["n"] == 4
    assert evaluate(pm, tokenizer, task, split="validation", use_cache=False)["n"] == 4
    assert evaluate(small_gpt2(n_positions=32), tokenizer, task, split="validation")["n"] == 4  # plain model


def test_a_prompt_that_leaves_no_room_is_refused_with_the_numbers(tokenizer):
    task = make_task(rows([LONG, "bad"], [1, 0]))
    with pytest.raises(ValueError, match=r"T=30 virtual tokens but the model's context is 30 positions"):
        train(prompt(small_gpt2(n_positions=30), T=30), tokenizer, task, steps=1, batch_size=2, progress=False)
    with pytest.raises(ValueError, match=r"template alone takes \d+ tokens.*with 26 virtual tokens.*context of 30"):
        train(prompt(small_gpt2(n_positions=30), T=26), tokenizer, task, steps=1, batch_size=2, progress=False)


def test_bert_classification_batches_fit_the_context(tokenizer):
    model = tiny_model("bert")
    model.config.max_position_embeddings = 256
    pm = prompt(model, T=4, task_type="SEQ_CLS")
    huge = " ".join(["good"] * 400)
    task = make_task(rows([huge, "bad"], [1, 0]), validation=rows([huge, "bad"], [1, 0]))
    train(pm, tokenizer, task, steps=1, batch_size=2, progress=False)
    assert evaluate(pm, tokenizer, task, split="validation")["n"] == 2


# ------------------------------------------------------------------ 4. token ids the model has

def test_a_tokenizer_bigger_than_the_vocabulary_is_refused(tokenizer):
    task = make_task(rows(["good movie", "bad film"], [1, 0]), validation=rows(["good", "bad"], [1, 0]))
    pm = prompt(small_gpt2(n_positions=64, vocab_size=10), T=2)
    cause = r"token id \d+ but the model's embedding matrix has only 10 rows.*model's own tokenizer.*resize_token"
    with pytest.raises(ValueError, match=cause):
        train(pm, tokenizer, task, steps=1, batch_size=2, progress=False)
    with pytest.raises(ValueError, match=cause):
        evaluate(pm, tokenizer, task, split="validation")


# ------------------------------------------------------------------ 5. other task-data entry points

def test_label_words_must_be_a_list_of_distinct_words():
    with pytest.raises(ValueError, match=r"must be a list of words"):
        make_task(label_words="positive")
    with pytest.raises(ValueError, match=r"at least two label words"):
        make_task(label_words=[])
    with pytest.raises(ValueError, match=r"repeat a word"):
        make_task(label_words=["good", "good"])


def test_a_missing_label_column_is_named():
    with pytest.raises(ValueError, match=r"lacks columns \['label'\]"):
        make_task(Dataset.from_dict({"text": ["a", "b"]}))


def test_a_classification_head_with_other_classes_is_refused(tokenizer):
    task = make_task(rows(["good", "bad"], [1, 0]), validation=rows(["good", "bad"], [1, 0]),
                     label_words=("negative", "neutral", "positive"))
    pm = prompt(tiny_model("bert", num_labels=2), T=2, task_type="SEQ_CLS")
    with pytest.raises(ValueError, match=r"num_labels=2 but task 'toy' has 3 classes"):
        train(pm, tokenizer, task, steps=1, batch_size=2, progress=False)
    with pytest.raises(ValueError, match=r"num_labels=2 but task 'toy' has 3 classes"):
        evaluate(pm, tokenizer, task, split="validation")
