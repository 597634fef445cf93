"""Exercise 03.3 (★★): persistence_ranks(snaps, tokenizer, label_words) -> {word: (S,) tensor}. For each label word,
its rank (1 = nearest) among the neighbours of the virtual token that started on it (the one whose nearest token at
the first snapshot is that word), at every snapshot: class label persistence (Lester et al. 2021, §7)."""

import torch
from otter.test_files import test_case

import softprompt as sp
from softprompt.exercises import fresh_seed, notebook_needs, require, same_shape
from softprompt.neighbors import embedding_matrix, label_token_ids

OK_FORMAT = False
name = "03.3"
points = 2


def _snapshots(model, tokenizer, label_words, seed: int, steal: bool):
    """Snapshots of a prompt whose label slots start on the label words and drift away. ``steal``: at the last
    snapshot the label slots sit on other words and other virtual tokens exactly on the label words (the best rank
    over all virtual tokens is then 1, the rank at the slot that started on the label is not)."""
    gen = torch.Generator().manual_seed(seed)
    E = embedding_matrix(model)  # (V, d) float32
    ids = label_token_ids(tokenizer, label_words)  # the first token of " " + word, as CLASS_LABELS init uses
    K, T = len(ids), 2 * len(ids) + 2
    slots = torch.randperm(T, generator=gen)[:K].tolist()  # where each label word starts
    thieves = [t for t in range(T) if t not in slots][:K]  # the virtual tokens that move onto them at the end
    others = torch.tensor([i for i in range(E.shape[0]) if i not in ids])  # (V - K,): never a label word
    fillers = others[torch.randint(len(others), (T,), generator=gen)]  # (T,)
    start = E[fillers].clone()  # (T, d)
    start[slots] = E[ids]
    scale = E.norm(dim=-1).mean() / E.shape[1] ** 0.5  # a typical coordinate's size
    snaps = sp.PromptSnapshots(every=5, word_embeddings=E)
    prompt = start
    for s in range(4):  # steps 0, 5, 10, 15: each a further random step away
        if s:
            prompt = prompt + 0.6 * scale * torch.randn(prompt.shape, generator=gen)
        if steal and s == 3:  # the label slots leave for other words; other virtual tokens take the labels' places
            prompt = prompt.clone()
            prompt[slots] = E[fillers[thieves]]
            prompt[thieves] = E[ids]
        snaps.record(prompt, step=5 * s)
    return snaps, dict(zip(label_words, slots))


def _compare(got, snaps, tokenizer, label_words, slots: dict, case: str) -> None:
    if not isinstance(got, dict) or sorted(got) != sorted(label_words):
        keys = sorted(got) if isinstance(got, dict) else type(got).__name__
        raise AssertionError(f"{case}: persistence_ranks should return a dict with one entry per label word "
                             f"{label_words}; got {keys}")
    ranks = snaps.label_ranks(tokenizer, label_words)  # {word: (S, T)}
    for word in label_words:
        expected = ranks[word][:, slots[word]]  # (S,)
        mine = same_shape(f"persistence_ranks(...)[{word!r}]", got[word], tuple(expected.shape),
                          "one rank per snapshot").cpu()
        bad = (mine.long() != expected).nonzero()
        if len(bad):
            s = int(bad[0])
            raise AssertionError(
                f"{case}: {word!r} (it started on virtual token {slots[word]}), snapshot {s} (step {snaps.steps[s]}): "
                f"rank {int(mine[s])}, but that virtual token ranks it {int(expected[s])} (ranks over the snapshots: "
                f"yours {mine.long().tolist()}, expected {expected.tolist()}; rank 1 is the nearest token)")


@test_case(points=1)
def test_drifting_label_tokens(persistence_ranks, model, tokenizer, task):
    persistence_ranks = require("persistence_ranks", persistence_ranks)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        snaps, slots = _snapshots(model, tokenizer, task.label_words, seed, steal=False)
        case = (f"label words {task.label_words} starting on virtual tokens {list(slots.values())}, drifting "
                f"(seed {seed})")
        got = persistence_ranks(snaps, tokenizer, task.label_words)
        _compare(got, snaps, tokenizer, task.label_words, slots, case)


@test_case(points=1)
def test_another_virtual_token_takes_the_label(persistence_ranks, model, tokenizer, task):
    persistence_ranks = require("persistence_ranks", persistence_ranks)
    notebook_needs(model=model, tokenizer=tokenizer, task=task)
    with fresh_seed() as seed:
        snaps, slots = _snapshots(model, tokenizer, task.label_words, seed, steal=True)
        case = (f"label words starting on virtual tokens {list(slots.values())}; at the last snapshot other virtual "
                f"tokens sit exactly on them (seed {seed})")
        got = persistence_ranks(snaps, tokenizer, task.label_words)
        _compare(got, snaps, tokenizer, task.label_words, slots, case)
