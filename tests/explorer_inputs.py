"""What the browser test's notebook builds before its explorer cells, on a tiny model instead of SmolLM2.

The explorer cells of notebooks 03 and 05 run verbatim in that notebook; they use the names built here:
``snaps, tokenizer, K, task`` (03: a prompt trained with ``sp.train`` and ``PromptSnapshots``) and
``student, tokenizer, SOURCES, sources`` (05: a multitask prompt model). The kernel imports this module
and so does the test (tests/test_browser_explorers.py), so both hold the same snapshots and the same
student, and the test computes with the library what the browser must show. No network: the tiny model
is built from a config, the tokenizer in memory, the tasks are built in.
"""

import torch

import softprompt as sp
from softprompt.testing import tiny_model, tiny_tokenizer

K = 5  # neighbours per virtual token, as notebook 03
STEPS, EVERY = 12, 4  # snapshots at steps 0, 4, 8, 12
SOURCES = ["sentiment_movies", "topic", "formality"]  # the task names of the multitask prompt


def notebook_03():
    """``snaps, tokenizer, task``: a TEXT-initialized prompt trained a few steps, with its snapshots."""
    torch.set_num_threads(1)  # the kernel and the test compute alike, bit for bit
    model, tokenizer = tiny_model("llama", seed=0), tiny_tokenizer()
    task = sp.load_task("sentiment_movies")
    config = sp.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="TEXT",
                                   prompt_tuning_init_text="is this movie review positive or negative ?", seed=0)
    prompt_model = sp.get_prompt_model(model, config, tokenizer)
    snaps = sp.PromptSnapshots(every=EVERY)
    sp.train(prompt_model, tokenizer, task, steps=STEPS, batch_size=4, lr=0.5, max_length=32, callbacks=[snaps],
             seed=0, progress=False)
    return snaps, tokenizer, task


def notebook_05():
    """``student, tokenizer, sources``: a multitask (MPT) prompt model whose task prompts differ."""
    torch.set_num_threads(1)
    model, tokenizer = tiny_model("llama", seed=1), tiny_tokenizer()
    sources = [sp.load_task(name) for name in SOURCES]
    config = sp.MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, num_tasks=len(SOURCES),
                                            num_ranks=1, prompt_tuning_init="RANDOM", seed=0)
    student = sp.get_prompt_model(model, config, tokenizer)
    torch.manual_seed(0)
    with torch.no_grad():  # tell the tasks apart: the rank-1 factors start equal
        student.prompt_encoder.prefix_task_rows.normal_()
    return student, tokenizer, sources
