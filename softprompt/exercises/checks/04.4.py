"""Exercise 04.4 (★★): predicted_speedup(T, L) and fraction_saved(T, L), the prefix cache's saving in positions.

A prompt of ``T`` virtual tokens before inputs of ``L`` tokens: uncached, the model computes ``T + L`` positions
per row; with the prompt's keys and values cached, ``L``. Checked on fresh values, and against the positions the
library's own evaluation computes (``sp.evaluate`` with and without its ``PromptPrefixCache``), counted by a hook.
"""

import math
import random
from functools import partial

from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_generator, notebook_needs, require

OK_FORMAT = False
name = "04.4"
points = 3


def _number(name, value):
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise AssertionError(f"{name} should be a number, got a {type(value).__name__}") from None


def _same(name, got, expected, case):
    if not math.isclose(got, expected, rel_tol=1e-6):
        raise AssertionError(f"{case}: {name} is {got:.6g}; expected {expected:.6g}")


def _forward_shapes(model, run):
    """(B, S) of every forward of the frozen model while ``run()`` runs (the cached evaluation also runs the prompt
    once, alone: a (1, T) forward)."""
    shapes = []

    def count(module, args, kwargs):
        x = kwargs.get("inputs_embeds") if kwargs.get("inputs_embeds") is not None else kwargs.get("input_ids")
        shapes.append(tuple(x.shape[:2]))

    handle = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return shapes


@test_case(points=1)
def test_the_formula_on_fresh_lengths(predicted_speedup, fraction_saved):
    predicted_speedup = require("predicted_speedup", predicted_speedup)
    fraction_saved = require("fraction_saved", fraction_saved)
    rng = random.Random(fresh_generator().initial_seed())  # fresh inputs at every check
    for T, L in [(rng.randint(1, 200), round(rng.uniform(1, 100), 2)) for _ in range(5)] + [(100, 25.0)]:
        ratio, saved = (T + L) / L, T / (T + L)  # positions uncached / cached, and the share the cache skips
        _same(f"predicted_speedup({T}, {L})", _number("predicted_speedup", predicted_speedup(T, L)), ratio,
              f"T={T} virtual tokens, inputs of L={L} tokens (uncached: T + L positions per row, cached: L)")
        _same(f"fraction_saved({T}, {L})", _number("fraction_saved", fraction_saved(T, L)), saved,
              f"T={T} virtual tokens, inputs of L={L} tokens: the share of the uncached positions the cache skips")


@test_case(points=1)
def test_against_the_positions_the_library_computes(predicted_speedup, fraction_saved, model, tokenizer):
    predicted_speedup = require("predicted_speedup", predicted_speedup)
    fraction_saved = require("fraction_saved", fraction_saved)
    _number("predicted_speedup", predicted_speedup(8, 20.0))  # fails early, before the model runs
    _number("fraction_saved", fraction_saved(8, 20.0))
    notebook_needs(model=model, tokenizer=tokenizer)
    rng = random.Random(fresh_generator().initial_seed())
    T, n = rng.randint(4, 48), 6
    task = sp.load_task(rng.choice(("sentiment_movies", "emotion", "formality")))
    config = sp.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, prompt_tuning_init="SAMPLE_VOCAB",
                                   seed=rng.randrange(2**31))
    prompt_model = sp.get_prompt_model(model, config, tokenizer)
    positions = {}
    for use_cache in (False, True):
        shapes = _forward_shapes(model, partial(sp.evaluate, prompt_model, tokenizer, task, max_examples=n,
                                                batch_size=n, use_cache=use_cache))
        positions[use_cache] = [s for s in shapes if s[0] == n][0][1]  # the batch's sequence length
    L = positions[True]  # the batch's input length (its longest row)
    case = (f"sp.evaluate on {n} examples of {task.name!r} in one batch, T={T}: the model computed {positions[False]} "
            f"positions per row uncached and L={L} cached")
    _same(f"predicted_speedup({T}, {L})", _number("predicted_speedup", predicted_speedup(T, L)),
          positions[False] / positions[True], case)
    _same(f"fraction_saved({T}, {L})", _number("fraction_saved", fraction_saved(T, L)),
          1 - positions[True] / positions[False], case)
