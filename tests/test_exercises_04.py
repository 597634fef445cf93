"""Notebook 04's exercise checks: a right answer passes, wrong ones fail with a message that says what is wrong."""

import torch

from softprompt.exercises import check


def messages(result) -> str:
    return "\n".join(r.message for r in result.test_case_results if not r.passed)


def test_04_3_soft_vote():
    assert check("04.3", soft_vote=lambda scores: scores.exp().mean(1).argmax(-1)).passed_all
    assert check("04.3", soft_vote=lambda scores: scores.softmax(-1).mean(1).argmax(-1)).passed_all  # renormalized
    geometric = check("04.3", soft_vote=lambda scores: scores.mean(1).argmax(-1))
    assert not geometric.passed_all and "averaging log-probs instead picks class 1" in messages(geometric)
    majority = check("04.3", soft_vote=lambda scores: torch.mode(scores.argmax(-1), dim=1).values)
    assert not majority.passed_all and "a majority vote would pick class 0" in messages(majority)
    per_member = check("04.3", soft_vote=lambda scores: scores.argmax(-1))
    assert "expected (5,)" in messages(per_member)
    assert "define `soft_vote` first" in messages(check("04.3", soft_vote=None))
