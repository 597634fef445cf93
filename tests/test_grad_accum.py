"""Gradient accumulation (TrainingConfig.grad_accum_steps) and the max_length / batch_size memory knobs.

Accumulating n micro-batches gives the whole batch's gradient (to float rounding: allclose at rtol 1e-4,
atol 1e-6), also when rows carry different numbers of label tokens; a few train() steps give the same
prompt (allclose at 1e-5) and loss history (1e-5 relative).
"""

import pytest
import torch

import softprompt.training as training
from softprompt import evaluate
from softprompt.batching import Batches, loss_items, training_rows
from softprompt.config import PromptTuningConfig
from softprompt.prompt_model import get_prompt_model
from softprompt.serving import PromptBank, evaluate_ensemble
from softprompt.testing import tiny_model, tiny_tokenizer
from softprompt.training import TrainingConfig, default_loss, plain_loss, train
from softprompt.waywardness import measure_waywardness
from test_training import prompt_model, toy_task

UNEVEN = ("bad", "very good")  # a one-token and a two-token label word: rows carry different label counts


def gradient(pm, loss_fn, parts):
    pm.zero_grad(set_to_none=True)
    for batch, weight in parts:
        loss = loss_fn(pm, batch)
        (loss if weight is None else loss * weight).backward()
    return torch.cat([p.grad.flatten() for p in pm.parameters() if p.requires_grad])


@pytest.mark.parametrize("arch,task_type", [("llama", "CAUSAL_LM"), ("gpt2", "CAUSAL_LM"), ("t5", "SEQ_2_SEQ_LM"),
                                            ("bert", "SEQ_CLS")])
@pytest.mark.parametrize("n", [2, 4])
def test_accumulated_gradient_equals_the_whole_batch_gradient(arch, task_type, n):
    task = toy_task(label_words=UNEVEN)
    tok = tiny_tokenizer("left" if task_type == "CAUSAL_LM" else "right")
    pm = get_prompt_model(tiny_model(arch), PromptTuningConfig(task_type=task_type, num_virtual_tokens=4))
    pm.eval()  # gpt2/t5/bert have dropout: compare in eval mode, where the forward is deterministic
    batches = Batches(pm, tok, [task], training_rows([task], None, 0), TrainingConfig(batch_size=8))
    batch = batches(0)
    parts = batches.split(batch, n)
    assert len(parts) == n and all(len(p["input_ids"]) == 8 // n for p, _ in parts)
    assert abs(sum(w for _, w in parts) - 1) < 1e-12
    if task_type != "SEQ_CLS":  # uneven label counts make the weights differ from 1/n
        assert len({loss_items(p) for p, _ in parts}) > 1 or n == 1
    for loss_fn in (plain_loss, default_loss):
        whole = gradient(pm, loss_fn, [(batch, None)])
        accumulated = gradient(pm, loss_fn, parts)
        torch.testing.assert_close(accumulated, whole, rtol=1e-4, atol=1e-6)
    if task_type != "SEQ_CLS":  # weighting each micro-batch 1/n instead would be wrong here: the check can fail
        naive = gradient(pm, plain_loss, [(p, 1 / n) for p, _ in parts])
        assert not torch.allclose(naive, whole, rtol=1e-4, atol=1e-6)


def test_a_trained_prompt_is_the_same_with_and_without_accumulation():
    def run(n):
        pm = prompt_model("llama")
        h = train(pm, tiny_tokenizer(), toy_task(label_words=UNEVEN), steps=5, batch_size=8, lr=0.1,
                  grad_accum_steps=n, progress=False)
        return pm.prompt_encoder.embedding.weight.detach().clone(), h

    ref, h_ref = run(1)
    for n in (2, 8):
        got, h = run(n)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        for (s1, a), (s2, b) in zip(h.loss, h_ref.loss):
            assert s1 == s2 and abs(a - b) <= 1e-5 * abs(b)
        for (_, a), (_, b) in zip(h.grad_norm, h_ref.grad_norm):
            assert abs(a - b) <= 1e-4 * abs(b)


def test_a_run_may_resume_with_another_grad_accum_steps(tmp_path):
    """grad_accum_steps is not in the resume fingerprint: it does not change a step beyond float rounding."""
    kw = dict(batch_size=8, lr=0.1, schedule="constant", progress=False)
    whole = prompt_model("llama")
    train(whole, tiny_tokenizer(), toy_task(), steps=4, **kw)
    train(prompt_model("llama"), tiny_tokenizer(), toy_task(), steps=2, checkpoint_dir=tmp_path, **kw)
    resumed = prompt_model("llama")
    h = train(resumed, tiny_tokenizer(), toy_task(), steps=4, checkpoint_dir=tmp_path, grad_accum_steps=4, **kw)
    assert [s for s, _ in h.loss] == [1, 2, 3, 4]
    torch.testing.assert_close(resumed.prompt_encoder.embedding.weight, whole.prompt_encoder.embedding.weight,
                               rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ max_length and eval batch size everywhere

def test_max_length_bounds_every_evaluation_entry_point():
    tok, task = tiny_tokenizer(), toy_task()
    pm = prompt_model("llama")
    seen = []
    hook = pm.base_model.register_forward_pre_hook(
        lambda m, args, kw: seen.append((kw.get("inputs_embeds") if kw.get("inputs_embeds") is not None
                                         else kw["input_ids"]).shape[1]), with_kwargs=True)
    full = evaluate(pm, tok, task, "validation", use_cache=False)
    longest = max(seen)
    seen.clear()
    cut = evaluate(pm, tok, task, "validation", use_cache=False, max_length=11, batch_size=4)
    assert max(seen) <= 11 < longest and cut["n"] == full["n"] == 16  # prompt (T=4) + text + ... <= 11
    seen.clear()
    evaluate(pm, tok, task, "validation", method="generate", max_new_tokens=2, max_length=12, max_examples=4)
    assert max(seen) <= 12 - 2  # room kept for the new tokens
    seen.clear()
    report = measure_waywardness(pm, tok, task, "validation", max_length=11, max_examples=4, use_cache=False)
    assert max(seen) <= 11 and report.soft["n"] == 4
    bank = PromptBank(pm.base_model, tok)  # the prompt's keys/values cached: the forward sees the tokens only
    bank.add("p", pm.prompt_encoder.weight.detach(), task=task)
    seen.clear()
    assert evaluate_ensemble(bank, task, ["p"], "validation")["n"] == 16
    assert max(seen) == longest - 4
    seen.clear()
    assert evaluate_ensemble(bank, task, ["p"], "validation", max_length=11)["n"] == 16
    assert max(seen) <= 11 - 4
    hook.remove()


def test_training_passes_max_length_and_eval_batch_size_to_its_evaluations(monkeypatch):
    calls = []
    real = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    train(prompt_model("llama"), tiny_tokenizer(), toy_task(), steps=2, batch_size=4, eval_every=2, max_length=12,
          eval_batch_size=5, progress=False)
    assert calls and all(kw["max_length"] == 12 and kw["batch_size"] == 5 for kw in calls)
