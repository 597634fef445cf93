"""Explorers: they build without a frontend, respond to value changes, and carry a static picture."""

import base64

import pytest
import torch

from softprompt import MultitaskPromptTuningConfig, PromptTuningConfig, get_prompt_model, nearest_tokens
from softprompt.explorers import PromptExplorer, TaskExplorer
from softprompt.snapshots import PromptSnapshots

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def snaps(llama, tokenizer):
    emb = llama.get_input_embeddings().weight.detach()
    start = emb[tokenizer.convert_tokens_to_ids("positive negative good".split())]
    end = emb[tokenizer.convert_tokens_to_ids("movie film cold".split())]
    s = PromptSnapshots(every=10, word_embeddings=llama)
    for i, step in enumerate([0, 10, 20]):
        s.record(start + (end - start) * i / 2, step)
    return s


def test_prompt_explorer_follows_the_slider_and_the_token(snaps, tokenizer):
    ex = PromptExplorer(snaps, tokenizer, k=2, n_vocab=40, highlight_words=["positive"])
    assert ex.step_slider.label == "20" and ex.table().tokens(0)[0] == "movie"  # starts at the last snapshot
    assert repr(ex) == "PromptExplorer: step 20 (snapshot 3 of 3), 3 virtual tokens; nearest: movie film cold"
    html_end, png_end = ex.table_view.value, ex.image_view.value

    ex.step_slider.value = 0  # what a user dragging the slider does
    assert ex.table().title == "step 0"
    assert ex.table_view.value != html_end and "positive" in ex.table_view.value
    assert ex.image_view.value != png_end and ex.image_view.value[:4] == b"\x89PNG"

    ex.token_selector.value = 1
    table = ex.table()
    assert len(table) == 1 and table.tokens(0)[0] == "negative" and table.rows == [1]
    assert ">v1<" in ex.table_view.value
    assert repr(ex).endswith("virtual token v1: negative " + table.tokens(0)[1])


def test_display_bundle_has_widget_picture_and_text(snaps, tokenizer):
    ex = PromptExplorer(snaps, tokenizer, k=2, n_vocab=40)
    bundle = ex._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == ex.widget.model_id
    assert base64.b64decode(bundle["image/png"])[:4] == b"\x89PNG"
    assert bundle["text/plain"] == repr(ex)


def test_prompt_explorer_of_a_single_prompt(llama, tokenizer):
    emb = llama.get_input_embeddings().weight.detach()
    ex = PromptExplorer(emb[[10, 11]].clone(), tokenizer, word_embeddings=llama, k=1, n_vocab=30)
    assert ex.step_slider.options == (("0", 0),)
    assert ex.table().ids[:, 0].tolist() == [10, 11]


def test_task_explorer_switches_task_prompts(llama, tokenizer):
    config = MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, num_tasks=3, num_ranks=1,
                                         prompt_tuning_init="RANDOM", seed=0)
    pm = get_prompt_model(llama, config, tokenizer)
    with torch.no_grad():  # tell the tasks apart
        pm.prompt_encoder.prefix_task_rows.normal_()
    ex = TaskExplorer(pm, tokenizer, task_names=["a", "b", "c"], k=3, n_vocab=30)
    assert repr(ex).startswith("TaskExplorer: a, 3 virtual tokens")
    first = ex.table_view.value
    ex.task_selector.value = 2
    expect = nearest_tokens(pm, None, tokenizer, k=3, task_id=2)
    assert torch.equal(ex.table().ids, expect.ids) and ex.table().title == "c"
    assert ex.table_view.value != first
    assert "c: prompt tokens" in ex.figure().axes[0].get_title()


def test_bad_input(llama, tokenizer):
    pm = get_prompt_model(llama, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2), tokenizer)
    with pytest.raises(ValueError, match="use PromptExplorer"):
        TaskExplorer(pm, tokenizer)
    with pytest.raises(ValueError, match="snapshots are empty"):
        PromptExplorer(PromptSnapshots(), tokenizer)
    with pytest.raises(ValueError, match="word_embeddings="):
        PromptExplorer(torch.randn(2, 32), tokenizer)
