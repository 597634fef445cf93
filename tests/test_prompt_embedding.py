"""PromptEmbedding: shapes, PEFT parity (attribute names, RANDOM and TEXT init), adapter tensors, tokenizer loading."""

import peft
import pytest
import torch

from softprompt.config import PromptTuningConfig
from softprompt.prompt_embedding import PromptEmbedding


def config(**kw):
    kw.setdefault("num_virtual_tokens", 5)
    return PromptTuningConfig(**kw)


def test_forward_shape_and_values(llama, tokenizer):
    p = PromptEmbedding(config(), llama.get_input_embeddings(), tokenizer)
    assert PromptEmbedding.needs_task_ids is False
    idx = torch.arange(5).repeat(3, 1)  # (B=3, T=5)
    out = p(idx)
    assert out.shape == (3, 5, 32)
    assert torch.equal(out[1], p.weight)
    assert torch.equal(p(torch.tensor([[4, 0]]))[0], p.weight[[4, 0]])


def test_state_dict_lines_up_with_peft(llama):
    emb = llama.get_input_embeddings()
    ours = PromptEmbedding(config(token_dim=32), emb)
    theirs = peft.PromptEmbedding(peft.PromptTuningConfig(num_virtual_tokens=5, token_dim=32,
                                                          num_transformer_submodules=1), emb)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    assert torch.equal(ours.weight, theirs.embedding.weight)


def test_random_peft_scale_is_exactly_peft(llama):
    """With random_init_scale='peft' and no seed, RANDOM is nn.Embedding's init: PEFT's, under the same torch seed."""
    emb = llama.get_input_embeddings()
    torch.manual_seed(123)
    theirs = peft.PromptEmbedding(peft.PromptTuningConfig(num_virtual_tokens=5, token_dim=32,
                                                          num_transformer_submodules=1), emb)
    torch.manual_seed(123)
    ours = PromptEmbedding(config(random_init_scale="peft"), emb)
    assert torch.equal(ours.weight, theirs.embedding.weight)


def test_default_random_is_vocab_norm_and_seeded(llama):
    emb = llama.get_input_embeddings()
    a = PromptEmbedding(config(seed=7), emb)
    b = PromptEmbedding(config(seed=7), emb)
    assert torch.equal(a.weight, b.weight)
    norm = emb.weight.detach().norm(dim=-1).mean()
    torch.testing.assert_close(a.weight.detach().norm(dim=-1), norm.expand(5))


def test_text_init_by_tokenizer_name_matches_peft(llama, tokenizer, tmp_path):
    """Both libraries load the tokenizer from tokenizer_name_or_path; PEFT's kwargs dict survives untouched here."""
    tokenizer.save_pretrained(tmp_path)
    emb = llama.get_input_embeddings()
    kw = dict(num_virtual_tokens=6, prompt_tuning_init="TEXT", prompt_tuning_init_text="is this review positive",
              tokenizer_name_or_path=str(tmp_path))
    theirs = peft.PromptEmbedding(peft.PromptTuningConfig(token_dim=32, num_transformer_submodules=1, **kw), emb)
    ours = PromptEmbedding(PromptTuningConfig(**kw, tokenizer_kwargs={"use_fast": True}), emb)
    assert torch.equal(ours.weight, theirs.embedding.weight)
    assert torch.equal(ours.weight, PromptEmbedding(PromptTuningConfig(**kw), emb, tokenizer).weight)


def test_seq2seq_two_submodules(t5, tokenizer):
    c = config(task_type="SEQ_2_SEQ_LM", num_transformer_submodules=2, prompt_tuning_init="TEXT",
               prompt_tuning_init_text="the movie was good")
    p = PromptEmbedding(c, t5.get_input_embeddings(), tokenizer)
    assert p.weight.shape == (10, 32)  # T per submodule x 2
    ids = tokenizer("the movie was good")["input_ids"]
    W = t5.get_input_embeddings().weight
    torch.testing.assert_close(p.weight.detach(), W[(ids * 3)[:10]].detach())


def test_needs_a_tokenizer_for_words(llama):
    c = config(prompt_tuning_init="CLASS_LABELS", prompt_tuning_class_labels=["good"])
    with pytest.raises(ValueError, match="needs a tokenizer"):
        PromptEmbedding(c, llama.get_input_embeddings())
    # inference mode skips the init (weights will be loaded), so no tokenizer is needed
    p = PromptEmbedding(c.replace(inference_mode=True), llama.get_input_embeddings())
    assert p.weight.shape == (5, 32)


def test_sample_vocab_without_tokenizer_warns_and_samples_whole_vocab(llama):
    emb = llama.get_input_embeddings()
    with pytest.warns(UserWarning, match="whole vocabulary"):
        p = PromptEmbedding(config(prompt_tuning_init="SAMPLE_VOCAB", seed=0), emb)
    W = emb.weight.detach()
    assert ((p.weight.detach()[:, None] == W[None]).all(-1).any(-1)).all()  # every row is some token's embedding


def test_token_dim_mismatch(llama):
    with pytest.raises(ValueError, match="token_dim=64.*size 32"):
        PromptEmbedding(config(token_dim=64), llama.get_input_embeddings())


def test_adapter_tensors_round_trip(llama):
    emb = llama.get_input_embeddings()
    a = PromptEmbedding(config(seed=1), emb)
    b = PromptEmbedding(config(seed=2), emb)
    tensors = a.adapter_tensors()
    assert set(tensors) == {"prompt_embeddings"} and not tensors["prompt_embeddings"].requires_grad
    b.load_adapter_tensors(tensors)
    assert torch.equal(a.weight, b.weight)
    with pytest.raises(ValueError, match=r"shape \(4, 32\), expected \(5, 32\)"):
        b.load_adapter_tensors({"prompt_embeddings": torch.zeros(4, 32)})
    with pytest.raises(ValueError, match="prefix_task_cols"):
        b.load_adapter_tensors({**tensors, "prefix_task_cols": torch.zeros(1)})
    with pytest.raises(ValueError, match="'prompt_embeddings'"):
        b.load_adapter_tensors({"weight": torch.zeros(5, 32)})


def test_from_a_ready_weight(llama):
    t = torch.randn(5, 32)
    p = PromptEmbedding(config(), weight=t)
    assert torch.equal(p.weight.detach(), t) and p.config.token_dim == 32 and p.weight.requires_grad
    with pytest.raises(ValueError, match=r"\(3, 32\).*\(5, 32\)"):
        PromptEmbedding(config(), weight=torch.randn(3, 32))


def test_only_the_prompt_trains(llama, tokenizer):
    emb = llama.get_input_embeddings()
    before = emb.weight.detach().clone()
    p = PromptEmbedding(config(prompt_tuning_init="TEXT", prompt_tuning_init_text="good movie"), emb, tokenizer)
    assert [name for name, _ in p.named_parameters()] == ["embedding.weight"]  # the model's table is not held
    p(torch.arange(5)[None]).pow(2).sum().backward()
    assert p.weight.grad is not None and emb.weight.grad is None
    assert torch.equal(emb.weight, before)


def test_half_precision_model_gives_float32_prompt(llama, tokenizer):
    emb = llama.get_input_embeddings().to(torch.bfloat16)
    p = PromptEmbedding(config(prompt_tuning_init="TEXT", prompt_tuning_init_text="good movie"), emb, tokenizer)
    assert p.weight.dtype == torch.float32
    torch.testing.assert_close(p.weight[0].detach(), emb.weight[tokenizer.convert_tokens_to_ids("good")].float())
