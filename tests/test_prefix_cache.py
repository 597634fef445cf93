"""PromptPrefixCache: cached outputs equal the uncached path (tiny Llama and GPT-2, left-padded batches)."""

import pytest
import torch

from softprompt.positions import causal_position_ids
from softprompt.prefix_cache import PromptPrefixCache
from softprompt.testing import tiny_model

TEXTS = ["the movie was good", "bad", "i love this film very much , really"]
T = 5


def _batch(tokenizer, texts=TEXTS):
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def _uncached(model, prompt, ids, mask, **kw):
    """The oracle: [prompt][pads][tokens] through the model in one go, positions from the mask."""
    B, d = ids.shape[0], prompt.shape[-1]
    embeds = torch.cat([prompt.expand(B, -1, d), model.get_input_embeddings()(ids)], dim=1)
    full = torch.cat([torch.ones(B, prompt.shape[-2], dtype=mask.dtype), mask], dim=1)
    pos = (full.cumsum(-1) - 1).masked_fill(full == 0, 0)
    with torch.no_grad():
        return model(inputs_embeds=embeds, attention_mask=full, position_ids=pos, **kw)


@pytest.fixture
def prompt():
    return torch.randn(T, 32, generator=torch.Generator().manual_seed(1)) * 0.5


def test_position_ids_follow_the_mask():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert causal_position_ids(mask, 3, pad_position=0).tolist() == [[0, 0, 3, 4], [3, 4, 5, 6]]


@pytest.mark.parametrize("keep", [0, 1, 2])
def test_logits_equal_uncached(causal_arch, tokenizer, prompt, keep):
    model = tiny_model(causal_arch)
    ids, mask = _batch(tokenizer)
    cache = PromptPrefixCache.from_prompt(model, prompt)
    got = cache.logits(ids, mask, logits_to_keep=keep)
    ref = _uncached(model, prompt, ids, mask).logits[:, T:]  # (B, L, V)
    if keep:
        ref = ref[:, -keep:]
    else:  # pad positions are meaningless in both paths
        got, ref = got * mask[..., None], ref * mask[..., None]
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_a_row(causal_arch, tokenizer, prompt):
    model = tiny_model(causal_arch)
    ids, mask = _batch(tokenizer)
    cache = PromptPrefixCache.from_prompt(model, prompt)
    batched = cache.logits(ids, mask)  # (B, 1, V)
    for i, text in enumerate(TEXTS):
        alone = cache.logits(*_batch(tokenizer, [text]))
        torch.testing.assert_close(batched[i], alone[0], atol=1e-5, rtol=1e-5)


def test_generate_is_token_identical(causal_arch, tokenizer, prompt):
    model = tiny_model(causal_arch, seed=3)
    ids, mask = _batch(tokenizer)
    cache = PromptPrefixCache.from_prompt(model, prompt)
    kw = dict(max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
    greedy = cache.generate(ids, mask, do_sample=False, **kw)
    B = ids.shape[0]
    embeds = torch.cat([prompt.expand(B, T, 32), model.get_input_embeddings()(ids)], dim=1)
    full = torch.cat([torch.ones(B, T, dtype=mask.dtype), mask], dim=1)
    with torch.no_grad():
        ref = model.generate(inputs_embeds=embeds, attention_mask=full, do_sample=False, **kw)
    assert greedy.shape == (B, 8)
    assert torch.equal(greedy, ref)
    # Sampling with the same seed draws the same tokens only if every step's distribution matches.
    torch.manual_seed(7)
    sampled = cache.generate(ids, mask, do_sample=True, top_k=0, **kw)
    torch.manual_seed(7)
    with torch.no_grad():
        ref = model.generate(inputs_embeds=embeds, attention_mask=full, do_sample=True, top_k=0, **kw)
    assert torch.equal(sampled, ref)
    assert len(set(sampled.flatten().tolist())) > 3  # the test can tell tokens apart
    # generate repeats rows for beams and returned sequences; the cache must follow.
    for extra in (dict(num_beams=3, do_sample=False), dict(num_return_sequences=2, do_sample=True, top_k=0)):
        torch.manual_seed(7)
        got = cache.generate(ids, mask, **extra, **kw)
        torch.manual_seed(7)
        with torch.no_grad():
            ref = model.generate(inputs_embeds=embeds, attention_mask=full, **extra, **kw)
        assert torch.equal(got, ref)


def test_rebuilds_only_when_the_prompt_changes(tokenizer, prompt, llama):
    ids, mask = _batch(tokenizer)
    cache = PromptPrefixCache.from_prompt(llama, prompt)
    first = cache.logits(ids, mask)
    cache.logits(ids, mask)
    assert cache.builds == 1
    prompt.add_(0.3)  # e.g. an optimizer step
    second = cache.logits(ids, mask)
    assert cache.builds == 2
    assert not torch.allclose(first, second)
    torch.testing.assert_close(second, _uncached(llama, prompt, ids, mask).logits[:, -1:], atol=1e-5, rtol=1e-5)


def test_bad_inputs(tokenizer, prompt, llama):
    with pytest.raises(ValueError, match="width"):
        PromptPrefixCache.from_prompt(llama, torch.zeros(T, 16))
    with pytest.raises(ValueError, match="shape"):
        PromptPrefixCache.from_prompt(llama, torch.zeros(2, T, 32))
    with pytest.raises(TypeError, match="from_prompt"):
        PromptPrefixCache(llama)
    cache = PromptPrefixCache.from_prompt(llama, prompt)
    right = tokenizer(TEXTS, return_tensors="pt", padding=True, padding_side="right")
    with pytest.raises(ValueError, match="LEFT padded"):
        cache.logits(right["input_ids"], right["attention_mask"])
    ids, mask = _batch(tokenizer)
    with pytest.raises(ValueError, match="past_key_values"):
        cache.generate(ids, mask, past_key_values=None)


def test_prompt_model_forward_and_generate(causal_arch, tokenizer):
    from softprompt.config import PromptTuningConfig
    from softprompt.prompt_model import get_prompt_model

    pm = get_prompt_model(tiny_model(causal_arch, seed=3), PromptTuningConfig(task_type="CAUSAL_LM",
                                                                              num_virtual_tokens=T, seed=0)).eval()
    ids, mask = _batch(tokenizer)
    cache = PromptPrefixCache(pm)
    with torch.no_grad():
        ref = pm(input_ids=ids, attention_mask=mask, logits_to_keep=2).logits
    real = mask[:, -2:, None]  # the short row has a pad among its last two positions
    torch.testing.assert_close(cache.logits(ids, mask, logits_to_keep=2) * real, ref * real, atol=1e-5, rtol=1e-5)
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert torch.equal(cache.generate(ids, mask, **kw), pm.generate(ids, mask, **kw))
    with pytest.raises(ValueError, match="not multitask"):
        PromptPrefixCache(pm, task_id=0)


@pytest.mark.slow
def test_smollm2_cached_logits_equal_prompt_model(smollm2):
    """The real default model (GQA, tied embeddings, RoPE): cached == uncached, left padding included."""
    from softprompt.config import PromptTuningConfig
    from softprompt.prompt_model import get_prompt_model

    model, tok = smollm2
    pm = get_prompt_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, seed=0)).eval()
    enc = tok(["Review: a fine film.\nSentiment:", "Review: dull.\nSentiment:"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = pm(**enc, logits_to_keep=1).logits
    torch.testing.assert_close(PromptPrefixCache(pm).logits(enc["input_ids"], enc["attention_mask"]), ref,
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("keep", [0, 3])
def test_shared_prompt_forward_equals_prompt_model_loss_and_grad(causal_arch, tokenizer, keep):
    from softprompt.config import PromptTuningConfig
    from softprompt.prefix_cache import shared_prompt_forward
    from softprompt.prompt_model import get_prompt_model

    pm = get_prompt_model(tiny_model(causal_arch), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T,
                                                                      seed=0))
    pm.eval()  # no dropout (tiny GPT-2 has some); gradients flow all the same
    ids, mask = _batch(tokenizer, ["the movie was good", "it was bad", "i love this film very much , really"])
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-2] = -100  # a target at the end of every row, after a real token, as in a task's causal batch
    losses, grads = [], []
    for fn in (lambda: pm(input_ids=ids, attention_mask=mask, labels=labels, logits_to_keep=keep),
               lambda: shared_prompt_forward(pm, ids, mask, labels, logits_to_keep=keep)):
        pm.zero_grad()
        out = fn()
        out.loss.backward()
        losses.append(out.loss.detach())
        grads.append(next(p for p in pm.prompt_encoder.parameters() if p.requires_grad).grad.clone())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)
