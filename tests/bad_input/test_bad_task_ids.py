"""The library's contract for bad task ids: an MPT task id selects task k's factors (Wang et al. 2023, §3),
so only integers in 0..K-1 are accepted, everywhere a task id enters (softprompt.task_ids does the check).

A wrong type (float, bool, str, float or bool tensor) is a TypeError, a wrong value (out of range) or
shape a ValueError; each message names what was given and what to pass. Nothing is cast silently
(``0.9 -> 0``, ``True -> 1``, ``-1 -> K-1``). Valid ids (ints, numpy ints, integer tensors) work as before.
"""

import random

import numpy as np
import pytest
import torch
from datasets import Dataset

from softprompt.evaluation import evaluate
from softprompt.hf_trainer import TaskCollator
from softprompt.mpt import MPTRecipe, target_prompt_model, teacher_model
from softprompt.multitask import MultitaskPromptTuningConfig
from softprompt.neighbors import nearest_tokens, prompt_matrix
from softprompt.prefix_cache import PromptPrefixCache, shared_prompt_forward
from softprompt.prompt_model import get_prompt_model
from softprompt.serving import PromptBank
from softprompt.snapshots import PromptSnapshots
from softprompt.task_ids import as_task_ids, check_task_id
from softprompt.tasks.task import Task
from softprompt.testing import tiny_model
from softprompt.training import TrainingConfig, train

T, K, B = 4, 3, 2  # prompt length, number of tasks, batch rows

# Per-row ids for a batch of B=2 rows and K=3 tasks: (value, exception, what the message must name).
BAD_ROW_IDS = {
    "float list": ([0.9, 1.2], TypeError,
                   r"task_ids=\[0.9, 1.2\] has dtype torch.float32; task ids select a task and must be integers"),
    "float tensor": (torch.tensor([0.0, 1.0]), TypeError, r"task_ids=tensor\(\[0., 1.\]\) has dtype torch.float32"),
    "bool": (True, TypeError, "task_ids=True is a bool"),
    "bool tensor": (torch.tensor([True, False]), TypeError, r"task_ids=tensor\(\[ True, False\]\) has dtype "
                                                            "torch.bool"),
    "1.5": (1.5, TypeError, "task_ids=1.5 is a float"),
    "str": ("1", TypeError, "task_ids='1' is a str"),
    "out of range": (torch.tensor([0, 3]), ValueError, r"task_ids holds \[3\], outside 0..2.*num_tasks=3"),
    "negative": ([-1, 0], ValueError, r"task_ids holds \[-1\], outside 0..2"),
    "wrong shape": (torch.tensor([[0, 1]]), ValueError,
                    r"task_ids=tensor\(\[\[0, 1\]\]\) has shape \(1, 2\); expected \(2,\), one id per row"),
}
# One id (evaluate, train, caches, banks, ...), K=3 tasks.
BAD_TASK_ID = {
    "float list": ([0.9, 1.2], TypeError, r"task_id=\[0.9, 1.2\] is a list; task ids .* must be integers"),
    "float tensor": (torch.tensor(1.0), TypeError, r"task_id=tensor\(1.\) has dtype torch.float32"),
    "bool": (True, TypeError, "task_id=True is a bool"),
    "bool tensor": (torch.tensor(True), TypeError, r"task_id=tensor\(True\) has dtype torch.bool"),
    "1.5": (1.5, TypeError, "task_id=1.5 is a float"),
    "numpy float": (np.float64(0.5), TypeError, "task_id=.*0.5.* is a float64"),
    "out of range": (3, ValueError, r"task_id=3 is not a task of this prompt.*num_tasks=3; use a task id in 0..2"),
    "negative": (-1, ValueError, r"task_id=-1 is not a task of this prompt"),
    "wrong shape": (torch.tensor([0, 1]), ValueError,
                    r"task_id=tensor\(\[0, 1\]\) has shape \(2,\); it names one task"),
}
# Where the task count is not known yet (a config), only the type and the sign are checked.
BAD_TASK_ID_NO_RANGE = {k: v for k, v in BAD_TASK_ID.items() if k != "out of range"}
BAD_TASK_ID_NO_RANGE["negative"] = (-1, ValueError, r"task_id=-1 is not a task.*task ids are >= 0")

rows = pytest.mark.parametrize("bad, error, match", BAD_ROW_IDS.values(), ids=BAD_ROW_IDS.keys())
one = pytest.mark.parametrize("bad, error, match", BAD_TASK_ID.values(), ids=BAD_TASK_ID.keys())
one_no_range = pytest.mark.parametrize("bad, error, match", BAD_TASK_ID_NO_RANGE.values(),
                                       ids=BAD_TASK_ID_NO_RANGE.keys())


def mpt_config(**kw):
    return MultitaskPromptTuningConfig(**{**dict(task_type="CAUSAL_LM", num_virtual_tokens=T, num_tasks=K,
                                                 num_ranks=1, seed=0, task_factor_init="PEFT"), **kw})


@pytest.fixture
def pm():
    return get_prompt_model(tiny_model("llama"), mpt_config()).eval()


def batch(tokenizer):
    enc = tokenizer(["good movie", "bad"], return_tensors="pt", padding=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}  # (B, L)


def toy_task(n=8):
    rng = random.Random(0)
    words = "the movie film was good bad fine awful".split()
    data = Dataset.from_list([{"text": " ".join(rng.sample(words, 3)), "label": i % 2} for i in range(n)])
    return Task("toy", "sentiment", "a toy task", {"train": data, "test": data}, "review : {text} sentiment :",
                ["negative", "positive"], source="custom")


# ----------------------------------------------------------------------------- per-row ids
@rows
def test_prompt_model_forward(pm, tokenizer, bad, error, match):
    with pytest.raises(error, match=match):
        pm(**batch(tokenizer), task_ids=bad)


@rows
def test_prompt_model_get_prompt(pm, bad, error, match):
    with pytest.raises(error, match=match):
        pm.get_prompt(B, task_ids=bad)


@rows
def test_prompt_model_generate(pm, tokenizer, bad, error, match):
    with pytest.raises(error, match=match):
        pm.generate(**batch(tokenizer), task_ids=bad, max_new_tokens=1)


@rows
def test_multitask_prompt_embedding_forward(pm, bad, error, match):
    indices = torch.arange(T).expand(B, -1)  # (B, T)
    with pytest.raises(error, match=match):
        pm.prompt_encoder(indices, bad)


@rows
def test_teacher_bank_forward(bad, error, match):
    teachers = teacher_model(tiny_model("llama"), [torch.randn(T, 32) for _ in range(K)])
    indices = torch.arange(T).expand(B, -1)  # (B, T)
    with pytest.raises(error, match=match):
        teachers.prompt_encoder(indices, bad)
    with pytest.raises(error, match=match):
        teachers.get_prompt(B, task_ids=bad)


@rows
def test_as_task_ids(bad, error, match):
    with pytest.raises(error, match=match):
        as_task_ids(bad, B, K)


# ----------------------------------------------------------------------------- one task id
@one
def test_task_prompt_and_task_matrix(pm, bad, error, match):
    for read in (pm.prompt_encoder.task_prompt, pm.prompt_encoder.task_matrix):
        with pytest.raises(error, match=match):
            read(bad)


@one
def test_evaluate(pm, tokenizer, bad, error, match):
    for use_cache in (True, False):
        with pytest.raises(error, match=match):
            evaluate(pm, tokenizer, toy_task(), use_cache=use_cache, task_id=bad)


@one
def test_train(pm, tokenizer, bad, error, match):
    before = pm.prompt_encoder.prefix_task_cols.detach().clone()  # (K, T, r)
    with pytest.raises(error, match=match):
        train(pm, tokenizer, toy_task(), steps=1, batch_size=2, progress=False, task_id=bad)
    assert torch.equal(pm.prompt_encoder.prefix_task_cols, before)  # refused before any step


@one_no_range
def test_training_config(bad, error, match):
    with pytest.raises(error, match=match):
        TrainingConfig(task_id=bad)


def test_train_refuses_more_tasks_than_the_prompt_has(pm, tokenizer):
    with pytest.raises(ValueError, match=r"task_ids \(task k of the list trains id k\) holds \[3\], outside 0..2"):
        train(pm, tokenizer, [toy_task()] * 4, steps=1, batch_size=2, progress=False)


@one
def test_prompt_prefix_cache(pm, bad, error, match):
    with pytest.raises(error, match=match):
        PromptPrefixCache(pm, task_id=bad)


@one
def test_shared_prompt_forward(pm, tokenizer, bad, error, match):
    b = batch(tokenizer)
    with pytest.raises(error, match=match):
        shared_prompt_forward(pm, b["input_ids"], b["attention_mask"], b["input_ids"], task_id=bad)


@one
def test_prompt_bank_add(pm, tokenizer, bad, error, match):
    with pytest.raises(error, match=match):
        PromptBank(pm.base_model, tokenizer).add("mpt", pm, task_id=bad)


@one
def test_nearest_tokens_and_prompt_matrix(pm, tokenizer, bad, error, match):
    for source in (pm, pm.prompt_encoder):
        with pytest.raises(error, match=match):
            prompt_matrix(source, task_id=bad)
        with pytest.raises(error, match=match):
            nearest_tokens(source, pm.base_model, tokenizer, task_id=bad)


@one
def test_task_collator(pm, tokenizer, bad, error, match):
    with pytest.raises(error, match=match):
        TaskCollator(toy_task(), tokenizer, pm, task_id=bad)


@one_no_range
def test_prompt_snapshots(bad, error, match):
    with pytest.raises(error, match=match):
        PromptSnapshots(task_id=bad)


@one
def test_check_task_id(bad, error, match):
    with pytest.raises(error, match=match):
        check_task_id(bad, K)


# ----------------------------------------------------------------------------- MPT source task indices
@one_no_range
def test_mpt_source_task_indices(bad, error, match):
    """``prompt_tuning_init_task`` and ``target_init`` name a source task: the same check, under their names."""
    for name, make in (("prompt_tuning_init_task", lambda v: mpt_config(prompt_tuning_init_task=v)),
                       ("target_init", lambda v: MPTRecipe(target_init=v))):
        with pytest.raises(error, match=match.replace("task_id", name)):
            make(bad)


def test_source_task_index_out_of_the_source_range(pm):
    source = pm.prompt_encoder.adapter_tensors()  # K=3 source tasks
    with pytest.raises(ValueError, match=r"init=3 is not a task of the source.*num_tasks=3; use a task id in 0..2"):
        target_prompt_model(tiny_model("llama"), source, init=np.int64(3))
    target = get_prompt_model(tiny_model("llama"), mpt_config(num_tasks=1))
    with pytest.raises(ValueError, match=r"prompt_tuning_init_task=3 is not a task of the source.*num_tasks=3"):
        target.prompt_encoder.init_from_source(source, "EXACT_SOURCE_TASK", task=3)
    with pytest.raises(TypeError, match="prompt_tuning_init_task=True is a bool"):
        target.prompt_encoder.init_from_source(source, "EXACT_SOURCE_TASK", task=True)


# ----------------------------------------------------------------------------- a single-task prompt
def test_a_task_id_for_a_single_task_prompt_is_refused(tokenizer):
    from softprompt.config import PromptTuningConfig

    vanilla = get_prompt_model(tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T))
    for call in (lambda: evaluate(vanilla, tokenizer, toy_task(), task_id=0),
                 lambda: PromptPrefixCache(vanilla, task_id=0),
                 lambda: PromptBank(vanilla.base_model, tokenizer).add("v", vanilla, task_id=0),
                 lambda: prompt_matrix(vanilla, task_id=0)):
        with pytest.raises(ValueError, match=r"task_id=0 was given but .* is not multitask \(not MPT\).*task_id=None"):
            call()


def test_a_missing_task_id_names_the_fix(pm, tokenizer):
    with pytest.raises(ValueError, match=r"task_id is required: .* pass task_id=k, an int in 0..2"):
        evaluate(pm, tokenizer, toy_task())
    with pytest.raises(ValueError, match=r"task_ids is missing: .* task_ids=0 for the whole batch"):
        pm.get_prompt(B)


# ----------------------------------------------------------------------------- valid ids still work
@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8])
def test_integer_tensors_of_every_dtype_work(pm, tokenizer, dtype):
    ref = pm.get_prompt(B, task_ids=torch.tensor([2, 0]))  # (B, T, d)
    torch.testing.assert_close(pm.get_prompt(B, task_ids=torch.tensor([2, 0], dtype=dtype)), ref, rtol=0, atol=0)
    torch.testing.assert_close(pm.prompt_encoder(torch.arange(T).expand(B, -1), torch.tensor([2, 0], dtype=dtype)),
                               ref, rtol=0, atol=0)
    b = batch(tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(pm(**b, task_ids=torch.tensor([2, 0], dtype=dtype)).logits,
                                   pm(**b, task_ids=torch.tensor([2, 0])).logits, rtol=0, atol=0)


@pytest.mark.parametrize("ids", [[1, 1], (1, 1), np.array([1, 1]), np.array([1, 1], dtype=np.int32), 1, np.int64(1),
                                 torch.tensor(1), torch.tensor(1, dtype=torch.int32)],
                         ids=["list", "tuple", "numpy array", "numpy int32 array", "int", "numpy int", "0-d tensor",
                              "0-d int32 tensor"])
def test_ints_lists_and_numpy_ints_give_the_same_prompt(pm, ids):
    ref = pm.get_prompt(B, task_ids=torch.tensor([1, 1]))  # (B, T, d)
    got = pm.get_prompt(B, task_ids=ids)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.parametrize("task_id", [1, np.int64(1), np.int32(1), torch.tensor(1)],
                         ids=["int", "numpy int64", "numpy int32", "0-d tensor"])
def test_one_valid_task_id_works_everywhere(pm, tokenizer, task_id):
    assert check_task_id(task_id, K) == 1 and type(check_task_id(task_id, K)) is int
    cache = PromptPrefixCache(pm, task_id=task_id)
    assert cache.task_id == 1 and type(cache.task_id) is int
    assert TrainingConfig(task_id=task_id).task_id == 1 and type(TrainingConfig(task_id=task_id).task_id) is int
    assert TaskCollator(toy_task(), tokenizer, pm, task_id=task_id).task_id == 1
    torch.testing.assert_close(prompt_matrix(pm, task_id), prompt_matrix(pm, 1), rtol=0, atol=0)
    torch.testing.assert_close(pm.prompt_encoder.task_prompt(task_id), pm.prompt_encoder.task_prompt(1),
                               rtol=0, atol=0)
    bank = PromptBank(pm.base_model, tokenizer).add("a", pm, task_id=task_id).add("b", pm, task_id=1)
    torch.testing.assert_close(bank._prompts["a"], bank._prompts["b"], rtol=0, atol=0)
    task = toy_task()
    got = evaluate(pm, tokenizer, task, task_id=task_id, return_predictions=True)
    ref = evaluate(pm, tokenizer, task, task_id=1, return_predictions=True)
    torch.testing.assert_close(got["scores"], ref["scores"], rtol=0, atol=0)
