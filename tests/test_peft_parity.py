"""Differential tests against PEFT (the oracle): same prompt weights -> same logits, losses and gradients,
and files that each library reads from the other."""

import warnings

import pytest
import torch
from peft import PeftModel, get_peft_model
from peft import PromptTuningConfig as PeftPromptTuningConfig

from softprompt.config import PromptTuningConfig
from softprompt.prompt_model import PromptModel, get_prompt_model
from softprompt.testing import tiny_model, tiny_tokenizer

T = 4
TASK = {"llama": "CAUSAL_LM", "gpt2": "CAUSAL_LM", "t5": "SEQ_2_SEQ_LM", "bert": "SEQ_CLS"}


def _ours(arch):
    return get_prompt_model(tiny_model(arch), PromptTuningConfig(num_virtual_tokens=T, seed=1))


def _peft(arch, prompt: torch.Tensor, **cfg):
    """PEFT's model on an identical tiny model, holding the same prompt weights."""
    cfg.setdefault("num_transformer_submodules", 1)
    pm = get_peft_model(tiny_model(arch), PeftPromptTuningConfig(task_type=TASK[arch], num_virtual_tokens=T, **cfg))
    with torch.no_grad():
        pm.prompt_encoder["default"].embedding.weight.copy_(prompt)
    return pm


def _inputs(arch, B=3, L=7):
    """Unpadded rows: where PEFT's positions and ours agree (they differ under left padding, see below)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, len(tiny_tokenizer()), (B, L), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if arch == "t5":
        batch["labels"] = torch.randint(4, len(tiny_tokenizer()), (B, 3), generator=g)
    elif arch == "bert":
        batch["labels"] = torch.tensor([0, 1, 1])
    else:
        batch["labels"] = ids.clone()
    return batch


@pytest.mark.parametrize("arch", ["llama", "gpt2", "t5", "bert"])
def test_logits_loss_and_prompt_gradient_match_peft(arch):
    ours = _ours(arch)
    peft = _peft(arch, ours.prompt_encoder.embedding.weight)
    batch = _inputs(arch)
    out_ours, out_peft = ours(**batch), peft(**batch)
    logits_peft = out_peft.logits[:, T:] if arch in ("llama", "gpt2") else out_peft.logits  # PEFT keeps the prompt
    torch.testing.assert_close(out_ours.logits, logits_peft, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_ours.loss, out_peft.loss, atol=1e-5, rtol=1e-5)
    out_ours.loss.backward()
    out_peft.loss.backward()
    g_ours = ours.prompt_encoder.embedding.weight.grad
    g_peft = peft.prompt_encoder["default"].embedding.weight.grad
    assert g_ours.abs().sum() > 0
    torch.testing.assert_close(g_ours, g_peft, atol=1e-5, rtol=1e-5)
    if arch == "bert":  # the classification head trains in both, with the same gradient
        head_peft = peft.base_model.classifier.modules_to_save["default"]
        torch.testing.assert_close(ours.base_model.classifier.weight.grad, head_peft.weight.grad, atol=1e-5, rtol=1e-5)


def test_left_padding_peft_shifts_positions_we_do_not():
    """peft #1093: PEFT lets the model count the pads into the positions; a padded row's logits change. Ours don't."""
    ours = _ours("llama")
    peft = _peft("llama", ours.prompt_encoder.embedding.weight)
    tok = tiny_tokenizer("left")
    padded = tok(["the movie was really good and the acting was great too", "bad"], return_tensors="pt", padding=True)
    alone = tok(["bad"], return_tensors="pt")
    with torch.no_grad():
        ours_gap = (ours(**padded).logits[1, -1] - ours(**alone).logits[0, -1]).abs().max()
        peft_gap = (peft(**padded).logits[1, -1] - peft(**alone).logits[0, -1]).abs().max()
    assert ours_gap < 1e-5
    assert peft_gap > 1e-4  # tiny random models are weakly position-sensitive; real ones far more


def test_causal_generate_matches_peft_on_unpadded_rows():
    ours = _ours("llama")
    peft = _peft("llama", ours.prompt_encoder.embedding.weight)
    batch = {k: v for k, v in _inputs("llama").items() if k != "labels"}
    kw = dict(max_new_tokens=5, do_sample=False, eos_token_id=None)
    got = ours.generate(**batch, **kw)
    expected = peft.generate(**batch, **kw)
    expected = expected[:, -5:]  # PEFT returns the input ids too
    assert torch.equal(got, expected)


@pytest.mark.parametrize("arch", ["llama", "t5", "bert"])
def test_peft_loads_our_files_with_equal_logits(arch, tmp_path):
    ours = _ours(arch)
    if arch == "bert":
        with torch.no_grad():
            ours.base_model.classifier.weight.mul_(3.0)  # a head unlike the fresh one PEFT starts from
    ours.save_pretrained(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft = PeftModel.from_pretrained(tiny_model(arch), tmp_path)
    complaints = [str(w.message) for w in caught if "peft" in w.filename]
    assert complaints == []  # PEFT reads our adapter_config.json without complaint
    batch = {k: v for k, v in _inputs(arch).items() if k != "labels" or arch == "t5"}
    logits_peft = peft(**batch).logits
    logits_peft = logits_peft[:, T:] if arch == "llama" else logits_peft
    torch.testing.assert_close(ours(**batch).logits, logits_peft, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "t5", "bert"])
def test_we_load_peft_files_with_equal_logits(arch, tmp_path):
    # PEFT's own defaults: for T5 that is num_transformer_submodules=2 with a decoder half PEFT never uses.
    peft = get_peft_model(tiny_model(arch), PeftPromptTuningConfig(task_type=TASK[arch], num_virtual_tokens=T))
    if arch == "bert":
        with torch.no_grad():
            peft.base_model.classifier.modules_to_save["default"].weight.mul_(3.0)
    peft.save_pretrained(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = PromptModel.from_pretrained(tiny_model(arch), tmp_path)
    if arch == "t5":
        assert any("never uses its decoder half" in str(w.message) for w in caught)
        assert ours.num_transformer_submodules == 1
    batch = {k: v for k, v in _inputs(arch).items() if k != "labels" or arch == "t5"}
    peft.eval()
    logits_peft = peft(**batch).logits
    logits_peft = logits_peft[:, T:] if arch == "llama" else logits_peft
    torch.testing.assert_close(ours(**batch).logits, logits_peft, atol=1e-5, rtol=1e-5)


def test_peft_refuses_to_train_a_loaded_prompt_we_do_not(tmp_path):
    """peft #2046: a prompt loaded with is_trainable=True keeps training here."""
    _ours("llama").save_pretrained(tmp_path)
    ours = PromptModel.from_pretrained(tiny_model("llama"), tmp_path, is_trainable=True)
    batch = _inputs("llama")
    ours(**batch).loss.backward()
    assert ours.prompt_encoder.embedding.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_smollm2_logits_equal_peft(smollm2):
    """The acceptance figure: prompt-tuned SmolLM2-135M, same prompt weights, logits equal PEFT's."""
    model, tok = smollm2
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        ours = get_prompt_model(model, PromptTuningConfig(num_virtual_tokens=T, seed=0))
        batch = tok(["Review: a wonderful, moving film. Sentiment:"], return_tensors="pt")
        with torch.no_grad():
            logits = ours(**batch).logits
            peft = get_peft_model(model, PeftPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T))
            peft.prompt_encoder["default"].embedding.weight.copy_(ours.prompt_encoder.embedding.weight)
            logits_peft = peft(**batch).logits[:, T:]
        torch.testing.assert_close(logits, logits_peft, atol=1e-5, rtol=0)
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
