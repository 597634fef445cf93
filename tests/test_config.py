"""PromptTuningConfig: PEFT's fields and defaults, validation, (de)serialization, filling from a model."""

import dataclasses
import json
import warnings

import peft
import pytest
from peft.utils.other import _prepare_prompt_learning_config

from softprompt.config import PromptTuningConfig, PromptTuningInit, RandomInitScale, TaskType, TextInitFill
from softprompt.testing import tiny_model

PEFT_FIELDS = (
    "task_type", "num_virtual_tokens", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers",
    "prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path", "tokenizer_kwargs",
    "base_model_name_or_path", "revision", "inference_mode",
)


def cfg(**kw):
    kw.setdefault("num_virtual_tokens", 8)
    return PromptTuningConfig(**kw)


def test_has_peft_fields_with_peft_defaults():
    ours = {f.name: f for f in dataclasses.fields(PromptTuningConfig)}
    theirs = {f.name: f for f in dataclasses.fields(peft.PromptTuningConfig)}
    for name in PEFT_FIELDS:
        assert name in ours, name
        assert ours[name].default == theirs[name].default, name
    assert PromptTuningConfig.peft_type == "PROMPT_TUNING"


def test_strings_become_enums_any_case():
    c = cfg(task_type="causal_lm", prompt_tuning_init="sample_vocab", text_init_fill="sample_vocab",
            random_init_scale="PEFT")
    assert c.task_type is TaskType.CAUSAL_LM
    assert c.prompt_tuning_init is PromptTuningInit.SAMPLE_VOCAB
    assert c.text_init_fill is TextInitFill.SAMPLE_VOCAB
    assert c.random_init_scale is RandomInitScale.PEFT
    assert c.task_type == "CAUSAL_LM"  # str enums compare equal to their value


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"task_type": "TOKEN_CLS"}, "task_type"),
        ({"prompt_tuning_init": "ZEROS"}, "prompt_tuning_init"),
        ({"text_init_fill": "pad"}, "text_init_fill"),
        ({"random_init_scale": "xavier"}, "random_init_scale"),
    ],
)
def test_bad_enum_values_name_field_and_choices(kw, field):
    with pytest.raises(ValueError, match=rf"{field}=.*use one of"):
        cfg(**kw)


@pytest.mark.parametrize("n", [0, -3, 2.5, True, None, "8"])
def test_num_virtual_tokens_must_be_positive_int(n):
    with pytest.raises(ValueError, match="num_virtual_tokens"):
        PromptTuningConfig(num_virtual_tokens=n)


@pytest.mark.parametrize("name", ["token_dim", "num_layers", "num_attention_heads", "sample_vocab_size"])
def test_optional_sizes_must_be_positive(name):
    with pytest.raises(ValueError, match=name):
        cfg(**{name: 0})


def test_text_init_needs_text():
    with pytest.raises(ValueError, match="prompt_tuning_init_text"):
        cfg(prompt_tuning_init="TEXT")
    with pytest.raises(ValueError, match="prompt_tuning_init_text"):
        cfg(prompt_tuning_init="TEXT", prompt_tuning_init_text="   ")


def test_class_labels_validation():
    with pytest.raises(ValueError, match="prompt_tuning_class_labels"):
        cfg(prompt_tuning_init="CLASS_LABELS")
    with pytest.raises(ValueError, match="prompt_tuning_class_labels"):
        cfg(prompt_tuning_init="CLASS_LABELS", prompt_tuning_class_labels="positive")  # a str, not a list
    with pytest.raises(ValueError, match="empty or non-string"):
        cfg(prompt_tuning_init="CLASS_LABELS", prompt_tuning_class_labels=["positive", " "])
    with pytest.raises(ValueError, match="at least 3"):
        cfg(num_virtual_tokens=2, prompt_tuning_init="CLASS_LABELS", prompt_tuning_class_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="only used with prompt_tuning_init='CLASS_LABELS'"):
        cfg(prompt_tuning_class_labels=["positive"])


def test_tokenizer_kwargs_rules():
    with pytest.raises(ValueError, match="tokenizer_kwargs is only used"):
        cfg(tokenizer_kwargs={"use_fast": True})
    with pytest.raises(ValueError, match="trust_remote_code"):
        cfg(prompt_tuning_init="TEXT", prompt_tuning_init_text="hi", tokenizer_kwargs={"trust_remote_code": True})
    c = cfg(prompt_tuning_init="CLASS_LABELS", prompt_tuning_class_labels=["yes"], tokenizer_kwargs={"use_fast": True})
    assert c.tokenizer_kwargs == {"use_fast": True}


def test_submodules():
    with pytest.raises(ValueError, match="num_transformer_submodules"):
        cfg(num_transformer_submodules=3)
    with pytest.raises(ValueError, match="SEQ_2_SEQ_LM"):
        cfg(task_type="CAUSAL_LM", num_transformer_submodules=2)
    assert cfg(num_virtual_tokens=5).total_virtual_tokens == 5
    assert cfg(num_virtual_tokens=5, task_type="SEQ_2_SEQ_LM", num_transformer_submodules=2).total_virtual_tokens == 10


def test_to_dict_is_json_and_round_trips():
    c = cfg(task_type="CAUSAL_LM", prompt_tuning_init="CLASS_LABELS", prompt_tuning_class_labels=["good", "bad"],
            text_init_fill="SAMPLE_VOCAB", sample_vocab_size=100, random_init_scale="peft", seed=3, token_dim=32)
    d = json.loads(json.dumps(c.to_dict()))
    assert d["peft_type"] == "PROMPT_TUNING" and d["prompt_tuning_init"] == "CLASS_LABELS"
    assert set(d) == {f.name for f in dataclasses.fields(c)} | {"peft_type"}
    assert PromptTuningConfig.from_dict(d) == c
    d["prompt_tuning_class_labels"].append("ugly")  # a copy, not the config's own list
    assert c.prompt_tuning_class_labels == ["good", "bad"]


def test_from_dict_reads_a_peft_adapter_config(tmp_path):
    theirs = peft.PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=7, token_dim=32, num_transformer_submodules=1,
        num_attention_heads=4, num_layers=2, prompt_tuning_init="TEXT", prompt_tuning_init_text="the movie",
        tokenizer_name_or_path="some/tokenizer", base_model_name_or_path="some/model",
    )
    theirs.save_pretrained(tmp_path)
    d = json.loads((tmp_path / "adapter_config.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # bookkeeping keys are dropped silently
        ours = PromptTuningConfig.from_dict(d)
    for name in PEFT_FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert PromptTuningConfig.from_dict(theirs.to_dict()) == ours  # enum-valued dicts too


def test_from_dict_rejects_other_methods_and_cleans_input():
    with pytest.raises(ValueError, match="MULTITASK_PROMPT_TUNING"):
        PromptTuningConfig.from_dict({"peft_type": "MULTITASK_PROMPT_TUNING", "num_virtual_tokens": 4})
    d = {"num_virtual_tokens": 4, "prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "hi",
         "tokenizer_kwargs": {"trust_remote_code": True, "use_fast": True}, "future_field": 1}
    with pytest.warns(UserWarning) as record:
        c = PromptTuningConfig.from_dict(d)
    messages = " ".join(str(r.message) for r in record)
    assert "future_field" in messages and "trust_remote_code" in messages
    assert c.tokenizer_kwargs == {"use_fast": True}


@pytest.mark.parametrize(
    "kw, init",
    [
        ({}, "RANDOM"),
        ({"prompt_tuning_init": "SAMPLE_VOCAB", "tokenizer_name_or_path": "t"}, "SAMPLE_VOCAB"),
        ({"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "hi", "tokenizer_name_or_path": "t",
          "tokenizer_kwargs": {"use_fast": True}}, "TEXT"),
        ({"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "hi"}, "RANDOM"),  # PEFT needs a tokenizer name
        ({"prompt_tuning_init": "CLASS_LABELS", "prompt_tuning_class_labels": ["a"], "tokenizer_kwargs": {"x": 1},
          "tokenizer_name_or_path": "t"}, "RANDOM"),
    ],
)
def test_peft_dict_is_accepted_by_peft(kw, init):
    c = cfg(task_type="CAUSAL_LM", **kw)
    d = c.peft_dict()
    assert d["prompt_tuning_init"] == init
    assert set(d) == set(peft.PromptTuningConfig(num_virtual_tokens=1).to_dict()) - {"peft_version"}
    theirs = peft.PeftConfig.from_peft_type(**d)  # PEFT's own loading route, validation included
    assert isinstance(theirs, peft.PromptTuningConfig)
    assert theirs.num_virtual_tokens == 8 and theirs.num_transformer_submodules == 1


@pytest.mark.parametrize("arch, task", [("llama", "CAUSAL_LM"), ("gpt2", "CAUSAL_LM"), ("t5", "SEQ_2_SEQ_LM"),
                                        ("bert", "SEQ_CLS")])
def test_filled_from_model_matches_peft(arch, task):
    model = tiny_model(arch)
    c = cfg().filled_from_model(model)
    assert c.task_type == task
    assert c.num_transformer_submodules == 1  # Lester: encoder only, for seq2seq too (PEFT would say 2)
    theirs = peft.PromptTuningConfig(num_virtual_tokens=8, task_type=task)
    _prepare_prompt_learning_config(theirs, model.config)
    assert (c.token_dim, c.num_layers, c.num_attention_heads) == (
        theirs.token_dim, theirs.num_layers, theirs.num_attention_heads
    )
    assert c.token_dim == model.get_input_embeddings().embedding_dim == 32


def test_filled_from_model_checks_given_values(llama, t5):
    with pytest.raises(ValueError, match=r"token_dim=64.*embedding size 32"):
        cfg(token_dim=64).filled_from_model(llama)
    with pytest.raises(ValueError, match="not an encoder-decoder"):
        cfg(task_type="SEQ_2_SEQ_LM").filled_from_model(llama)
    with pytest.raises(ValueError, match="is an encoder-decoder"):
        cfg(task_type="CAUSAL_LM").filled_from_model(t5)
    c = cfg(task_type="SEQ_2_SEQ_LM", num_transformer_submodules=2, num_layers=7).filled_from_model(t5)
    assert c.num_transformer_submodules == 2 and c.num_layers == 7 and c.total_virtual_tokens == 16


def test_filled_from_model_names(llama, tmp_path, monkeypatch):
    llama.config._name_or_path = "org/model"
    text = cfg(prompt_tuning_init="TEXT", prompt_tuning_init_text="hi").filled_from_model(llama)
    assert text.base_model_name_or_path == "org/model" and text.tokenizer_name_or_path == "org/model"
    assert cfg().filled_from_model(llama).tokenizer_name_or_path is None  # RANDOM reads no tokenizer
    assert cfg(base_model_name_or_path="mine").filled_from_model(llama).base_model_name_or_path == "mine"
    # a preset loaded from softprompt's offline cache is named by its portable hub id
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path))
    llama.config._name_or_path = str(tmp_path / "smollm2-135m-instruct-q4_1")
    assert cfg().filled_from_model(llama).base_model_name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_repr_reads_like_the_json():
    c = cfg(task_type="CAUSAL_LM", prompt_tuning_init="sample_vocab")
    assert "task_type='CAUSAL_LM'" in repr(c) and "prompt_tuning_init='SAMPLE_VOCAB'" in repr(c)
    assert f"{c.task_type}" == str(c.task_type) == "CAUSAL_LM"
