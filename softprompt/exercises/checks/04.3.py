"""Exercise 04.3 (★★★): soft_vote(scores) averages the members' probabilities. scores: (B, P, K) log-probs."""

import torch
from otter.test_files import test_case

from softprompt.exercises import require, same_shape, same_values

OK_FORMAT = False
name = "04.3"
points = 3


def _log_probs(*rows):  # one example: a (P, K) table of member probabilities -> (1, P, K) log-probs
    return torch.tensor([rows]).log()


@test_case(points=1)
def test_one_prediction_per_example(soft_vote):
    soft_vote = require("soft_vote", soft_vote)
    scores = torch.randn(5, 3, 4).log_softmax(-1)  # (B=5, P=3, K=4)
    same_shape("soft_vote(scores)", soft_vote(scores), (5,), "one class index per example, for scores (B, P, K)")


@test_case(points=1)
def test_agrees_where_the_members_agree(soft_vote):
    soft_vote = require("soft_vote", soft_vote)
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)  # fresh inputs at every check
    scores = torch.randn(64, 1, 5, generator=gen).expand(-1, 3, -1).log_softmax(-1)  # (64, 3, 5): 3 equal members
    same_values("soft_vote(scores)", soft_vote(scores), scores[:, 0].argmax(-1),
                "three members with the same scores (the vote must be their common choice)")


@test_case(points=1)
def test_averages_probabilities(soft_vote):
    soft_vote = require("soft_vote", soft_vote)
    # two members sure of class 0, one sure of class 1: probabilities average to class 0 (0.60 against 0.40)
    sure = _log_probs([0.9, 0.1], [0.9, 0.1], [0.001, 0.999])
    same_values("soft_vote(scores)", soft_vote(sure), torch.tensor([0]),
                "members (0.9, 0.1), (0.9, 0.1), (0.001, 0.999): the mean probabilities are (0.60, 0.40) "
                "(averaging log-probs instead picks class 1)")
    # one member very sure of class 1, two members lukewarm about class 0: the majority says 0, the mean 1
    split = _log_probs([0.55, 0.45], [0.55, 0.45], [0.01, 0.99])
    same_values("soft_vote(scores)", soft_vote(split), torch.tensor([1]),
                "members (0.55, 0.45), (0.55, 0.45), (0.01, 0.99): the mean probabilities are (0.37, 0.63) "
                "(a majority vote would pick class 0)")
