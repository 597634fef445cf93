"""nearest_tokens: Lester et al. §7 neighbours, checked against brute force on a tiny model."""

import pytest
import torch
import torch.nn.functional as F

import softprompt.neighbors as nb
from softprompt.neighbors import NeighborTable, label_token_ids, nearest_tokens, token_ranks, vocab_mask

TEXT = "classify the review : positive or negative"


@pytest.fixture
def emb(llama):
    return llama.get_input_embeddings().weight.detach()  # (V, 32)


@pytest.fixture
def text_ids(tokenizer):
    return tokenizer(TEXT, add_special_tokens=False)["input_ids"]


def brute_force(p, e, metric):
    """One score at a time, the definitions written out."""
    out = torch.empty(p.shape[0], e.shape[0])
    for t in range(p.shape[0]):
        for v in range(e.shape[0]):
            if metric == "cosine":
                out[t, v] = F.cosine_similarity(p[t], e[v], dim=0)
            elif metric == "dot":
                out[t, v] = torch.dot(p[t], e[v])
            else:
                out[t, v] = (p[t] - e[v]).norm()
    return out


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_text_init_prompt_has_its_own_tokens_as_rank_one(emb, tokenizer, text_ids, metric):
    prompt = emb[text_ids].clone()  # what text init produces
    table = nearest_tokens(prompt, emb, tokenizer, k=5, metric=metric)
    assert table.ids[:, 0].tolist() == text_ids
    assert table.tokens(4)[0] == "positive"
    ranks = token_ranks(nb.scores_against_vocab(prompt, emb, metric), text_ids, metric)  # (T, T)
    assert ranks.diagonal().tolist() == [1] * len(text_ids)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_metrics_agree_with_brute_force(emb, tokenizer, metric, monkeypatch):
    monkeypatch.setattr(nb, "_CHUNK", 17)  # several uneven vocabulary chunks
    prompt = torch.randn(3, emb.shape[1]) * emb.norm(dim=1).mean() / emb.shape[1] ** 0.5
    ref = brute_force(prompt, emb, metric)  # (T, V)
    got = nb.scores_against_vocab(prompt, emb, metric)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    table = nearest_tokens(prompt, emb, tokenizer, k=4, metric=metric)
    ref_ids = ref.topk(4, dim=1, largest=(metric != "l2")).indices
    assert torch.equal(table.ids, ref_ids)
    torch.testing.assert_close(table.scores, ref.gather(1, ref_ids), rtol=1e-4, atol=1e-5)
    # ranks: 1 + how many tokens are strictly nearer, counted by hand
    v = 11
    near = ref if metric != "l2" else -ref
    expect = 1 + (near > near[:, v:v + 1]).sum(1)
    assert token_ranks(got, [v], metric)[:, 0].tolist() == expect.tolist()


def test_filters_drop_what_they_claim(emb, tokenizer):
    specials = [i for i in tokenizer.all_special_ids if i != tokenizer.pad_token_id]  # pad's row is all zeros
    prompt = emb[specials + tokenizer.convert_tokens_to_ids([".", "good"])].clone()
    plain = nearest_tokens(prompt, emb, tokenizer, k=3)
    assert plain.ids[:, 0].tolist()[: len(specials)] == specials  # unfiltered: they are their own neighbours

    no_special = nearest_tokens(prompt, emb, tokenizer, k=3, skip_special=True)
    assert not set(no_special.ids.flatten().tolist()) & set(tokenizer.all_special_ids)
    assert no_special.tokens(len(specials) + 1)[0] == "good"  # words are kept

    words = nearest_tokens(prompt, emb, tokenizer, k=3, words_only=True)
    assert all(tok.isalpha() for row in words.pieces for tok in row)
    assert words.tokens(len(specials) + 1)[0] == "good"

    keep = vocab_mask(tokenizer, emb.shape[0], words_only=True)
    dropped = {tokenizer.convert_ids_to_tokens(i) for i in (~keep).nonzero().flatten().tolist()}
    assert {".", ",", "!", "(", "-"} <= dropped and "positive" not in dropped


def test_embedding_rows_past_the_tokenizer(emb, tokenizer):
    padded = torch.cat([emb, torch.randn(3, emb.shape[1])])  # a padded vocabulary
    table = nearest_tokens(padded[-1:], padded, tokenizer, k=1)
    assert table.tokens(0) == [f"<id {padded.shape[0] - 1}>"]
    assert nearest_tokens(padded[-1:], padded, tokenizer, k=1, words_only=True).ids[0, 0] < len(tokenizer)


def test_table_text_and_html(emb, tokenizer, text_ids):
    table = nearest_tokens(emb[text_ids[:2]], emb, tokenizer, k=2)
    lines = repr(table).splitlines()
    assert lines[0] == "NeighborTable: 2 nearest tokens of 2 virtual tokens, by cosine"
    assert lines[1].split() == ["#1", "#2"]
    assert lines[2].startswith("v0  classify 1.000")
    assert lines[2].index(table.tokens(0)[1]) == lines[3].index(table.tokens(1)[1])  # columns align
    rows = table.to_rows()
    assert len(rows) == 4 and rows[0] == {
        "virtual_token": 0, "rank": 1, "token": "classify", "id": text_ids[0], "score": pytest.approx(1.0, abs=1e-5)
    }
    assert table.contains(text_ids[1]).tolist() == [False, True]
    special = nearest_tokens(emb[[tokenizer.pad_token_id]], emb, tokenizer, k=1)
    assert "<code>&lt;pad&gt;</code>" in special._repr_html_()


def test_accepts_batched_tensor_and_embedding_module(llama, emb, tokenizer, text_ids):
    a = nearest_tokens(emb[text_ids][None], llama.get_input_embeddings(), tokenizer, k=2)
    b = nearest_tokens(emb[text_ids], llama, tokenizer, k=2)
    assert isinstance(a, NeighborTable) and torch.equal(a.ids, b.ids)


def test_display_of_byte_level_pieces():
    class FakeBPE:  # what a GPT-2 style tokenizer answers
        all_special_tokens = ["<|endoftext|>"]

        def __len__(self):
            return 3

        def convert_ids_to_tokens(self, i):
            return ["<|endoftext|>", "Ġgood", "Ċ"][i]

        def convert_tokens_to_string(self, toks):
            return toks[0].replace("Ġ", " ").replace("Ċ", "\n")

    tok = FakeBPE()
    assert [nb.display_token(tok, i) for i in range(3)] == ["<|endoftext|>", "␣good", "\\n"]


def test_label_token_ids(tokenizer):
    assert label_token_ids(tokenizer, ["positive", 7]) == [tokenizer.convert_tokens_to_ids("positive"), 7]


def test_bad_input_gets_clear_errors(emb, tokenizer):
    with pytest.raises(ValueError, match=r"d=16 but the word embeddings have d=32"):
        nearest_tokens(torch.randn(4, 16), emb, tokenizer)
    with pytest.raises(ValueError, match="batch of 2 prompts"):
        nearest_tokens(torch.randn(2, 4, 32), emb, tokenizer)
    with pytest.raises(ValueError, match="metric='manhattan'.*cosine"):
        nearest_tokens(torch.randn(4, 32), emb, tokenizer, metric="manhattan")
    with pytest.raises(ValueError, match="k=0"):
        nearest_tokens(torch.randn(4, 32), emb, tokenizer, k=0)
    with pytest.raises(ValueError, match="tokenizer"):
        nearest_tokens(torch.randn(4, 32), emb)
    with pytest.raises(ValueError, match="task_id"):
        nearest_tokens(torch.randn(4, 32), emb, tokenizer, task_id=1)
    with pytest.raises(ValueError, match="pass a tensor"):
        nearest_tokens([[0.0] * 32], emb, tokenizer)


def test_prompt_embedding_initialized_from_text(llama, tokenizer, text_ids):
    from softprompt import PromptEmbedding, PromptTuningConfig

    config = PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=len(text_ids), prompt_tuning_init="TEXT",
        prompt_tuning_init_text=TEXT,
    )
    encoder = PromptEmbedding(config, llama.get_input_embeddings(), tokenizer)
    table = nearest_tokens(encoder, llama, tokenizer, k=3)
    assert table.ids[:, 0].tolist() == text_ids
    with pytest.raises(ValueError, match="not MPT"):
        nearest_tokens(encoder, llama, tokenizer, task_id=0)


@pytest.mark.slow
def test_smollm2_text_prompt_reads_back(smollm2):
    model, tok = smollm2
    ids = tok(" Classify the review as positive or negative", add_special_tokens=False)["input_ids"]
    emb = model.get_input_embeddings().weight
    table = nearest_tokens(emb[ids].detach(), model, tok, k=3, words_only=True, skip_special=True)
    assert table.ids[:, 0].tolist() == ids
    assert table.tokens(ids.index(tok.convert_tokens_to_ids("Ġpositive")))[0] == "␣positive"
    assert all(t.lstrip("␣").isalpha() for row in table.pieces for t in row)


def test_mpt_task_prompt_is_read_by_the_formula(llama, tokenizer):
    from softprompt import MultitaskPromptTuningConfig, get_prompt_model

    config = MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, num_tasks=2, num_ranks=2,
                                         prompt_tuning_init="RANDOM", seed=0)
    pm = get_prompt_model(llama, config, tokenizer)
    enc = pm.prompt_encoder
    with torch.no_grad():
        enc.prefix_task_rows.normal_()
    for k in range(2):
        explicit = enc.embedding.weight * (enc.prefix_task_cols[k] @ enc.prefix_task_rows[k])  # P* ⊙ (u_k v_kᵀ)
        expect = nearest_tokens(explicit.detach(), llama, tokenizer, k=4)
        for source in (pm, enc):
            got = nearest_tokens(source, llama, tokenizer, k=4, task_id=k)
            assert torch.equal(got.ids, expect.ids) and got.title == f"task {k}"
    with pytest.raises(ValueError, match="pass task_id=k"):
        nearest_tokens(pm, None, tokenizer)
