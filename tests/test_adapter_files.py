"""Prompt files: PEFT's layout, round trips, atomic saves, and clear errors for files that do not fit."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from softprompt.adapter_files import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    SIDECAR_CONFIG_NAME,
    AdapterFileError,
    load_adapter,
    save_adapter,
)
from softprompt.config import PromptTuningConfig
from softprompt.prompt_model import PromptModel, get_prompt_model
from softprompt.testing import tiny_model, tiny_tokenizer

T = 4


def _saved(tmp_path, arch="llama", **cfg):
    config = PromptTuningConfig(num_virtual_tokens=T, seed=3, **cfg)
    pm = get_prompt_model(tiny_model(arch), config, tokenizer=tiny_tokenizer())
    pm.save_pretrained(tmp_path)
    return pm


def test_files_have_peft_layout(tmp_path):
    _saved(tmp_path, prompt_tuning_init="CLASS_LABELS", prompt_tuning_class_labels=["good", "bad"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME,
                                                          SIDECAR_CONFIG_NAME]
    tensors = load_file(tmp_path / ADAPTER_WEIGHTS_NAME)
    assert list(tensors) == ["prompt_embeddings"] and tensors["prompt_embeddings"].shape == (T, 32)
    cfg = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    assert cfg["peft_type"] == "PROMPT_TUNING" and cfg["task_type"] == "CAUSAL_LM"
    assert cfg["prompt_tuning_init"] == "RANDOM"  # CLASS_LABELS is not a PEFT init; the sidecar keeps it
    assert cfg["token_dim"] == 32 and cfg["num_virtual_tokens"] == T and cfg["inference_mode"] is True
    sidecar = json.loads((tmp_path / SIDECAR_CONFIG_NAME).read_text())
    assert sidecar["prompt_tuning_init"] == "CLASS_LABELS" and sidecar["prompt_tuning_class_labels"] == ["good", "bad"]


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    _saved(tmp_path)
    _saved(tmp_path)  # overwrite in place
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "t5", "bert"])
@pytest.mark.parametrize("is_trainable", [False, True])
def test_round_trip(tmp_path, arch, is_trainable):
    extra = {"task_type": "SEQ_2_SEQ_LM", "num_transformer_submodules": 2} if arch == "t5" else {}
    pm = _saved(tmp_path, arch, **extra)
    if arch == "bert":
        with torch.no_grad():
            pm.base_model.classifier.weight.mul_(3.0)
        pm.save_pretrained(tmp_path)
    loaded = PromptModel.from_pretrained(tiny_model(arch), tmp_path, is_trainable=is_trainable)
    assert torch.equal(loaded.prompt_encoder.embedding.weight, pm.prompt_encoder.embedding.weight)
    assert loaded.prompt_config.inference_mode is (not is_trainable)
    assert loaded.num_transformer_submodules == pm.num_transformer_submodules
    trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
    expected = {"prompt_encoder.embedding.weight"} | (
        {"base_model.classifier.weight", "base_model.classifier.bias"} if arch == "bert" else set())
    assert trainable == (expected if is_trainable else set())
    b = tiny_tokenizer("right" if arch in ("t5", "bert") else "left")(["the movie was good", "bad"],
                                                                       return_tensors="pt", padding=True)
    if arch == "t5":
        b["labels"] = b["input_ids"]
    torch.testing.assert_close(loaded(**b).logits, pm(**b).logits)


def test_save_pretrained_accepts_trainer_arguments(tmp_path):
    pm = _saved(tmp_path)
    pm.save_pretrained(tmp_path / "ckpt", state_dict=pm.state_dict(), safe_serialization=True)
    assert (tmp_path / "ckpt" / ADAPTER_WEIGHTS_NAME).exists()


# ---------------------------------------------------------------- files that do not fit
def test_prompt_for_another_model_size(tmp_path):
    _saved(tmp_path)
    from transformers import LlamaConfig, LlamaForCausalLM

    bigger = LlamaForCausalLM(LlamaConfig(vocab_size=200, hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ValueError, match="token_dim=32.*hidden size is 48"):
        PromptModel.from_pretrained(bigger, tmp_path)


def test_tensor_rows_disagree_with_num_virtual_tokens(tmp_path):
    _saved(tmp_path)
    cfg = json.loads((tmp_path / ADAPTER_CONFIG_NAME).read_text())
    cfg["num_virtual_tokens"] = 6
    (tmp_path / ADAPTER_CONFIG_NAME).write_text(json.dumps(cfg))
    (tmp_path / SIDECAR_CONFIG_NAME).unlink()
    with pytest.raises(ValueError, match="4 rows but its config says num_virtual_tokens=6"):
        PromptModel.from_pretrained(tiny_model("llama"), tmp_path)


def test_head_for_another_number_of_labels(tmp_path):
    _saved(tmp_path, "bert")
    with pytest.raises(ValueError, match="different number of labels"):
        PromptModel.from_pretrained(tiny_model("bert", num_labels=3), tmp_path)


def test_corrupted_safetensors(tmp_path):
    _saved(tmp_path)
    (tmp_path / ADAPTER_WEIGHTS_NAME).write_bytes(b"\x00garbage, not safetensors at all")
    with pytest.raises(AdapterFileError, match="corrupted or truncated"):
        load_adapter(tmp_path)


def test_truncated_safetensors(tmp_path):
    _saved(tmp_path)
    path = tmp_path / ADAPTER_WEIGHTS_NAME
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(AdapterFileError, match="corrupted or truncated"):
        PromptModel.from_pretrained(tiny_model("llama"), tmp_path)


def test_pickle_is_refused_with_conversion_hint(tmp_path):
    _saved(tmp_path)
    (tmp_path / ADAPTER_WEIGHTS_NAME).unlink()
    (tmp_path / "adapter_model.bin").write_bytes(b"a pickle that must never be opened")
    with pytest.raises(AdapterFileError, match="only reads adapter_model.safetensors") as err:
        load_adapter(tmp_path)
    assert "save_file(torch.load(" in str(err.value)


def test_other_adapter_types_and_missing_pieces(tmp_path):
    with pytest.raises(AdapterFileError, match="not a directory"):
        load_adapter(tmp_path / "nope")
    save_file({"prompt_embeddings": torch.zeros(T, 32)}, tmp_path / ADAPTER_WEIGHTS_NAME)
    with pytest.raises(AdapterFileError, match="no adapter_config.json"):
        load_adapter(tmp_path)
    (tmp_path / ADAPTER_CONFIG_NAME).write_text("{not json")
    with pytest.raises(AdapterFileError, match="not valid JSON"):
        load_adapter(tmp_path)
    (tmp_path / ADAPTER_CONFIG_NAME).write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    with pytest.raises(AdapterFileError, match="'LORA' adapter"):
        load_adapter(tmp_path)


def test_save_adapter_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="peft_type"):
        save_adapter(tmp_path, {"peft_type": "LORA"}, {"prompt_embeddings": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="prompt_embeddings"):
        save_adapter(tmp_path, {"peft_type": "PROMPT_TUNING"}, {"x": torch.zeros(2, 2)})
