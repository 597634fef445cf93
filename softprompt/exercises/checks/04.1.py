"""Exercise 04.1 (★★): add_text_prompt(bank, name, task, num_virtual_tokens) adds an untrained TEXT-init prompt.

The prompt reads ``task.description`` (TEXT init) and is added under ``name`` with its task, so the bank can format
the task's rows. Checked on a fresh bank of random prompts, on the notebook's ``model`` and ``tokenizer``.
"""

import random

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_generator, notebook_needs, require, same_shape, same_values

OK_FORMAT = False
name = "04.1"
points = 3

BUILTIN = ("sentiment_movies", "emotion", "formality", "topic")  # generated tasks: the same on every profile



def _fresh_bank(model, tokenizer, rng):
    """A bank with random prompts for two built-in tasks, and a third task (not in the bank) for the new prompt."""
    names = rng.sample(BUILTIN, 3)
    tasks = {n: sp.load_task(n) for n in names}
    table = model.get_input_embeddings().weight  # (V, d)
    gen, scale = torch.Generator().manual_seed(rng.randrange(2**31)), float(table.detach().float().std())
    bank = sp.PromptBank(model, tokenizer)
    for n in names[:2]:
        bank.add(n, torch.randn(rng.randint(2, 6), table.shape[1], generator=gen) * scale, task=tasks[n])  # (T, d)
    return bank, tasks, names


def _text_init(model, tokenizer, task, T):
    """The library's TEXT init of task.description, T virtual tokens, as the bank stores it (the model's dtype)."""
    config = sp.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, prompt_tuning_init="TEXT",
                                   prompt_tuning_init_text=task.description)
    weight = sp.PromptEmbedding(config, model.get_input_embeddings(), tokenizer).weight.detach()  # (T, d)
    return weight.to(model.dtype).float()


def _task_of(bank, prompt_name):
    try:
        return bank.task(prompt_name)
    except (ValueError, KeyError):
        return None


@test_case(points=2)
def test_the_new_prompt_reads_the_description(add_text_prompt, model, tokenizer):
    add_text_prompt = require("add_text_prompt", add_text_prompt)
    notebook_needs(model=model, tokenizer=tokenizer)
    rng = random.Random(fresh_generator().initial_seed())  # fresh inputs at every check
    for T in (rng.randint(2, 6), rng.randint(12, 24)):  # shorter than the description, and (often) longer
        bank, tasks, names = _fresh_bank(model, tokenizer, rng)
        new, task = f"new/{names[2]}", tasks[names[2]]
        add_text_prompt(bank, new, task, T)
        if new not in bank:
            raise AssertionError(f"after add_text_prompt(bank, {new!r}, task, {T}) the bank has no prompt named "
                                 f"{new!r}; it has {bank.names}")
        expected = _text_init(model, tokenizer, task, T)  # (T, d)
        got = same_shape(f"bank[{new!r}]", bank[new], tuple(expected.shape), f"num_virtual_tokens={T} vectors")
        same_values(f"bank[{new!r}]", got.float(), expected, f"T={T}, task {task.name!r}: the prompt should be the "
                    "TEXT init of task.description (each virtual token the embedding of one of its tokens)",
                    **sp.tolerance(model.dtype))
        if getattr(_task_of(bank, new), "name", None) != task.name:
            raise AssertionError(f"bank.task({new!r}) is not the task you passed: the bank needs the prompt's task "
                                 "to format its rows and read its label words")


@test_case(points=1)
def test_the_other_rows_do_not_change(add_text_prompt, model, tokenizer):
    add_text_prompt = require("add_text_prompt", add_text_prompt)
    notebook_needs(model=model, tokenizer=tokenizer)
    rng = random.Random(fresh_generator().initial_seed())
    bank, tasks, names = _fresh_bank(model, tokenizer, rng)
    rows = [tasks[n]["test"][rng.randrange(len(tasks[n]["test"]))] for n in names]
    old = {n: bank[n].clone() for n in names[:2]}
    before = bank.class_scores(rows[:2], names[:2])  # the two prompts already in the bank
    new = f"new/{names[2]}"
    add_text_prompt(bank, new, tasks[names[2]], rng.randint(2, 10))
    for n in names[:2]:
        same_values(f"bank[{n!r}]", bank[n], old[n], f"the prompt {n!r} that was in the bank before",
                    meaning="adding a prompt must leave the others as they are")
    after = bank.class_scores(rows, names[:2] + [new])  # a mixed batch: the two old rows and one of the new task
    tol = sp.tolerance(model.dtype)
    for n, b, a in zip(names, before, after):
        same_values(f"the scores of the {n!r} row", a, b, "a mixed batch with the new prompt's row, against the "
                    "same row before the new prompt was added", **tol)
