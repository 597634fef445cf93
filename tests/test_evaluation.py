"""evaluate(): rank classification vs a row-by-row oracle, the prefix cache, generation, seq2seq, SEQ_CLS."""

import random

import pytest
import torch
from datasets import Dataset

from softprompt.config import PromptTuningConfig
from softprompt.evaluation import evaluate, match_label, summarize
from softprompt.prompt_model import get_prompt_model
from softprompt.serving import evaluate_ensemble
from softprompt.tasks.task import Task
from softprompt.testing import tiny_model, tiny_tokenizer

WORDS = "the movie film was is very really good bad great awful i love hate this food service".split()


def make_task(n=23, label_words=("positive", "negative"), seed=0, labels=None):
    rng = random.Random(seed)
    rows = [{"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))),
             "label": rng.randrange(len(label_words)) if labels is None else labels[i]} for i in range(n)]
    return Task("toy", "sentiment", "a toy task", {"test": Dataset.from_list(rows)}, "review : {text} sentiment :",
                list(label_words), source="custom")


def prompt_model(arch="llama", T=4, seed=0, task_type="CAUSAL_LM"):
    return get_prompt_model(tiny_model(arch, seed=seed), PromptTuningConfig(task_type=task_type, num_virtual_tokens=T,
                                                                            seed=seed))


def oracle_scores(pm, tokenizer, task):
    """Each example alone (no padding, no cache, full logits): log-probs of the label words' first tokens."""
    firsts = [ids[0] for ids in task.label_token_ids(tokenizer)]
    out = []
    pm.eval()  # no dropout (tiny GPT-2 has some)
    for ex in task.splits["test"]:
        ids = torch.tensor([tokenizer(task.format(ex))["input_ids"]])
        with torch.no_grad():
            logits = pm(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]  # (V,)
        out.append(logits.log_softmax(-1)[firsts])
    return torch.stack(out)  # (N, K)


@pytest.mark.parametrize("use_cache", [True, False])
def test_rank_matches_row_by_row_oracle(causal_arch, tokenizer, use_cache):
    pm, task = prompt_model(causal_arch), make_task()
    res = evaluate(pm, tokenizer, task, batch_size=5, use_cache=use_cache, return_predictions=True)
    ref = oracle_scores(pm, tokenizer, task)
    torch.testing.assert_close(res["scores"], ref, atol=1e-5, rtol=1e-5)
    labels = task.splits["test"]["label"]
    assert res["predictions"] == ref.argmax(-1).tolist()
    assert res["n"] == 23 and res["labels"] == labels
    assert res["accuracy"] == pytest.approx(sum(p == y for p, y in zip(res["predictions"], labels)) / 23)


def test_length_sorting_changes_nothing_but_the_batches(tokenizer):
    from softprompt.evaluation import length_order

    pm, task = prompt_model("gpt2"), make_task()
    order = length_order(task, tokenizer, task.splits["test"])
    assert order != list(range(23)) and sorted(order) == list(range(23))  # the toy data is not sorted already
    a = evaluate(pm, tokenizer, task, batch_size=5, return_predictions=True)
    b = evaluate(pm, tokenizer, task, batch_size=5, sort_by_length=False, return_predictions=True)
    torch.testing.assert_close(a["scores"], b["scores"], atol=1e-5, rtol=1e-5)
    assert a["predictions"] == b["predictions"] and a["confusion"] == b["confusion"]
    a = evaluate(pm, tokenizer, task, method="generate", batch_size=5, return_predictions=True)
    b = evaluate(pm, tokenizer, task, method="generate", batch_size=5, sort_by_length=False, return_predictions=True)
    assert a["generations"] == b["generations"]


def test_cache_is_built_once_per_call(tokenizer, monkeypatch):
    from softprompt import prefix_cache

    built = []
    original = prefix_cache.PromptPrefixCache._fresh_cache

    def spy(self):
        before = self.builds
        out = original(self)
        built.extend([1] * (self.builds - before))
        return out

    monkeypatch.setattr(prefix_cache.PromptPrefixCache, "_fresh_cache", spy)
    evaluate(prompt_model(), tokenizer, make_task(), batch_size=4)  # 6 batches
    assert len(built) == 1


def test_summary_counts():
    res = summarize([0, 1, 1, -1, 2, 0], [0, 1, 0, 2, 2, 1], ["a", "b", "c"])
    assert res["confusion"] == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert res["correct"] == 3 and res["n"] == 6 and res["accuracy"] == 0.5 and res["unmatched"] == 1
    assert res["per_class"]["c"] == {"n": 2, "correct": 1, "predicted": 1, "accuracy": 0.5}


@pytest.mark.parametrize("text,expected", [
    ("positive", 0), (" Positive.", 0), ("negative\nreview", 1), ("positively", -1), ("neg", -1),
    ("very positive", 2), ("very positive !", 2), ("", -1),
])
def test_match_label(text, expected):
    assert match_label(text, ["positive", "negative", "very positive"]) == expected


def test_generate_exact_match(causal_arch, tokenizer):
    pm = prompt_model(causal_arch, seed=3)
    task = make_task(n=12)
    ids = [torch.tensor([tokenizer(task.format(ex))["input_ids"]]) for ex in task.splits["test"]]
    firsts = [pm.generate(i, torch.ones_like(i), max_new_tokens=1, do_sample=False, pad_token_id=0)[0, 0].item()
              for i in ids]
    common = max(set(firsts), key=firsts.count)
    word = tokenizer.convert_ids_to_tokens(common)
    other = "banana" if word != "banana" else "cherry"
    labels = [0 if i % 2 else 1 for i in range(len(firsts))]
    task = make_task(n=12, label_words=(word, other), labels=labels)  # same texts, chosen labels
    expected = sum((f == common) == (y == 0) for f, y in zip(firsts, labels)) / len(firsts)
    for use_cache in (True, False):
        res = evaluate(pm, tokenizer, task, method="generate", batch_size=6, use_cache=use_cache,
                       return_predictions=True)
        assert res["accuracy"] == pytest.approx(expected)
        assert res["method"] == "generate" and len(res["generations"]) == 12


def test_seq2seq_scores_first_decoder_step():
    tok = tiny_tokenizer("right")
    pm, task = prompt_model("t5", task_type="SEQ_2_SEQ_LM"), make_task(n=9)
    res = evaluate(pm, tok, task, batch_size=4, return_predictions=True)
    pm.eval()
    firsts = [ids[0] for ids in task.label_token_ids(tok)]
    for i, ex in enumerate(task.splits["test"]):
        ids = torch.tensor([tok(task.format(ex))["input_ids"]])
        start = torch.tensor([[pm.config.decoder_start_token_id]])
        with torch.no_grad():
            logits = pm(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=start).logits[0, -1]
        torch.testing.assert_close(res["scores"][i], logits.log_softmax(-1)[firsts], atol=1e-5, rtol=1e-5)


def test_seq_cls_uses_the_head():
    tok = tiny_tokenizer("right")
    pm, task = prompt_model("bert", task_type="SEQ_CLS"), make_task(n=9)
    res = evaluate(pm, tok, task, batch_size=4, return_predictions=True)
    enc = tok([task.format(ex) for ex in task.splits["test"]], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = pm(**enc).logits.log_softmax(-1)
    torch.testing.assert_close(res["scores"], ref, atol=1e-5, rtol=1e-5)


def test_zero_shot_plain_model_and_max_examples(tokenizer):
    res = evaluate(tiny_model("llama"), tokenizer, make_task(), max_examples=10, batch_size=3)
    assert res["n"] == 10 and sum(sum(r) for r in res["confusion"]) == 10


def test_training_modes_are_restored(tokenizer):
    pm = prompt_model("gpt2")
    pm.train()
    pm.base_model.eval()  # e.g. a frozen base model kept without dropout
    evaluate(pm, tokenizer, make_task(n=4))
    assert pm.training and pm.prompt_encoder.training and not pm.base_model.training


def test_bad_inputs(tokenizer):
    pm, task = prompt_model(), make_task(n=4)
    with pytest.raises(ValueError, match="no split 'validation'"):
        evaluate(pm, tokenizer, task, split="validation")
    with pytest.raises(ValueError, match="method"):
        evaluate(pm, tokenizer, task, method="vote")
    with pytest.raises(ValueError, match="LEFT"):
        evaluate(pm, tiny_tokenizer("right"), task)
    with pytest.raises(ValueError, match="task_id"):
        evaluate(pm, tokenizer, task, task_id=0)
    with pytest.raises(ValueError, match="max_examples"):
        evaluate(pm, tokenizer, task, max_examples=0)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(pm, tokenizer, task, batch_size=0)
    with pytest.raises(ValueError, match="PromptBank"):
        evaluate_ensemble(pm, task, ["a"])


def test_multitask_prompt_needs_and_uses_task_id(tokenizer, tmp_path):
    from softprompt.multitask import MultitaskPromptTuningConfig
    from softprompt.prefix_cache import PromptPrefixCache
    from softprompt.serving import PromptBank

    cfg = MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, num_tasks=3, seed=0,
                                      task_factor_init="PEFT")  # task prompts differ from step 0
    pm, task = get_prompt_model(tiny_model("llama"), cfg).eval(), make_task(n=7)
    with pytest.raises(ValueError, match="task_id is required"):
        evaluate(pm, tokenizer, task)
    with pytest.raises(ValueError, match="task_id is required"):
        PromptPrefixCache(pm)
    firsts = [ids[0] for ids in task.label_token_ids(tokenizer)]
    results = {}
    for k in (0, 2):
        res = evaluate(pm, tokenizer, task, task_id=k, batch_size=3, return_predictions=True)
        assert torch.allclose(res["scores"], evaluate(pm, tokenizer, task, task_id=k, use_cache=False,
                                                      return_predictions=True)["scores"], atol=1e-5)
        ex = task.splits["test"][4]
        ids = torch.tensor([tokenizer(task.format(ex))["input_ids"]])
        with torch.no_grad():
            ref = pm(input_ids=ids, attention_mask=torch.ones_like(ids), task_ids=torch.tensor([k])).logits[0, -1]
        torch.testing.assert_close(res["scores"][4], ref.log_softmax(-1)[firsts], atol=1e-5, rtol=1e-5)
        results[k] = res["scores"]
    assert not torch.allclose(results[0], results[2])
    pm.save_pretrained(tmp_path / "mpt")
    bank = PromptBank(pm.base_model, tokenizer)
    assert bank.load_dir(tmp_path) == ["mpt/0", "mpt/1", "mpt/2"]
    torch.testing.assert_close(bank["mpt/2"], pm.get_prompt(1, task_ids=torch.tensor([2]))[0].detach())
