"""figures: every picture renders with Agg and shows the numbers it claims to."""

import io

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from softprompt import figures
from softprompt.snapshots import PromptSnapshots

matplotlib.use("Agg")


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=30)  # small: the test is that it renders
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    return buf.getvalue()


@pytest.fixture
def emb(llama):
    return llama.get_input_embeddings().weight.detach()


@pytest.fixture
def snaps(emb, tokenizer):
    ids = tokenizer.convert_tokens_to_ids("positive negative good".split())
    target = emb[tokenizer.convert_tokens_to_ids("movie film cold".split())]
    s = PromptSnapshots(every=1, word_embeddings=emb)
    for step in range(4):
        s.record(emb[ids] + (target - emb[ids]) * step / 3, step)
    return s


def test_similarity_heatmap_shows_the_cosines(emb, tokenizer):
    prompt = emb[tokenizer.convert_tokens_to_ids("positive good movie".split())]
    fig = figures.similarity_heatmap(prompt, emb, tokenizer, words=["positive", "negative"])
    assert isinstance(fig, Figure)
    png(fig)
    image = fig.axes[0].images[0].get_array()
    words = emb[tokenizer.convert_tokens_to_ids(["positive", "negative"])]
    expect = F.cosine_similarity(prompt[:, None], words[None], dim=-1)  # (3, 2)
    torch.testing.assert_close(torch.as_tensor(image.data), expect, rtol=1e-5, atol=1e-6)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["positive", "negative"]
    assert fig.axes[0].texts[0].get_text() == "1.00"  # v0 is "positive"


def test_figures_show_as_png_without_pyplot(emb):
    fig = figures.norm_histogram(emb[:2].clone(), emb)
    assert isinstance(fig, figures.NotebookFigure)
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # what Jupyter calls when no inline backend runs


def test_pca_paths_projects_onto_vocabulary_components(snaps, emb, tokenizer):
    fig = figures.pca_paths(snaps, tokenizer=tokenizer, highlight_words=["positive"], n_vocab=50)
    png(fig)
    mean, comps, ids = figures.pca_basis(emb, 50, seed=0)
    assert comps.shape == (2, 32) and len(ids) == 50
    torch.testing.assert_close(comps @ comps.T, torch.eye(2), atol=1e-5, rtol=0)  # orthonormal
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3  # one path per virtual token
    expect = (snaps.prompts[:, 0] - mean) @ comps.T  # (S, 2): v0's path
    torch.testing.assert_close(torch.as_tensor(lines[0].get_xydata(), dtype=torch.float32), expect,
                               atol=1e-4, rtol=1e-4)
    assert "steps 0→3" in ax.get_title()
    assert any(t.get_text() == "positive" for t in ax.texts)


def test_pca_of_a_single_prompt_draws_no_path(emb):
    fig = figures.pca_paths(emb[:4].clone(), word_embeddings=emb, n_vocab=30)
    png(fig)
    assert fig.axes[0].get_lines() == []


def test_norm_histogram_marks_prompt_norms(snaps, emb):
    fig = figures.norm_histogram(snaps)
    png(fig)
    xs = sorted(line.get_xdata()[0] for line in fig.axes[0].get_lines())
    expect = sorted(snaps.prompts[-1].norm(dim=-1).tolist() + snaps.prompts[0].norm(dim=-1).tolist())
    assert xs == pytest.approx(expect, rel=1e-5)


def test_snapshot_plots(snaps, tokenizer):
    fig = figures.drift_plot(snaps)
    png(fig)
    mean_line = fig.axes[0].get_lines()[-1]
    assert mean_line.get_ydata().tolist() == pytest.approx(snaps.distance_from_init().mean(1).tolist())
    fig = figures.label_rank_plot(snaps, tokenizer, ["positive", "negative"])
    png(fig)
    assert fig.axes[0].get_lines()[0].get_ydata()[0] == 1  # "positive" starts as v0's nearest token


def test_draws_into_given_pyplot_axes(emb, tokenizer):
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2)
    try:
        assert figures.norm_histogram(emb[:3].clone(), emb, ax=a) is fig
        assert figures.similarity_heatmap(emb[:3].clone(), emb, tokenizer, ["good"], ax=b) is fig
        assert b.images
    finally:
        plt.close(fig)


def test_bad_input(emb, tokenizer):
    with pytest.raises(ValueError, match="words="):
        figures.similarity_heatmap(emb[:2].clone(), emb, tokenizer, words=[])
    with pytest.raises(ValueError, match="d=16 but the word embeddings d=32"):
        figures.pca_paths(torch.randn(2, 16), word_embeddings=emb)
    with pytest.raises(ValueError, match="word_embeddings="):
        figures.norm_histogram(torch.randn(2, 32))


def test_confusion_heatmap_colours_row_shares_and_writes_counts():
    result = {"confusion": [[6, 2], [1, 3]], "label_words": ["negative", "positive"], "accuracy": 0.75}
    fig = figures.confusion_heatmap(result)
    ax = fig.axes[0]
    shown = ax.images[0].get_array()
    assert abs(float(shown[0, 0]) - 0.75) < 1e-6 and abs(float(shown[1, 1]) - 0.75) < 1e-6  # 6/8 and 3/4
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "3", "6"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["negative", "positive"]
    assert "0.750" in ax.get_title()
    assert png(fig)[:4] == b"\x89PNG"
