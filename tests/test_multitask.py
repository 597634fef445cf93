"""MultitaskPromptEmbedding (Wang et al. 2023, §3.1) against the formula and against PEFT's implementation."""

import json

import pytest
import torch
from peft import PeftModel, get_peft_model
from peft.tuners.multitask_prompt_tuning import MultitaskPromptEmbedding as PeftMPTEmbedding
from peft.tuners.multitask_prompt_tuning import MultitaskPromptTuningConfig as PeftMPTConfig
from safetensors.torch import save_file

from softprompt.multitask import (
    MultitaskPromptEmbedding,
    MultitaskPromptTuningConfig,
    MultitaskPromptTuningInit,
    TaskFactorInit,
)
from softprompt.prompt_model import PromptModel, get_prompt_model
from softprompt.testing import tiny_model

T, K, R = 4, 3, 2


def config(**kw):
    base = dict(task_type="CAUSAL_LM", num_virtual_tokens=T, num_tasks=K, num_ranks=R, token_dim=32,
                num_transformer_submodules=1)
    base.update(kw)
    return MultitaskPromptTuningConfig(**base)


def peft_config(**kw):
    base = dict(task_type="CAUSAL_LM", num_virtual_tokens=T, num_tasks=K, num_ranks=R, token_dim=32,
                num_transformer_submodules=1)
    base.update(kw)
    return PeftMPTConfig(**base)


def randomize(enc):
    """Weights far from any init, so that every factor matters."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return enc


def indices(B):
    return torch.arange(T).unsqueeze(0).expand(B, -1)  # (B, T)


# ----------------------------------------------------------------------------- config
def test_config_validation_errors():
    with pytest.raises(ValueError, match="num_ranks=0 must be a positive int"):
        config(num_ranks=0)
    with pytest.raises(ValueError, match="num_ranks=-1"):
        config(num_ranks=-1)
    with pytest.raises(ValueError, match="num_tasks=0"):
        config(num_tasks=0)
    with pytest.raises(ValueError, match="prompt_tuning_init_state_dict_path"):
        config(prompt_tuning_init="AVERAGE_SOURCE_TASKS")
    with pytest.raises(ValueError, match="prompt_tuning_init_task=-1"):
        config(prompt_tuning_init_task=-1)
    with pytest.raises(ValueError, match="prompt_tuning_init='NOPE' is not valid"):
        config(prompt_tuning_init="NOPE")
    with pytest.raises(ValueError, match="task_factor_init"):
        config(task_factor_init="ZEROS")
    with pytest.raises(ValueError, match="prompt_tuning_init_text"):
        config(prompt_tuning_init="TEXT")


def test_config_dict_round_trip_and_peft_file_keys():
    cfg = config(prompt_tuning_init="exact_source_task", prompt_tuning_init_state_dict_path="x.safetensors",
                 prompt_tuning_init_task=2, seed=3)
    assert cfg.prompt_tuning_init is MultitaskPromptTuningInit.EXACT_SOURCE_TASK
    back = MultitaskPromptTuningConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    peft_keys = cfg.peft_dict()
    assert peft_keys["peft_type"] == "MULTITASK_PROMPT_TUNING"
    assert peft_keys["num_tasks"] == K and peft_keys["num_ranks"] == R
    # A trained prompt must not send PEFT back to the source file when it is loaded.
    assert peft_keys["prompt_tuning_init"] == "RANDOM" and peft_keys["prompt_tuning_init_state_dict_path"] is None
    PeftMPTConfig(**{k: v for k, v in peft_keys.items() if k not in ("peft_type", "auto_mapping")})  # PEFT accepts it
    # And PEFT's own dict reads back into ours.
    ours = MultitaskPromptTuningConfig.from_dict(peft_config().to_dict())
    assert (ours.num_tasks, ours.num_ranks, ours.num_virtual_tokens) == (K, R, T)


# ----------------------------------------------------------------------------- the formula
def test_forward_is_shared_prompt_times_low_rank_task_matrix(llama):
    enc = randomize(MultitaskPromptEmbedding(config(), llama.get_input_embeddings()))
    task_ids = torch.tensor([2, 0, 1, 2])
    out = enc(indices(4), task_ids)  # (4, T, d)
    P, u, v = enc.embedding.weight, enc.prefix_task_cols, enc.prefix_task_rows
    for b, k in enumerate(task_ids.tolist()):
        # P_k[t, c] = P*[t, c] * sum_j u_k[t, j] v_k[j, c], written out element by element
        expected = torch.empty_like(P)
        for t in range(T):
            for c in range(P.shape[1]):
                expected[t, c] = P[t, c] * sum(u[k, t, j] * v[k, j, c] for j in range(R))
        torch.testing.assert_close(out[b], expected)
        torch.testing.assert_close(enc.task_prompt(k), expected)
    torch.testing.assert_close(enc.task_prompts()[task_ids], out)


def test_identity_init_keeps_the_shared_prompt_and_breaks_rank_symmetry(llama):
    enc = MultitaskPromptEmbedding(config(seed=0), llama.get_input_embeddings())
    assert config().task_factor_init is TaskFactorInit.IDENTITY  # the documented default
    out = enc(indices(K), torch.arange(K))
    torch.testing.assert_close(out, enc.shared_prompt.expand(K, -1, -1), atol=1e-6, rtol=1e-6)
    cols = enc.prefix_task_cols
    assert not torch.allclose(cols[..., 0], cols[..., 1])  # the r rank-one components differ
    # rank 1: exactly ones, no noise
    enc1 = MultitaskPromptEmbedding(config(num_ranks=1), llama.get_input_embeddings())
    assert torch.equal(enc1.prefix_task_cols, torch.ones(K, T, 1)) and torch.equal(enc1.prefix_task_rows,
                                                                                  torch.ones(K, 1, 32))


def test_peft_factor_init_shrinks_the_prompt_as_peft_does(llama):
    enc = MultitaskPromptEmbedding(config(task_factor_init="PEFT", num_ranks=1), llama.get_input_embeddings())
    ratio = (enc(indices(1), torch.tensor([0])) / enc.shared_prompt).abs().median()
    assert 1e-5 < ratio < 2e-3  # |u v| ~ 0.02 * 0.02 = 4e-4: the P* init is all but erased


def test_text_init_survives_identity_factors(llama, tokenizer):
    cfg = config(prompt_tuning_init="TEXT", prompt_tuning_init_text="classify the sentiment")
    enc = MultitaskPromptEmbedding(cfg, llama.get_input_embeddings(), tokenizer=tokenizer)
    ids = tokenizer("classify the sentiment", add_special_tokens=False)["input_ids"]
    words = llama.get_input_embeddings().weight[torch.tensor((ids * T)[:T])]
    torch.testing.assert_close(enc.task_prompt(1), words, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- PEFT as the oracle
def test_same_seed_gives_peft_identical_weights(llama):
    we = llama.get_input_embeddings()
    torch.manual_seed(11)
    ours = MultitaskPromptEmbedding(config(random_init_scale="peft", task_factor_init="PEFT"), we)
    torch.manual_seed(11)
    theirs = PeftMPTEmbedding(peft_config(), we)
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name


def test_prompts_and_gradients_match_peft_for_every_task(llama):
    we = llama.get_input_embeddings()
    ours = randomize(MultitaskPromptEmbedding(config(), we))
    theirs = PeftMPTEmbedding(peft_config(), we)
    theirs.load_state_dict(ours.state_dict())
    task_ids = torch.tensor([0, 1, 2, 1, 0])
    a, b = ours(indices(5), task_ids), theirs(indices(5), task_ids)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "t5"])
def test_logits_match_peft_model_for_mixed_task_batch(arch, tokenizer):
    task_type = "SEQ_2_SEQ_LM" if arch == "t5" else "CAUSAL_LM"
    base = tiny_model(arch)
    pm = get_prompt_model(base, config(task_type=task_type))
    randomize(pm.prompt_encoder)
    peft_model = get_peft_model(tiny_model(arch), peft_config(task_type=task_type))
    peft_model.prompt_encoder["default"].load_state_dict(pm.prompt_encoder.state_dict())
    ids = tokenizer(["the movie was very good", "a bad film it was", "great food and good service"],
                    return_tensors="pt", padding=True)  # equal lengths: PEFT's position handling then agrees
    assert bool(ids["attention_mask"].all())
    task_ids = torch.tensor([2, 0, 1])
    kw = {}
    if arch == "t5":  # PEFT's MPT seq2seq path drops decoder_input_ids; it builds them from labels
        kw["labels"] = torch.tensor([[5, 6, 3]] * 3)
    ours = pm(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], task_ids=task_ids, **kw).logits
    theirs = peft_model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], task_ids=task_ids,
                        **kw).logits
    if arch != "t5":
        theirs = theirs[:, T:]  # PEFT keeps the virtual positions; we strip them
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- files
def _batch(tokenizer):
    return tokenizer(["the movie was very good", "a bad film it was", "great food and good service"],
                     return_tensors="pt", padding=True)


@pytest.mark.parametrize("init", [
    {},
    {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "the movie", "tokenizer_name_or_path": "tiny"},
    {"prompt_tuning_init": "CLASS_LABELS", "prompt_tuning_class_labels": ["good", "bad"]},
])
def test_saved_files_load_in_peft_with_equal_logits(init, tmp_path, tokenizer):
    pm = get_prompt_model(tiny_model("llama"), config(**init), tokenizer=tokenizer)
    randomize(pm.prompt_encoder)
    pm.save_pretrained(tmp_path)
    peft_model = PeftModel.from_pretrained(tiny_model("llama"), tmp_path)
    enc = peft_model.prompt_encoder["default"]
    assert tuple(enc.prefix_task_cols.shape) == (K, T, R) and tuple(enc.prefix_task_rows.shape) == (K, R, 32)
    batch = _batch(tokenizer)
    for k in range(K):
        task_ids = torch.full((3,), k)
        ours = pm(**batch, task_ids=task_ids).logits
        theirs = peft_model(**batch, task_ids=task_ids).logits[:, T:]
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_peft_files_load_in_ours_with_equal_logits(tmp_path, tokenizer):
    peft_model = get_peft_model(tiny_model("llama"), peft_config())
    randomize(peft_model.prompt_encoder["default"])
    peft_model.save_pretrained(tmp_path)
    pm = PromptModel.from_pretrained(tiny_model("llama"), tmp_path)
    assert isinstance(pm.prompt_encoder, MultitaskPromptEmbedding)
    batch = _batch(tokenizer)
    task_ids = torch.tensor([1, 2, 0])
    torch.testing.assert_close(pm(**batch, task_ids=task_ids).logits,
                               peft_model(**batch, task_ids=task_ids).logits[:, T:], atol=1e-5, rtol=1e-5)
    # and our own round trip, trainable again
    pm.save_pretrained(tmp_path / "again")
    again = PromptModel.from_pretrained(tiny_model("llama"), tmp_path / "again", is_trainable=True)
    for name, value in pm.prompt_encoder.adapter_tensors().items():
        assert torch.equal(again.prompt_encoder.adapter_tensors()[name], value), name
    assert all(p.requires_grad for p in again.prompt_encoder.parameters())


# ----------------------------------------------------------------------------- source inits
@pytest.fixture
def source_file(tmp_path, llama):
    src = randomize(MultitaskPromptEmbedding(config(), llama.get_input_embeddings()))
    path = tmp_path / "source.safetensors"
    save_file({k: v.contiguous() for k, v in src.adapter_tensors().items()}, str(path))
    return src, path


@pytest.mark.parametrize("mode", ["AVERAGE_SOURCE_TASKS", "EXACT_SOURCE_TASK", "ONLY_SOURCE_SHARED"])
def test_source_inits_match_peft(mode, source_file, llama):
    src, path = source_file
    we = llama.get_input_embeddings()
    kw = dict(num_tasks=1, prompt_tuning_init=mode, prompt_tuning_init_state_dict_path=str(path),
              prompt_tuning_init_task=2)
    torch.manual_seed(0)
    ours = MultitaskPromptEmbedding(config(task_factor_init="PEFT", **kw), we)
    torch.manual_seed(0)
    theirs = PeftMPTEmbedding(peft_config(**kw), we)
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, msg=name)
    assert torch.equal(ours.shared_prompt, src.shared_prompt)
    if mode == "EXACT_SOURCE_TASK":
        torch.testing.assert_close(ours.task_prompt(0), src.task_prompt(2))


def test_source_init_from_a_saved_directory_fills_every_task(tmp_path, llama):
    pm = get_prompt_model(llama, config())
    randomize(pm.prompt_encoder)
    pm.save_pretrained(tmp_path / "src")
    cfg = config(num_tasks=2, prompt_tuning_init="AVERAGE_SOURCE_TASKS",
                 prompt_tuning_init_state_dict_path=str(tmp_path / "src"))
    enc = MultitaskPromptEmbedding(cfg, llama.get_input_embeddings())
    src = pm.prompt_encoder
    for k in range(2):  # PEFT only allows num_tasks=1 here; we broadcast the averaged factors
        torch.testing.assert_close(enc.prefix_task_cols[k], src.prefix_task_cols.mean(0))
        torch.testing.assert_close(enc.prefix_task_rows[k], src.prefix_task_rows.mean(0))


def test_only_source_shared_accepts_a_vanilla_prompt_and_starts_at_it(tmp_path, llama):
    p = torch.randn(T, 32)
    save_file({"prompt_embeddings": p}, str(tmp_path / "vanilla.safetensors"))
    cfg = config(prompt_tuning_init="ONLY_SOURCE_SHARED",
                 prompt_tuning_init_state_dict_path=str(tmp_path / "vanilla.safetensors"))
    enc = MultitaskPromptEmbedding(cfg, llama.get_input_embeddings())
    torch.testing.assert_close(enc(indices(K), torch.arange(K)), p.expand(K, -1, -1), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="ONLY_SOURCE_SHARED"):
        MultitaskPromptEmbedding(cfg.replace(prompt_tuning_init="AVERAGE_SOURCE_TASKS"), llama.get_input_embeddings())


def test_source_files_that_do_not_fit_are_refused(source_file, tmp_path, llama):
    _, path = source_file
    we = llama.get_input_embeddings()

    def build(**kw):
        base = dict(prompt_tuning_init="EXACT_SOURCE_TASK", prompt_tuning_init_state_dict_path=str(path))
        base.update(kw)
        return MultitaskPromptEmbedding(config(**base), we)

    with pytest.raises(ValueError, match=r"prompt_tuning_init_task=5 is not a task of the source.*num_tasks=3"):
        build(prompt_tuning_init_task=5)
    with pytest.raises(ValueError, match="source has num_ranks=2, this config num_ranks=1"):
        build(num_ranks=1)
    with pytest.raises(ValueError, match=r"prompt_embeddings \(P\*\) has shape \(4, 32\).*\(6, 32\)"):
        build(num_virtual_tokens=6)
    bad = tmp_path / "bad.safetensors"
    save_file({"prompt_embeddings": torch.randn(T, 32), "prefix_task_cols": torch.randn(3, T, R),
               "prefix_task_rows": torch.randn(2, R, 32)}, str(bad))
    with pytest.raises(ValueError, match="do not fit each other"):
        build(prompt_tuning_init_state_dict_path=str(bad))
    pickle = tmp_path / "source.bin"
    pickle.write_bytes(b"not read")
    with pytest.raises(ValueError, match="never unpickles"):
        build(prompt_tuning_init_state_dict_path=str(pickle))
    with pytest.raises(ValueError, match="does not exist"):
        build(prompt_tuning_init_state_dict_path=str(tmp_path / "missing.safetensors"))


# ----------------------------------------------------------------------------- task ids
def test_task_ids_missing_or_out_of_range_are_clear_errors(llama, tokenizer):
    enc = MultitaskPromptEmbedding(config(), llama.get_input_embeddings())
    with pytest.raises(ValueError, match="task_ids is missing"):
        enc(indices(2), None)
    with pytest.raises(ValueError, match=r"task_ids holds \[3\], outside 0..2"):
        enc(indices(2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"task_ids holds \[-1\]"):
        enc(indices(2), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"expected \(2,\)"):
        enc(indices(2), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="must be integers"):
        enc(indices(2), torch.tensor([0.0, 1.0]))
    pm = get_prompt_model(llama, config())
    batch = _batch(tokenizer)
    with pytest.raises(ValueError, match="task_ids is missing"):
        pm(**batch)
    with pytest.raises(ValueError, match="outside 0..2"):
        pm(**batch, task_ids=torch.tensor([0, 1, 7]))
    with pytest.raises(ValueError, match="task_ids is missing"):
        pm.generate(**batch, max_new_tokens=2)


def test_adapter_tensors_with_wrong_shapes_are_refused(llama):
    enc = MultitaskPromptEmbedding(config(), llama.get_input_embeddings())
    other = MultitaskPromptEmbedding(config(num_tasks=5), llama.get_input_embeddings())
    with pytest.raises(ValueError, match=r"prefix_task_cols has shape \(5, 4, 2\), this prompt needs \(3, 4, 2\)"):
        enc.load_adapter_tensors(other.adapter_tensors())
    with pytest.raises(ValueError, match="missing"):
        enc.load_adapter_tensors({"prompt_embeddings": enc.shared_prompt})


# ----------------------------------------------------------------------------- mixed batches, generation
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_mixed_task_batch_rows_equal_rows_run_alone(arch, tokenizer):
    pm = get_prompt_model(tiny_model(arch), config())
    randomize(pm.prompt_encoder)
    batch = tokenizer(["the movie was good", "bad film", "great food and very good service"],
                      return_tensors="pt", padding=True)  # left padded
    task_ids = torch.tensor([2, 0, 1])
    mixed = pm(**batch, task_ids=task_ids).logits
    for b in range(3):
        keep = batch["attention_mask"][b].bool()
        alone = pm(input_ids=batch["input_ids"][b:b + 1, keep], task_ids=task_ids[b:b + 1]).logits
        torch.testing.assert_close(mixed[b, keep], alone[0], atol=1e-5, rtol=1e-5)


def _greedy(pm, batch, task_ids, steps):
    """A manual greedy loop over forward(): what training sees, generation must see."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    new = []
    for _ in range(steps):
        nxt = pm(input_ids=ids, attention_mask=mask, task_ids=task_ids).logits[:, -1].argmax(-1, keepdim=True)
        new.append(nxt)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return torch.cat(new, 1)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_generate_with_task_ids_equals_greedy_forward(arch, tokenizer):
    pm = get_prompt_model(tiny_model(arch), config())
    randomize(pm.prompt_encoder)
    batch = tokenizer(["the movie was good", "bad film", "great food"], return_tensors="pt", padding=True)
    task_ids = torch.tensor([1, 2, 0])
    out = pm.generate(**batch, task_ids=task_ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(out, _greedy(pm, batch, task_ids, 4))
    for b in range(3):  # each row of the mixed batch generates what it generates alone, unpadded
        keep = batch["attention_mask"][b].bool()
        alone = pm.generate(input_ids=batch["input_ids"][b:b + 1, keep], task_ids=task_ids[b:b + 1],
                            max_new_tokens=4, do_sample=False, pad_token_id=0)
        assert torch.equal(alone[0], out[b])


@pytest.mark.parametrize("submodules", [1, 2])
def test_seq2seq_generate_with_task_ids_equals_greedy_forward(submodules, tokenizer):
    tokenizer.padding_side = "right"
    pm = get_prompt_model(tiny_model("t5"), config(task_type="SEQ_2_SEQ_LM", num_transformer_submodules=submodules))
    randomize(pm.prompt_encoder)
    batch = tokenizer(["the movie was good", "bad film", "great food"], return_tensors="pt", padding=True)
    task_ids = torch.tensor([1, 2, 0])
    out = pm.generate(**batch, task_ids=task_ids, max_new_tokens=3, do_sample=False)
    start = pm.base_model.config.decoder_start_token_id
    dec = torch.full((3, 1), start)
    for _ in range(3):
        logits = pm(**batch, decoder_input_ids=dec, task_ids=task_ids).logits
        dec = torch.cat([dec, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out[:, :3], dec[:, 1:])
