"""PromptBank: each row of a mixed batch equals that row run alone with its own prompt; ensembles vote."""

import pytest
import torch
from test_evaluation import make_task

from softprompt.config import PromptTuningConfig
from softprompt.evaluation import evaluate
from softprompt.prompt_model import get_prompt_model
from softprompt.serving import PromptBank, ensemble_predict, evaluate_ensemble, majority_vote
from softprompt.testing import tiny_model

TEXTS = ["the movie was good", "bad", "i love this film very much , really", "great food"]


def prompts_on(model, lengths=(3, 6), seeds=None):
    """PromptModels sharing one frozen base model, one per prompt length."""
    seeds = seeds or range(len(lengths))
    return [get_prompt_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, seed=s)).eval()
            for T, s in zip(lengths, seeds)]


@pytest.fixture
def setup(causal_arch, tokenizer):
    model = tiny_model(causal_arch, seed=3)
    pms = prompts_on(model)
    bank = PromptBank(model, tokenizer)
    bank.add("short", pms[0]).add("long", pms[1])
    return model, pms, bank


@pytest.mark.parametrize("use_cache", [True, False])
def test_mixed_rows_equal_rows_alone(setup, tokenizer, use_cache):
    model, pms, bank = setup
    names = ["short", "long", "long", "short"]
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    assert bank._cache_for(names, 6) is not None  # tiny Llama and GPT-2 caches can be gathered row by row
    full = bank.forward(enc["input_ids"], enc["attention_mask"], names=names, use_cache=use_cache).logits
    last = bank.logits(enc["input_ids"], enc["attention_mask"], names=names)  # (B, 1, V)
    assert full.shape[:2] == enc["input_ids"].shape and last.shape[1] == 1
    for i, (text, name) in enumerate(zip(TEXTS, names)):
        alone = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            ref = pms[name == "long"](**alone).logits[0]  # (L_i, V)
        torch.testing.assert_close(full[i, -ref.shape[0]:], ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(last[i, 0], ref[-1], atol=1e-5, rtol=1e-5)


def test_mixed_generate_equals_alone(setup, tokenizer):
    _, pms, bank = setup
    names = ["long", "short", "short", "long"]
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    cached = bank.generate(enc["input_ids"], enc["attention_mask"], names=names, **kw)
    bank.use_cache = False
    uncached = bank.generate(enc["input_ids"], enc["attention_mask"], names=names, **kw)
    assert torch.equal(cached, uncached)
    beams = dict(kw, num_beams=2, num_return_sequences=2)
    uncached = bank.generate(enc["input_ids"], enc["attention_mask"], names=names, **beams)
    bank.use_cache = True
    assert torch.equal(bank.generate(enc["input_ids"], enc["attention_mask"], names=names, **beams), uncached)
    for i, (text, name) in enumerate(zip(TEXTS, names)):
        alone = tokenizer([text], return_tensors="pt")
        ref = pms[name == "long"].generate(alone["input_ids"], alone["attention_mask"], **kw)[0]
        assert torch.equal(cached[i], ref)
    assert len(set(cached.flatten().tolist())) > 2  # the prompts make a difference the test can see


def test_add_from_dir_tensor_and_load_dir(tmp_path, tokenizer, llama):
    pms = prompts_on(llama, (3, 5))
    pms[0].save_pretrained(tmp_path / "a")
    pms[1].save_pretrained(tmp_path / "b")
    bank = PromptBank(pms[0], tokenizer)  # a PromptModel stands for its base model
    assert bank.model is llama
    assert bank.load_dir(tmp_path) == ["a", "b"]
    torch.testing.assert_close(bank["b"], pms[1].get_prompt(1)[0].detach())
    bank.add("c", tmp_path / "a").add("d", torch.zeros(2, 32))
    assert bank.names == ["a", "b", "c", "d"] and len(bank) == 4 and "d" in bank
    assert "'b': T=5" in repr(bank)
    with pytest.raises(ValueError, match="replace=True"):
        bank.add("a", pms[0])
    with pytest.raises(ValueError, match=r"\(T, 32\)"):
        bank.add("e", torch.zeros(3, 16))
    with pytest.raises(ValueError, match="itself one saved prompt"):
        bank.load_dir(tmp_path / "a")
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(KeyError, match="no prompt named"):
        bank.logits(ids, names=["a", "zz"])
    with pytest.raises(ValueError, match="one per row"):
        bank.logits(ids, names=["a"])
    with pytest.raises(ValueError, match="LEFT"):
        bank.logits(ids, torch.tensor([[1, 1, 0], [1, 1, 1]]), names=["a", "b"])


def test_classify_mixes_tasks(tokenizer, llama):
    pms = prompts_on(llama, (3, 4))
    sentiment = make_task(n=6)
    colors = make_task(n=6, label_words=("red", "blue", "green"), seed=1)
    bank = PromptBank(llama, tokenizer).add("s", pms[0], task=sentiment).add("c", pms[1], task=colors)
    rows = list(sentiment.splits["test"])[:3] + list(colors.splits["test"])[:3]
    words, scores = bank.classify([r["text"] for r in rows], ["s", "s", "s", "c", "c", "c"], return_scores=True)
    ref_s = evaluate(pms[0], tokenizer, sentiment, max_examples=3, return_predictions=True)["scores"]
    ref_c = evaluate(pms[1], tokenizer, colors, max_examples=3, return_predictions=True)["scores"]
    torch.testing.assert_close(torch.stack(scores[:3]), ref_s, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(scores[3:]), ref_c, atol=1e-5, rtol=1e-5)
    assert words[3] == colors.label_words[int(ref_c[0].argmax())]
    with pytest.raises(ValueError, match="has no task"):
        PromptBank(llama, tokenizer).add("x", pms[0]).classify(["good"], ["x"])


def test_majority_vote_breaks_ties_by_mean_log_prob():
    lp = torch.log(torch.tensor([
        # example 0: votes 0, 1, 1 -> class 1 wins outright
        [[0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.2, 0.8, 0.0]],
        # example 1: votes 0, 2 (a tie); mean log-prob of class 2 is higher -> 2
        [[0.5, 0.2, 0.3], [0.1, 0.1, 0.8], [0.0, 0.0, 0.0]][:2] + [[0.34, 0.33, 0.33]],
    ]) + 1e-9)
    out = majority_vote(lp)
    assert out["member_predictions"].tolist() == [[0, 1, 1], [0, 2, 0]]
    assert out["votes"].tolist() == [[1, 2, 0], [2, 0, 1]]
    assert out["predictions"].tolist() == [1, 0]
    tie = torch.log(torch.tensor([[[0.6, 0.4], [0.1, 0.9]]]))  # one vote each; class 1 has the higher mean
    assert majority_vote(tie)["predictions"].tolist() == [1]


def test_ensemble_evaluate_matches_members(tokenizer, llama):
    pms = prompts_on(llama, (3, 4, 5), seeds=(0, 1, 2))
    task = make_task(n=10)
    bank = PromptBank(llama, tokenizer)
    for name, pm in zip("abc", pms):
        bank.add(name, pm, task=task)
    res = evaluate_ensemble(bank, task, ["a", "b", "c"], batch_size=4, return_predictions=True)
    singles = [evaluate(pm, tokenizer, task, return_predictions=True) for pm in pms]
    member_scores = torch.stack([s["scores"] for s in singles], dim=1)  # (N, P, K)
    torch.testing.assert_close(res["scores"], member_scores, atol=1e-5, rtol=1e-5)
    assert res["predictions"] == majority_vote(member_scores)["predictions"].tolist()
    assert res["members"] == pytest.approx({n: s["accuracy"] for n, s in zip("abc", singles)})
    direct = ensemble_predict(bank, task, [r["text"] for r in task.splits["test"]], ["a", "b", "c"])
    assert direct["predictions"].tolist() == res["predictions"]
    with pytest.raises(ValueError, match="ensemble"):
        evaluate(bank, tokenizer, task)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_bank_and_its_caches_run_under_autocast_as_evaluate_does(tokenizer, dtype):
    """The bank (cached and plain) and the prefix cache run the model under autocast, like evaluate: every route
    to a row's scores computes alike, and they agree within sp.tolerance of the dtype."""
    import softprompt as sp
    from softprompt.evaluation import class_scores
    from softprompt.precision import autocast

    model = tiny_model("llama", seed=3).to(dtype)
    pm = prompts_on(model, lengths=(4,))[0]
    task = make_task()
    seen = []
    model.register_forward_pre_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    rows = [task["test"][i] for i in range(4)]
    with autocast(model):
        alone = class_scores(pm, tokenizer, task, task["test"].select(range(4)))  # (4, K)
    for use_cache in (True, False):
        seen.clear()
        bank = PromptBank(model, tokenizer, use_cache=use_cache).add("p", pm, task=task)
        mixed = torch.stack(bank.class_scores(rows, ["p"] * 4))  # (4, K)
        assert seen and all(seen), "a model forward outside autocast"
        torch.testing.assert_close(mixed, alone.to(mixed.device), **sp.tolerance(dtype))
    seen.clear()
    evaluate(pm, tokenizer, task, max_examples=4, use_cache=True)
    assert seen and all(seen)
