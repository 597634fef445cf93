"""Exercise 04.3 (★★★): soft_vote(scores) averages the members' probabilities. scores: (B, P, K) log-probs.

compare_votes(scores, labels) sets the soft vote against the majority vote (softprompt.serving.majority_vote) on the
same examples: each vote's accuracy, the examples where the two predictions differ, how many of those each vote
gets right, and the exact McNemar test on them (a paired comparison: both votes are scored on the same examples).
"""

import math

import torch
from otter.test_files import test_case

from softprompt.exercises import fresh_generator, require, same_shape, same_values
from softprompt.serving import majority_vote
from softprompt.stats import mcnemar

OK_FORMAT = False
name = "04.3"
points = 5


def _log_probs(*rows):  # one example: a (P, K) table of member probabilities -> (1, P, K) log-probs
    return torch.tensor([rows]).log()


@test_case(points=1)
def test_one_prediction_per_example(soft_vote):
    soft_vote = require("soft_vote", soft_vote)
    scores = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0)).log_softmax(-1)  # (B=5, P=3, K=4)
    same_shape("soft_vote(scores)", soft_vote(scores), (5,), "one class index per example, for scores (B, P, K)")


@test_case(points=1)
def test_agrees_where_the_members_agree(soft_vote):
    soft_vote = require("soft_vote", soft_vote)
    gen = fresh_generator()  # fresh inputs at every check
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


KEYS = ("soft", "majority", "differ", "soft_only", "majority_only", "p_value")


def _reference(scores, labels):
    soft, hard = scores.exp().mean(1).argmax(-1), majority_vote(scores)["predictions"]  # (N,) each
    s_right, h_right = soft == labels, hard == labels  # (N,) each
    paired = mcnemar(s_right.tolist(), h_right.tolist())  # discordant counts and the exact McNemar p
    return {"soft": float(s_right.float().mean()), "majority": float(h_right.float().mean()),
            "differ": int((soft != hard).sum()), "soft_only": paired["a_only"], "majority_only": paired["b_only"],
            "p_value": paired["p_value"]}


def _answer(compare_votes, scores, labels):
    got = compare_votes(scores, labels)
    if not hasattr(got, "keys"):
        raise AssertionError(f"compare_votes should return a dict with the keys {list(KEYS)}; "
                             f"got a {type(got).__name__}")
    missing = [k for k in KEYS if k not in got]
    if missing:
        raise AssertionError(f"compare_votes(scores, labels) has no key {missing}; it should have {list(KEYS)}")
    return {k: float(torch.as_tensor(got[k]).float()) for k in KEYS}


def _compare(got, ref, case, keys=KEYS):
    meaning = {"soft": "the soft vote's accuracy", "majority": "the majority vote's accuracy",
               "differ": "examples where the two votes predict different classes",
               "soft_only": "examples only the soft vote gets right", "majority_only": "examples only the majority "
               "vote gets right", "p_value": "the exact two-sided McNemar p-value on the examples only one vote "
               "gets right (the votes are scored on the same examples: a paired test)"}
    for k in keys:
        if not math.isclose(got[k], ref[k], rel_tol=1e-6, abs_tol=1e-9):
            raise AssertionError(f"{case}: compare_votes(...)[{k!r}] is {got[k]:.6g}; expected {ref[k]:.6g} "
                                 f"({meaning[k]})")


def _ensemble(gen, N, P, K):
    """Fresh member log-probs (N, P, K), members at random sharpness, and labels that agree with them mostly."""
    logits = torch.randn(N, P, K, generator=gen) * torch.rand(N, P, 1, generator=gen) * 4  # (N, P, K)
    scores = logits.log_softmax(-1)
    labels = scores.exp().mean(1).multinomial(1, generator=gen).squeeze(1)  # (N,): drawn from the soft vote
    return scores, labels


@test_case(points=1)
def test_compare_votes_counts_the_differences(compare_votes):
    compare_votes = require("compare_votes", compare_votes)
    gen = fresh_generator()  # fresh inputs at every check
    for N, P, K in ((200, 3, 2), (150, 5, 3)):
        scores, labels = _ensemble(gen, N, P, K)
        expected = _reference(scores, labels)
        got = _answer(compare_votes, scores, labels)
        _compare(got, expected, f"{N} fresh examples, {P} members, {K} classes")


@test_case(points=1)
def test_compare_votes_is_a_paired_test(compare_votes):
    compare_votes = require("compare_votes", compare_votes)
    # 7 examples only the soft vote gets right, 1 only the majority, 2 both: p = 2 * 9 / 256 = 0.0703
    lukewarm_pair = [[0.55, 0.45], [0.55, 0.45], [0.01, 0.99]]  # majority 0, soft vote 1
    sure = [[0.9, 0.1]] * 3  # both votes 0
    scores = torch.tensor([lukewarm_pair] * 8 + [sure] * 2).log()  # (10, 3, 2)
    labels = torch.tensor([1] * 7 + [0] * 3)  # (10,)
    expected = _reference(scores, labels)
    got = _answer(compare_votes, scores, labels)
    _compare(got, expected, "10 examples: the votes differ on 8, the soft vote alone is right on 7, the majority "
             "vote alone on 1")
