"""Waywardness: the projected prompt is exactly the hard prompt of its nearest tokens (Khashabi et al. 2022)."""

import pytest
import torch

from softprompt import PromptTuningConfig, get_prompt_model, load_task
from softprompt.waywardness import HardPrompt, hard_prompt_model, measure_waywardness, project_to_tokens

TEXT = "classify the review : positive or negative"


@pytest.fixture
def prompt_model(causal_arch, tokenizer):
    from softprompt.testing import tiny_model

    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, prompt_tuning_init="RANDOM", seed=0)
    return get_prompt_model(tiny_model(causal_arch), config, tokenizer)


def test_hard_prompt_model_equals_prepending_the_tokens(prompt_model, tokenizer):
    ids = project_to_tokens(prompt_model, tokenizer)  # (5,)
    hard = hard_prompt_model(prompt_model, ids)
    assert isinstance(hard.prompt_encoder, HardPrompt) and hard.base_model is prompt_model.base_model
    E = prompt_model.word_embeddings.weight
    torch.testing.assert_close(hard.get_prompt(1)[0], E[ids])

    batch = tokenizer(["the movie was good", "bad"], return_tensors="pt", padding=True)  # left padding
    with torch.no_grad():
        got = hard(**batch).logits  # (B, L, V), virtual positions stripped
        # the same tokens written as text in front of each row, before its padding
        input_ids = torch.cat([ids.expand(2, -1), batch["input_ids"]], dim=1)
        mask = torch.cat([torch.ones(2, 5, dtype=torch.long), batch["attention_mask"]], dim=1)
        position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
        ref = prompt_model.base_model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], ref[:, 5:][real], atol=1e-5, rtol=1e-4)


def test_projection_is_the_nearest_token_and_leaves_the_model_alone(prompt_model, tokenizer):
    before = {k: v.clone() for k, v in prompt_model.adapter_tensors().items()}
    encoder = prompt_model.prompt_encoder
    ids = project_to_tokens(prompt_model, tokenizer, words_only=True)
    P = prompt_model.get_prompt(1)[0].detach()
    E = prompt_model.word_embeddings.weight.detach()
    cos = torch.nn.functional.normalize(P, dim=-1) @ torch.nn.functional.normalize(E, dim=-1).T  # (T, V)
    for t, i in enumerate(ids.tolist()):
        assert tokenizer.convert_ids_to_tokens(i).isalpha()
        allowed = [j for j in range(E.shape[0]) if tokenizer.convert_ids_to_tokens(j).isalpha()]
        assert cos[t, i] == cos[t, allowed].max()
    hard_prompt_model(prompt_model, ids)
    assert prompt_model.prompt_encoder is encoder
    for k, v in prompt_model.adapter_tensors().items():
        assert torch.equal(v, before[k])


def test_waywardness_report(tokenizer, llama):
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=7, prompt_tuning_init="TEXT",
                                prompt_tuning_init_text=TEXT)
    pm = get_prompt_model(llama, config, tokenizer)
    task = load_task("sentiment_movies")
    report = measure_waywardness(pm, tokenizer, task, max_examples=16, batch_size=16)
    # a prompt that already is token embeddings projects onto those very tokens: nothing is lost
    assert report.text == TEXT
    assert report.soft_accuracy == report.hard_accuracy
    torch.testing.assert_close(report.cosine, torch.ones(7))
    text = repr(report).splitlines()
    assert text[0] == "Prompt waywardness (Khashabi et al. 2022) on sentiment_movies/test, projection by cosine"
    assert text[3] == f"  projected text: {TEXT!r}"

    with torch.no_grad():  # move the prompt off the tokens: the projection keeps the nearest, the cosine drops
        pm.prompt_encoder.weight.add_(0.3 * torch.randn_like(pm.prompt_encoder.weight))
    moved = measure_waywardness(pm, tokenizer, task, max_examples=8, batch_size=8, return_predictions=True)
    assert moved.cosine.max() < 1 - 1e-4
    assert len(moved.hard["predictions"]) == 8


def test_bad_input(prompt_model):
    with pytest.raises(ValueError, match="3 token ids for a prompt of 5"):
        hard_prompt_model(prompt_model, [1, 2, 3])
    with pytest.raises(ValueError, match="vocabulary"):
        hard_prompt_model(prompt_model, [1, 2, 3, 4, 10**6])
    hard = hard_prompt_model(prompt_model, [5, 6, 7, 8, 9])
    with pytest.raises(ValueError, match="fixed tokens"):
        hard.prompt_encoder.load_adapter_tensors({})
