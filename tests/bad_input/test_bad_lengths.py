"""The library's contract for lengths that do not fit the model's context.

A prompt longer than the whole context is refused when it is attached to the model, with a message that
names the limit and the fix (it used to surface at the first forward pass as "Keep the input to -44
tokens"). A text longer than the context is cut to fit, as before; when the user did not choose the cut
(no ``max_length``, or one past the context), train() and evaluate() say so once per call, with how many
examples are cut and how to choose the cut.
"""

import re
import warnings

import pytest
import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel

from softprompt.config import PromptTuningConfig
from softprompt.evaluation import evaluate
from softprompt.prompt_embedding import PromptEmbedding
from softprompt.prompt_model import PromptModel, get_prompt_model
from softprompt.tasks.task import Task
from softprompt.testing import tiny_model, tiny_tokenizer
from softprompt.training import train

# ------------------------------------------------------------------ 1. a prompt longer than the context


@pytest.mark.parametrize("arch, name", [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM"),
                                        ("bert", "BertForSequenceClassification")])
def test_a_prompt_longer_than_the_context_is_refused_when_attached(arch, name):
    model = tiny_model(arch)  # 256 positions
    with pytest.raises(ValueError) as info:
        get_prompt_model(model, PromptTuningConfig(num_virtual_tokens=300))
    message = str(info.value)
    assert message == (f"num_virtual_tokens=300: the prompt's 300 virtual tokens alone exceed {name}'s context of "
                       "256 positions, which leaves no room for the text; use at most 255 virtual tokens (or a model "
                       "with a longer context).")


def test_a_directly_built_prompt_longer_than_the_table_gets_the_same_message_not_a_negative_length():
    model = tiny_model("gpt2")  # a learned position table of 256 rows
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=300).filled_from_model(model)
    pm = PromptModel(model, config, PromptEmbedding(config, model.get_input_embeddings()))  # skips get_prompt_model
    with pytest.raises(ValueError, match=r"300 virtual tokens alone exceed GPT2LMHeadModel's context of 256 "
                                         r"positions.*use at most 255 virtual tokens") as info:
        pm(torch.ones(1, 3, dtype=torch.long))
    assert "-44" not in str(info.value) and "Keep the input to -" not in str(info.value)


def test_a_prompt_that_fills_the_context_builds_but_a_forward_names_the_fix():
    pm = get_prompt_model(tiny_model("gpt2"), PromptTuningConfig(num_virtual_tokens=256))
    with pytest.raises(ValueError, match=r"256 virtual tokens alone fill GPT2LMHeadModel's context of 256 positions"
                                         r".*use at most 255 virtual tokens"):
        pm(torch.ones(1, 1, dtype=torch.long))


def test_relative_positions_have_no_context_to_exceed():
    pm = get_prompt_model(tiny_model("t5"), PromptTuningConfig(num_virtual_tokens=300))  # T5: relative buckets
    assert pm.num_virtual_tokens == 300


# ------------------------------------------------------------------ 2. a text longer than the context

LONG = " ".join(["the movie was really good and the story was very fine"] * 12)  # ~144 tokens
CUT = r"2 of 4 {what} are longer than the model's context of 32 tokens \(the prompt's 4 virtual tokens{new} included\)"


def _small_gpt2_prompt(T=4):
    """A GPT-2 with a context of 32 positions, and a tokenizer with no limit of its own."""
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=32,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    pm = get_prompt_model(GPT2LMHeadModel(cfg).eval(), PromptTuningConfig(num_virtual_tokens=T))
    assert tok.model_max_length > 1e20
    return pm, tok


def _task(texts, labels):
    data = Dataset.from_dict({"text": texts, "label": labels})
    return Task(name="toy", family="sentiment", description="toy", splits={"train": data, "validation": data},
                template="review : {text} . sentiment :", label_words=["negative", "positive"])


def _cut_warnings(call):
    """The cut warnings ``call()`` emits, every one recorded (no deduplication by location)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if "are cut to fit" in str(w.message)]


def test_training_on_text_longer_than_the_context_warns_once_with_the_count():
    pm, tok = _small_gpt2_prompt()
    task = _task([LONG, "bad film", LONG + " bad", "good"], [1, 0, 0, 1])
    caught = _cut_warnings(lambda: train(pm, tok, task, steps=3, batch_size=2, progress=False))
    assert len(caught) == 1 and caught[0].category is UserWarning
    message = str(caught[0].message)
    assert re.match(CUT.format(what="training examples", new=""), message), message
    assert "the template and the label word kept" in message
    assert "Pass max_length (e.g. max_length=32, this same cut, or less) to choose the cut yourself." in message
    assert caught[0].filename == __file__  # it points at the line that called train()


@pytest.mark.parametrize("method, new", [("rank", ""), ("generate", " and 2 new tokens")])
def test_evaluating_text_longer_than_the_context_warns_once_with_the_count(method, new):
    pm, tok = _small_gpt2_prompt()
    task = _task([LONG, "bad film", LONG + " bad", "good"], [1, 0, 0, 1])
    caught = _cut_warnings(lambda: evaluate(pm, tok, task, split="validation", method=method, batch_size=1))
    assert len(caught) == 1, [str(w.message) for w in caught]  # one per call, not one per batch
    assert re.match(CUT.format(what="'validation' examples", new=new), str(caught[0].message))
    assert caught[0].filename == __file__


def test_a_chosen_max_length_or_text_that_fits_is_cut_silently():
    pm, tok = _small_gpt2_prompt()
    long_task = _task([LONG, "bad film", LONG + " bad", "good"], [1, 0, 0, 1])
    assert not _cut_warnings(lambda: train(pm, tok, long_task, steps=1, batch_size=2, max_length=20, progress=False))
    assert not _cut_warnings(lambda: evaluate(pm, tok, long_task, split="validation", max_length=32))
    short_task = _task(["good movie", "bad film"], [1, 0])
    assert not _cut_warnings(lambda: train(pm, tok, short_task, steps=1, batch_size=2, progress=False))
    assert not _cut_warnings(lambda: evaluate(pm, tok, short_task, split="validation"))


def test_a_max_length_past_the_context_still_warns_that_the_context_cuts():
    pm, tok = _small_gpt2_prompt()
    task = _task([LONG, "bad film", LONG + " bad", "good"], [1, 0, 0, 1])
    caught = _cut_warnings(lambda: evaluate(pm, tok, task, split="validation", max_length=100))
    assert len(caught) == 1 and "are cut to fit, not to max_length=100" in str(caught[0].message)


def test_a_classifier_names_the_tokenizer_side_it_cuts():
    pm = get_prompt_model(tiny_model("bert"), PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    tok = tiny_tokenizer()
    task = _task([" ".join(["good"] * 400), "bad"], [1, 0])
    caught = _cut_warnings(lambda: train(pm, tok, task, steps=1, batch_size=2, progress=False))
    assert len(caught) == 1
    assert str(caught[0].message).startswith("1 of 2 training examples are longer than the model's context of 256 "
                                             "tokens (the prompt's 4 virtual tokens included) and are cut to fit: "
                                             "the tokenizer drops their last tokens (truncation_side='right').")


def test_too_long_finds_the_rows_a_batch_cuts():
    _, tok = _small_gpt2_prompt()
    task = _task([LONG, "bad film"], [1, 0])
    assert task.too_long(task["train"], tok, max_length=32, num_virtual_tokens=4, with_targets=True) == [True, False]
    assert task.too_long(task["train"], tok) == [False, False]  # no limit: nothing is cut
    batch = task.causal_batch(task["train"], tok, max_length=32, num_virtual_tokens=4)
    assert batch["attention_mask"].sum(1).tolist()[0] == 32 - 4  # the row it flags is the row cut to fit


def test_the_trainer_collator_warns_once_at_the_first_cut_batch_and_not_for_a_chosen_max_length():
    from softprompt.hf_trainer import TaskCollator

    pm, tok = _small_gpt2_prompt()
    task = _task(["good", "bad film", LONG, LONG + " bad"], [1, 0, 1, 0])
    rows = [task.splits["train"][i] for i in range(4)]
    collate = TaskCollator(task, tok, pm)
    caught = _cut_warnings(lambda: [collate(rows[:2]), collate(rows[2:]), collate(rows[2:])])
    assert len(caught) == 1, [str(w.message) for w in caught]  # the first batch fits; the second cuts; then quiet
    expected = CUT.format(what="examples in this batch", new="").replace("2 of 4", "2 of 2")
    assert re.match(expected, str(caught[0].message))
    assert not _cut_warnings(lambda: TaskCollator(task, tok, pm, max_length=32)(rows[2:]))
