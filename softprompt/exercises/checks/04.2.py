"""Exercise 04.2 (★★): vote_with_ties(scores) predicts what softprompt.serving.majority_vote predicts, ties included.

scores: ``(B, P, K)`` member log-probs -> ``(B,)`` class indices. Checked against the library on fresh scores with
even and odd numbers of members (many ties), and on two tables built by hand.
"""

import random

import torch
from otter.test_files import test_case

from softprompt.exercises import fresh_generator, require, same_shape, same_values
from softprompt.serving import majority_vote

OK_FORMAT = False
name = "04.2"
points = 3


def _log_probs(*rows):  # one example: a (P, K) table of member probabilities -> (1, P, K) log-probs
    return torch.tensor([rows]).log()


def _members(gen, B, P, K):
    """Fresh member log-probs: random logits at a random sharpness per member, (B, P, K)."""
    sharpness = torch.rand(B, P, 1, generator=gen) * 4  # some members sure, some lukewarm
    return (torch.randn(B, P, K, generator=gen) * sharpness).log_softmax(-1)


def _first_difference(got, scores):
    """Where the answer and majority_vote part: the example, its votes and mean log-probs, and both predictions."""
    ref = majority_vote(scores)
    bad = (torch.as_tensor(got) != ref["predictions"]).nonzero()
    if not len(bad):
        return None
    i = int(bad[0])
    mean = [round(x, 3) for x in ref["mean_log_probs"][i].tolist()]
    return (f"example {i} of {len(scores)} (P={scores.shape[1]} members, K={scores.shape[2]} classes): votes per class "
            f"{ref['votes'][i].tolist()}, mean log-probs {mean}; majority_vote predicts {int(ref['predictions'][i])}, "
            f"yours {int(torch.as_tensor(got)[i])}")


@test_case(points=1)
def test_one_prediction_per_example(vote_with_ties):
    vote_with_ties = require("vote_with_ties", vote_with_ties)
    scores = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0)).log_softmax(-1)  # (B=6, P=2, K=3)
    same_shape("vote_with_ties(scores)", vote_with_ties(scores), (6,), "one class index per example, for (B, P, K)")


@test_case(points=1)
def test_agrees_with_majority_vote_on_fresh_scores(vote_with_ties):
    vote_with_ties = require("vote_with_ties", vote_with_ties)
    rng = random.Random(fresh_generator().initial_seed())  # fresh inputs at every check
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    for P, K in ((2, 2), (4, 3), (3, 3), (5, 4)):  # even P: ties between two classes; P=3, K=3: three-way ties
        scores = _members(gen, 96, P, K)  # (96, P, K)
        got = same_shape("vote_with_ties(scores)", vote_with_ties(scores), (96,), f"for scores (96, {P}, {K})")
        where = _first_difference(got, scores)
        if where is not None:
            raise AssertionError(f"vote_with_ties and majority_vote disagree: {where}")


@test_case(points=1)
def test_ties_go_to_the_higher_mean_log_prob(vote_with_ties):
    vote_with_ties = require("vote_with_ties", vote_with_ties)
    # two members disagree, one vote each: the sure member's class 1 has the higher mean log-prob
    tie = _log_probs([0.1, 0.9], [0.55, 0.45])
    same_values("vote_with_ties(scores)", vote_with_ties(tie), torch.tensor([1]),
                "members (0.1, 0.9) and (0.55, 0.45), one vote each: the mean log-probs are (-1.45, -0.45), "
                "so the tie goes to class 1 (not to the lower class index)")
    # the tie-break averages log-probs, not probabilities: the two can pick different classes
    logs = _log_probs([0.9, 0.05, 0.05], [0.001, 0.6, 0.399])
    same_values("vote_with_ties(scores)", vote_with_ties(logs), torch.tensor([1]),
                "members (0.9, 0.05, 0.05) and (0.001, 0.6, 0.399), classes 0 and 1 tied: the mean log-probs are "
                "(-3.51, -1.75, -1.96), so class 1 (the mean probabilities would pick class 0)")
    # a clear majority wins even against a sure minority: votes count first, log-probs only break ties
    majority = _log_probs([0.55, 0.45], [0.55, 0.45], [0.01, 0.99])
    same_values("vote_with_ties(scores)", vote_with_ties(majority), torch.tensor([0]),
                "members (0.55, 0.45), (0.55, 0.45), (0.01, 0.99): two votes for class 0 against one, no tie "
                "(the mean log-probs alone would pick class 1)")
