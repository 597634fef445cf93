"""Exercise 04.5 (★★): mixed_inputs(bank, rows, names) and mixed_generate(bank, rows, names, max_new_tokens).

``mixed_inputs`` formats row i with the template of prompt ``names[i]``'s task, leaving room for the batch's
longest prompt, and left-pads the rows into ``input_ids, attention_mask`` ``(B, L)``: what ``bank.class_scores``
builds (the library's own ``PromptBank._task_inputs``). ``mixed_generate`` decodes greedily with one prompt per row
(``bank.generate``) and returns the B new texts. Checked on a fresh bank of random prompts of different lengths, on
the notebook's ``model`` and ``tokenizer``.
"""

import random

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_generator, notebook_needs, require, same_shape, same_values

OK_FORMAT = False
name = "04.5"
points = 3

BUILTIN = ("sentiment_movies", "emotion", "formality", "topic")  # generated tasks: the same on every profile



def _fresh_batch(model, tokenizer, rng):
    """A bank of three random prompts (lengths differ) for three built-in tasks; a mixed batch of rows and names."""
    names = rng.sample(BUILTIN, 3)
    table = model.get_input_embeddings().weight  # (V, d)
    gen, scale = torch.Generator().manual_seed(rng.randrange(2**31)), float(table.detach().float().std())
    bank = sp.PromptBank(model, tokenizer)
    for T, n in zip(rng.sample(range(2, 12), 3), names):  # three prompt lengths
        bank.add(n, torch.randn(T, table.shape[1], generator=gen) * scale, task=sp.load_task(n))  # (T, d)
    row_names = names + [rng.choice(names) for _ in range(2)]
    rng.shuffle(row_names)
    rows = [bank.task(n)["test"][rng.randrange(len(bank.task(n)["test"]))] for n in row_names]
    return bank, rows, row_names


def _pair(name, got):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise AssertionError(f"{name} should return two tensors, (input_ids, attention_mask); got {type(got).__name__}")
    return got


def _pad_id(tokenizer):
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@test_case(points=2)
def test_mixed_inputs_formats_each_row_with_its_own_task(mixed_inputs, model, tokenizer):
    mixed_inputs = require("mixed_inputs", mixed_inputs)
    notebook_needs(model=model, tokenizer=tokenizer)
    rng = random.Random(fresh_generator().initial_seed())  # fresh inputs at every check
    bank, rows, names = _fresh_batch(model, tokenizer, rng)
    ids, mask = _pair("mixed_inputs(bank, rows, names)", mixed_inputs(bank, rows, names))
    ref_ids, ref_mask = bank._task_inputs(rows, [bank.task(n) for n in names], bank.max_prompt_length(names))
    case = f"{len(rows)} rows with the prompts {names}"
    mask = same_shape("attention_mask", mask, tuple(ref_mask.shape), "one row per name, as wide as the longest row")
    ids = same_shape("input_ids", ids, tuple(ref_ids.shape), "one row per name, as wide as the longest row")
    same_values("attention_mask", mask.long().cpu(), ref_mask.cpu(), f"{case} (each row's tokens at its end: left "
                "padding)")
    for i, n in enumerate(names):  # the real tokens of each row; what the padding holds does not matter
        real = ref_mask[i].bool().cpu()
        same_values(f"input_ids[{i}]", ids[i].cpu()[real], ref_ids[i].cpu()[real], f"row {i}, prompt {n!r}: the "
                    f"row's tokens should be its own task's template ({bank.task(n).name}) around its text")


@test_case(points=1)
def test_mixed_generate_decodes_with_each_rows_prompt(mixed_generate, model, tokenizer):
    mixed_generate = require("mixed_generate", mixed_generate)
    notebook_needs(model=model, tokenizer=tokenizer)
    rng = random.Random(fresh_generator().initial_seed())
    bank, rows, names = _fresh_batch(model, tokenizer, rng)
    n_new = rng.randint(2, 4)
    got = mixed_generate(bank, rows, names, n_new)
    ids, mask = bank._task_inputs(rows, [bank.task(n) for n in names], bank.max_prompt_length(names))
    new = bank.generate(ids, mask, names=names, max_new_tokens=n_new, do_sample=False, pad_token_id=_pad_id(tokenizer))
    expected = [tokenizer.decode(row, skip_special_tokens=True) for row in new]
    if not isinstance(got, (list, tuple)) or len(got) != len(rows):
        raise AssertionError(f"mixed_generate should return a list of {len(rows)} texts, one per row; got {got!r:.200}")
    for i, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            raise AssertionError(f"row {i} (prompt {names[i]!r}), {n_new} new tokens, greedy: mixed_generate gave "
                                 f"{g!r}, bank.generate on the row's own prompt and template gives {e!r}")
