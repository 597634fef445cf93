"""Notebook 03's exercise checks on a tiny Llama: a right answer passes, wrong ones fail with a message that says
what is wrong, a missing one says to define it."""

import pytest
import torch
import torch.nn.functional as F

import softprompt as sp
from softprompt.exercises import check
from softprompt.neighbors import prompt_matrix
from softprompt.training import default_loss
from softprompt.waywardness import project_to_tokens


def messages(result) -> str:
    return "\n".join(r.message for r in result.test_case_results if not r.passed)


@pytest.fixture(scope="module")
def task():
    return sp.load_task("sentiment_movies")


@pytest.fixture
def notebook(llama, tokenizer, task):
    return {"model": llama, "tokenizer": tokenizer, "task": task}  # the notebook's names the checks read


def scores(P, E, metric, normalize_table=True):
    if metric == "cosine":
        return F.normalize(P, dim=-1) @ (F.normalize(E, dim=-1) if normalize_table else E).T  # (T, V)
    return P @ E.T if metric == "dot" else -torch.cdist(P, E)


def test_03_1_nearest_ids(notebook):
    assert check("03.1", nearest_ids=lambda P, E, metric: scores(P, E, metric).argmax(-1), **notebook).passed_all
    farthest = check("03.1", nearest_ids=lambda P, E, metric: (-scores(P, E, metric)).argmax(-1) if metric == "l2"
                     else scores(P, E, metric).argmax(-1), **notebook)
    assert not farthest.passed_all and "for 'l2' a smaller distance is nearer" in messages(farthest)
    no_table_norm = check("03.1", nearest_ids=lambda P, E, metric: scores(P, E, metric, False).argmax(-1), **notebook)
    assert "metric='cosine'" in messages(no_table_norm) and "is nearer" in messages(no_table_norm)
    one_column = check("03.1", nearest_ids=lambda P, E, metric: scores(P, E, metric).topk(1).indices, **notebook)
    assert "has shape (6, 1); expected (6,)" in messages(one_column)
    assert "define `nearest_ids` first" in messages(check("03.1", nearest_ids=None, **notebook))


def test_03_2_word_similarity(notebook):
    def word_similarity(prompt_model, tokenizer, **filters):
        return sp.nearest_tokens(prompt_model, None, tokenizer, k=1, **filters).scores[:, 0]

    right = lambda pm, tok: word_similarity(pm, tok, skip_special=True, words_only=True)  # noqa: E731
    assert check("03.2", word_similarity=right, **notebook).passed_all
    unfiltered = check("03.2", word_similarity=word_similarity, **notebook)
    assert not unfiltered.passed_all and "A filter seems to be missing" in messages(unfiltered)
    assert "a special token" in messages(unfiltered) or "not a word" in messages(unfiltered)
    assert "define `word_similarity` first" in messages(check("03.2", word_similarity=None, **notebook))


def test_03_3_persistence_ranks(notebook):
    def persistence_ranks(snaps, tokenizer, label_words):
        ranks = snaps.label_ranks(tokenizer, label_words)  # {word: (S, T)}
        return {w: r[:, int((r[0] == 1).nonzero()[0])] for w, r in ranks.items()}

    assert check("03.3", persistence_ranks=persistence_ranks, **notebook).passed_all
    best_over_tokens = check("03.3", persistence_ranks=lambda snaps, tok, words: {
        w: r.min(dim=1).values for w, r in snaps.label_ranks(tok, words).items()}, **notebook)
    assert not best_over_tokens.passed_all and "but that virtual token ranks it" in messages(best_over_tokens)
    assert "define `persistence_ranks` first" in messages(check("03.3", persistence_ranks=None, **notebook))


def test_03_4_projection_gap(notebook):
    @torch.no_grad()
    def projection_gap(prompt_model, tokenizer, inputs):
        hard = sp.hard_prompt_model(prompt_model, project_to_tokens(prompt_model, tokenizer))
        return (prompt_model(**inputs).logits - hard(**inputs).logits).abs().max().item()

    assert check("03.4", projection_gap=projection_gap, **notebook).passed_all

    @torch.no_grad()
    def against_no_prompt(prompt_model, tokenizer, inputs):
        return (prompt_model(**inputs).logits - prompt_model.base_model(**inputs).logits).abs().max().item()

    wrong = check("03.4", projection_gap=against_no_prompt, **notebook)
    assert not wrong.passed_all and "the logits must be identical (a gap of exactly 0)" in messages(wrong)
    never = check("03.4", projection_gap=lambda pm, tok, inputs: 0.0, **notebook)
    assert "a RANDOM prompt" in messages(never) and "differ by up to" in messages(never)
    assert "define `projection_gap` first" in messages(check("03.4", projection_gap=None, **notebook))


def steered(reduce=torch.sum, detached=False):
    def make_steered_loss(steer_ids, gamma):
        def loss_fn(pm, batch):
            P = prompt_matrix(pm) if detached else pm.prompt_encoder.embedding.weight  # (T, d)
            targets = pm.word_embeddings.weight[steer_ids.to(P.device)].float()  # (T, d)
            return default_loss(pm, batch) + gamma * reduce(1 - F.cosine_similarity(P, targets.to(P.device), dim=-1))

        return loss_fn

    return make_steered_loss


def test_03_5_make_steered_loss(notebook):
    assert check("03.5", make_steered_loss=steered(), **notebook).passed_all
    mean = check("03.5", make_steered_loss=steered(reduce=torch.mean), **notebook)
    assert not mean.passed_all and "a mean over the virtual tokens?" in messages(mean)
    detached = check("03.5", make_steered_loss=steered(detached=True), **notebook)
    assert "the pull does not reach the prompt's trainable weights" in messages(detached)
    assert "define `make_steered_loss` first" in messages(check("03.5", make_steered_loss=None, **notebook))
