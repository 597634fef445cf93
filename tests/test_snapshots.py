"""PromptSnapshots: recording through the callback hooks, and the Lester §7 metrics on the snapshots."""

import pytest
import torch

from softprompt import PromptTuningConfig
from softprompt.callbacks import TrainState
from softprompt.snapshots import MetricTable, PromptSnapshots

TEXT = "positive negative good bad"


@pytest.fixture
def encoder(llama, tokenizer):
    from softprompt import PromptEmbedding, PromptTuningConfig

    config = PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="TEXT", prompt_tuning_init_text=TEXT,
    )
    return PromptEmbedding(config, llama.get_input_embeddings(), tokenizer)


def ids_of(tokenizer, words):
    return tokenizer.convert_tokens_to_ids(words.split())


def fake_training(encoder, snaps, target, steps=5):
    """Walk each prompt vector a fifth of the way to ``target`` per step, calling the hooks as train() does."""
    state = TrainState(step=0, max_steps=steps, prompt_model=encoder)
    snaps.on_train_begin(state)
    start = encoder.weight.detach().clone()
    for step in range(1, steps + 1):
        with torch.no_grad():
            encoder.weight.copy_(start + (target - start) * step / steps)
        state.step = step
        snaps.on_step(state)
    snaps.on_train_end(state)


def test_records_start_every_n_and_end(encoder, llama, tokenizer):
    emb = llama.get_input_embeddings().weight.detach()
    target = emb[ids_of(tokenizer, "movie movie film cold")]
    snaps = PromptSnapshots(every=2)
    fake_training(encoder, snaps, target)
    assert snaps.steps == [0, 2, 4, 5]
    assert snaps.prompts.shape == (4, 4, 32)
    torch.testing.assert_close(snaps.prompts[0], emb[ids_of(tokenizer, TEXT)])
    torch.testing.assert_close(snaps.prompts[-1], target)
    assert snaps[1][0] == 2 and "4 snapshots of 4×32" in repr(snaps)


def test_movement_metrics(encoder, llama, tokenizer):
    emb = llama.get_input_embeddings().weight.detach()
    start = emb[ids_of(tokenizer, TEXT)]
    target = emb[ids_of(tokenizer, "movie movie film cold")]
    snaps = PromptSnapshots(every=1)
    fake_training(encoder, snaps, target)
    dist = snaps.distance_from_init()  # (S, T)
    expect = (target - start).norm(dim=-1)[None] * torch.tensor([0, 1, 2, 3, 4, 5])[:, None] / 5
    torch.testing.assert_close(dist, expect)
    cos = snaps.cosine_to_init()
    torch.testing.assert_close(cos[0], torch.ones(4))
    torch.testing.assert_close(cos[-1], torch.nn.functional.cosine_similarity(target, start, dim=-1))
    torch.testing.assert_close(snaps.cosine_to_init(reference=target)[-1], torch.ones(4))
    torch.testing.assert_close(snaps.norms()[-1], target.norm(dim=-1))


def test_label_ranks_and_shared_neighbours(encoder, llama, tokenizer):
    emb = llama.get_input_embeddings().weight.detach()
    target = emb[ids_of(tokenizer, "movie movie film cold")]
    snaps = PromptSnapshots(every=5, word_embeddings=llama)
    fake_training(encoder, snaps, target)
    assert snaps.steps == [0, 5]
    ranks = snaps.label_ranks(tokenizer, ["positive", "negative"])
    assert ranks["positive"][0, 0] == 1 and ranks["negative"][0, 1] == 1  # init from the labels: rank 1
    assert ranks["positive"][1, 0] > 1  # walked away from "positive"
    # the brute-force rank: 1 + tokens strictly more cosine-similar than "positive" to the final token 0
    cos = torch.nn.functional.cosine_similarity(target[0][None], emb, dim=-1)
    pos = ids_of(tokenizer, "positive")[0]
    assert ranks["positive"][1, 0] == 1 + (cos > cos[pos]).sum()

    inside = snaps.labels_in_neighbors(tokenizer, ["positive", "negative"], k=1)
    assert inside[0].tolist() == [True, True, False, False] and not inside[1].any()

    assert snaps.nearest_ids()[1].tolist() == ids_of(tokenizer, "movie movie film cold")
    assert snaps.shared_nearest().tolist() == [0, 2]  # two virtual tokens both nearest to "movie"

    table = snaps.neighbors(-1, tokenizer, k=2)
    assert table.title == "step 5" and table.tokens(0)[0] == "movie"


def test_summary_table(encoder, llama, tokenizer):
    emb = llama.get_input_embeddings().weight.detach()
    snaps = PromptSnapshots(every=5)
    fake_training(encoder, snaps, emb[ids_of(tokenizer, "movie movie film cold")])
    summary = snaps.summary(tokenizer, ["positive", "negative"], k=1, word_embeddings=llama)
    assert isinstance(summary, MetricTable)
    assert summary.column("step") == [0, 5]
    assert summary.column("shared nearest") == [0, 2]
    assert summary.column("tokens with a label in top-1") == [2, 0]
    text = repr(summary).splitlines()
    assert text[0] == "2 prompt snapshots (cosine)"
    assert text[1].split()[0] == "step" and text[2].split()[:4] == ["0", "0.000", "1.000", "0"]
    assert "<table>" in summary._repr_html_()


def test_prompt_model_state_records_word_embeddings(encoder, llama, tokenizer):
    class Holder:  # the two attributes of a PromptModel that snapshots use
        def __init__(self):
            self.prompt_encoder = encoder
            self.word_embeddings = llama.get_input_embeddings()

        def get_prompt(self, batch_size, task_ids=None):
            return encoder(torch.arange(4)[None].expand(batch_size, -1))

    snaps = PromptSnapshots(every=1)
    snaps.on_train_begin(TrainState(step=0, max_steps=1, prompt_model=Holder()))
    assert torch.equal(snaps.word_embeddings, llama.get_input_embeddings().weight)
    assert snaps.label_ranks(tokenizer, ["positive"])["positive"][0, 0] == 1


def test_save_and_load(encoder, llama, tokenizer, tmp_path):
    emb = llama.get_input_embeddings().weight.detach()
    snaps = PromptSnapshots(every=2)
    fake_training(encoder, snaps, emb[ids_of(tokenizer, "movie movie film cold")])
    snaps.save(tmp_path / "snaps.safetensors")
    back = PromptSnapshots.load(tmp_path / "snaps.safetensors")
    assert back.steps == snaps.steps and back.every == 2
    torch.testing.assert_close(back.prompts, snaps.prompts)
    with pytest.raises(ValueError, match="word_embeddings=model"):
        back.nearest_ids()
    assert back.nearest_ids(word_embeddings=llama).shape == (4, 4)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="every=0"):
        PromptSnapshots(every=0)
    with pytest.raises(ValueError, match="no snapshots yet"):
        _ = PromptSnapshots().prompts
    snaps = PromptSnapshots()
    snaps.record(torch.zeros(4, 8), step=0)
    with pytest.raises(ValueError, match="differs from the first"):
        snaps.record(torch.zeros(5, 8), step=1)
    with pytest.raises(ValueError, match=r"expected \(4, 8\)"):
        snaps.cosine_to_init(reference=torch.zeros(3, 8))


def test_with_train(llama, tokenizer):
    from softprompt import get_prompt_model, load_task, train

    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="TEXT",
                                prompt_tuning_init_text=TEXT)
    pm = get_prompt_model(llama, config, tokenizer)
    snaps = PromptSnapshots(every=2)
    train(pm, tokenizer, load_task("sentiment_movies"), steps=5, batch_size=4, lr=0.1, callbacks=[snaps],
          progress=False)
    assert snaps.steps == [0, 2, 4, 5]
    torch.testing.assert_close(snaps.prompts[-1], pm.get_prompt(1)[0].detach())
    assert (snaps.distance_from_init()[-1] > 0).all()
    assert snaps.label_ranks(tokenizer, ["positive"])["positive"][0, 0] == 1  # from the PromptModel's embeddings
