"""The library's contract for misused models, inputs and saves: every misuse gets a clear error, every save
survives a crash.

A prompt set up for the wrong kind of model, a model without real weights, input ids of the wrong shape or
outside the vocabulary, inputs longer than the model's positions, right-padded generation and prompts loaded
onto another model all raise (or warn) with a message that names the cause and the fix, instead of returning
silently wrong results or failing deep inside PyTorch. An interrupted save leaves the previous prompt or the
new one, never a mix of the two.
"""

import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel

import softprompt.adapter_files as adapter_files
from softprompt.adapter_files import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    SIDECAR_CONFIG_NAME,
    STAGING_DIR_NAME,
    load_adapter,
    save_adapter,
)
from softprompt.config import PromptTuningConfig, TaskType
from softprompt.model_kind import check_task_type, model_task_type
from softprompt.multitask import MultitaskPromptTuningConfig
from softprompt.prompt_model import PromptModel, get_prompt_model
from softprompt.testing import tiny_model, tiny_tokenizer

T = 4
DEAD_PID = 2**22 + 12345  # above Linux's pid_max: no process has it


def _prompt(model, task_type="CAUSAL_LM", T=T, **cfg):
    return get_prompt_model(model, PromptTuningConfig(task_type=task_type, num_virtual_tokens=T, **cfg))


def _tiny_bert(cls):
    return cls(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=64)).eval()


# ---------------------------------------------------------------- 1. task type against the model class
def test_model_task_type_reads_the_class():
    assert model_task_type(tiny_model("llama")) == TaskType.CAUSAL_LM
    assert model_task_type(tiny_model("gpt2")) == TaskType.CAUSAL_LM
    assert model_task_type(tiny_model("t5")) == TaskType.SEQ_2_SEQ_LM
    assert model_task_type(tiny_model("bert")) == TaskType.SEQ_CLS
    assert model_task_type(_tiny_bert(BertModel)) is None  # a bare encoder: no head to train through
    assert model_task_type(_tiny_bert(BertForMaskedLM)) is None  # an LM head, but not a next-token one
    assert model_task_type(_prompt(tiny_model("gpt2"))) == TaskType.CAUSAL_LM  # a PromptModel: its own

    class MyDecoder(type(tiny_model("llama"))):  # a custom class no table names: a decoder with an LM head
        pass

    assert model_task_type(MyDecoder(tiny_model("llama").config)) == TaskType.CAUSAL_LM


def test_causal_lm_on_a_classifier_or_encoder_is_refused(bert):
    with pytest.raises(ValueError, match=r"CAUSAL_LM.*BertForSequenceClassification is a sequence classifier.*"
                                         r"use task_type='SEQ_CLS'"):
        _prompt(bert)  # used to return logits of shape (B, 0)
    with pytest.raises(ValueError, match=r"BertModel is not a decoder with a language-model head.*AutoModelForCausal"):
        _prompt(_tiny_bert(BertModel))
    with pytest.raises(ValueError, match=r"BertForMaskedLM is not a decoder"):
        _prompt(_tiny_bert(BertForMaskedLM))
    with pytest.raises(ValueError, match="is an encoder-decoder model; use task_type='SEQ_2_SEQ_LM'"):
        _prompt(tiny_model("t5"))
    with pytest.raises(ValueError, match="Cannot tell which task_type BertModel serves"):
        get_prompt_model(_tiny_bert(BertModel), PromptTuningConfig(num_virtual_tokens=T))
    with pytest.raises(ValueError, match="CAUSAL_LM.*sequence classifier"):  # MPT goes through the same check
        get_prompt_model(bert, MultitaskPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, num_tasks=2))


def test_seq2seq_and_seq_cls_need_their_heads(gpt2):
    with pytest.raises(ValueError, match="SEQ_2_SEQ_LM.*GPT2LMHeadModel is not an encoder-decoder.*'CAUSAL_LM'"):
        _prompt(gpt2, "SEQ_2_SEQ_LM")
    with pytest.raises(ValueError, match="GPT2LMHeadModel has no child named like.*SEQ_CLS"):
        _prompt(gpt2, "SEQ_CLS")
    with pytest.raises(ValueError, match="LlamaForCausalLM has no child named like.*classifier.*SEQ_CLS"):
        check_task_type(tiny_model("llama"), "SEQ_CLS")
    assert check_task_type(tiny_model("bert"), "SEQ_CLS") == TaskType.SEQ_CLS


def test_a_causal_prompt_loaded_onto_a_classifier_of_the_same_width_is_refused(tmp_path, gpt2, bert):
    _prompt(gpt2).save_pretrained(tmp_path / "p")
    with pytest.raises(ValueError, match="CAUSAL_LM.*BertForSequenceClassification is a sequence classifier"):
        PromptModel.from_pretrained(bert, tmp_path / "p")


# ---------------------------------------------------------------- 2. right-padded generation
def test_generate_refuses_right_padding(gpt2):
    pm = _prompt(gpt2)
    right = tiny_tokenizer(padding_side="right")(["good movie", "a very bad movie"], padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match=r"right padding.*Pad on the left: tokenizer.padding_side = 'left'"):
        pm.generate(**right, max_new_tokens=2, do_sample=False)
    left = tiny_tokenizer(padding_side="left")(["good movie", "a very bad movie"], padding=True, return_tensors="pt")
    assert pm.generate(**left, max_new_tokens=2, do_sample=False).shape == (2, 2)


# ---------------------------------------------------------------- 3. saves survive a crash
def _save(directory, T, *, fill=0.0, sidecar=True):
    config = {"peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": T, "token_dim": 8}
    tensors = {"prompt_embeddings": torch.full((T, 8), fill)}
    return save_adapter(directory, config, tensors, extra_config=dict(config) if sidecar else None)


def _saved_T(directory):
    config, tensors = load_adapter(directory)
    assert tensors["prompt_embeddings"].shape[0] == config["num_virtual_tokens"]  # the files belong together
    return config["num_virtual_tokens"]


def test_a_crash_between_the_files_leaves_the_old_prompt(tmp_path, monkeypatch):
    target = tmp_path / "prompt"
    _save(target, 4)
    (target / "README.md").write_text("mine")

    def crash(path, obj):
        raise OSError("simulated crash after the weights were written")

    monkeypatch.setattr(adapter_files, "atomic_write_json", crash)
    with pytest.raises(OSError, match="simulated crash"):
        _save(target, 8)
    monkeypatch.undo()
    assert _saved_T(target) == 4  # not T=8 weights next to a T=4 config
    assert (target / "README.md").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompt"]  # no staging leftovers


def test_a_crash_during_the_swap_leaves_the_old_prompt(tmp_path, monkeypatch):
    target = tmp_path / "prompt"
    _save(target, 4)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # target -> old succeeded; the new directory cannot take its place
            raise OSError("simulated failure between the two renames")
        real_rename(src, dst)

    monkeypatch.setattr(adapter_files.os, "rename", rename)
    with pytest.raises(OSError, match="between the two renames"):
        _save(target, 8)
    monkeypatch.undo()
    assert _saved_T(target) == 4


def test_overwrite_keeps_other_files_and_drops_stale_adapter_files(tmp_path):
    target = tmp_path / "prompt"
    _save(target, 4)
    (target / "tokenizer.json").write_text("{}")
    (target / "checkpoint-10").mkdir()
    (target / "checkpoint-10" / "state.json").write_text("{}")
    _save(target, 8, sidecar=False)
    assert _saved_T(target) == 8
    assert not (target / SIDECAR_CONFIG_NAME).exists()  # a T=4 sidecar would override the T=8 config on load
    assert (target / "tokenizer.json").read_text() == "{}"
    assert (target / "checkpoint-10" / "state.json").read_text() == "{}"


def test_saving_into_the_working_directory_writes_in_place(tmp_path, monkeypatch):
    _save(tmp_path, 4)
    monkeypatch.chdir(tmp_path)
    _save(".", 8)
    assert Path.cwd() == tmp_path and os.path.samefile(os.getcwd(), tmp_path)  # the cwd was not swapped away
    assert _saved_T(tmp_path) == 8


def _leftover(target, kind):
    return target.parent / STAGING_DIR_NAME / f"{target.name}.{kind}-{DEAD_PID}-0123abcd"


def test_leftovers_of_a_killed_save_are_cleaned_and_a_missing_directory_is_restored(tmp_path):
    target = tmp_path / "prompt"
    _save(target, 4)
    _leftover(target, "tmp").parent.mkdir()
    _save(_leftover(target, "tmp"), 8)  # killed before its swap: a complete staging copy
    os.rename(target, _leftover(target, "old"))  # killed between the two renames: the old save moved aside
    with pytest.warns(UserWarning, match="interrupted; restored the previous save"):
        assert _saved_T(target) == 4
    assert not (tmp_path / STAGING_DIR_NAME).exists()
    _leftover(target, "tmp").parent.mkdir()
    _save(_leftover(target, "tmp"), 8)
    _save(target, 2)  # the next save clears the leftovers
    assert _saved_T(target) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["prompt"]


def test_a_save_killed_by_sigkill_leaves_the_old_prompt(tmp_path):
    """A real SIGKILL between the two renames of the swap (the one moment the directory is missing)."""
    target = tmp_path / "prompt"
    _save(target, 4)
    script = textwrap.dedent(f"""
        import os, signal, torch
        import softprompt.adapter_files as af
        real, calls = os.rename, []
        def rename(src, dst):
            calls.append(dst)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
        af.os.rename = rename
        config = {{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 8, "token_dim": 8}}
        af.save_adapter({str(target)!r}, config, {{"prompt_embeddings": torch.ones(8, 8)}}, extra_config=config)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(adapter_files.__file__).parents[1]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not target.exists()  # killed mid-swap
    with pytest.warns(UserWarning, match="restored the previous save"):
        assert _saved_T(target) == 4


# ---------------------------------------------------------------- 4. meta-device models
def test_a_model_on_the_meta_device_is_refused():
    with torch.device("meta"):
        model = tiny_model("gpt2")
    with pytest.raises(ValueError, match=r"on the meta device.*init_empty_weights.*to_empty"):
        _prompt(model)  # used to fail with "Tensor.item() cannot be called on meta tensors"
    with pytest.raises(ValueError, match="meta device"):
        _prompt(model, prompt_tuning_init="SAMPLE_VOCAB")  # used to build a prompt of meta tensors


# ---------------------------------------------------------------- 5. input shapes
def test_one_dimensional_input_ids_are_refused(gpt2):
    pm = _prompt(gpt2)
    ids = torch.tensor([5, 6, 7])
    for call in (lambda: pm(ids), lambda: pm.generate(ids, max_new_tokens=1)):
        with pytest.raises(ValueError, match=r"input_ids has shape \(3,\); expected \(batch, length\).*ids\[None\]"):
            call()
    with pytest.raises(TypeError, match="input_ids has dtype torch.float32"):
        pm(ids[None].float())
    with pytest.raises(TypeError, match="input_ids is a list"):
        pm([[5, 6, 7]])
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 2\); expected \(1, 3\)"):
        pm(ids[None], attention_mask=torch.ones(1, 2, dtype=torch.long))
    assert pm(ids[None]).logits.shape == (1, 3, gpt2.config.vocab_size)


# ---------------------------------------------------------------- 6. vocabulary and position limits
def test_ids_outside_the_vocabulary_are_refused(gpt2):
    pm = _prompt(gpt2)
    V = gpt2.get_input_embeddings().num_embeddings
    for bad in (V, -1):
        with pytest.raises(ValueError, match=rf"token id {bad}.*ids 0..{V - 1}.*resize_token_embeddings"):
            pm(torch.tensor([[5, bad]]))  # used to be "IndexError: index out of range in self"
    with pytest.raises(ValueError, match=rf"token id {V}"):
        pm.generate(torch.tensor([[5, V]]), max_new_tokens=1)


def test_inputs_longer_than_the_position_table_are_refused(gpt2, bert):
    pm = _prompt(gpt2)  # n_positions=256
    assert pm(torch.ones(1, 256 - T, dtype=torch.long)).logits.shape[1] == 256 - T  # exactly fits
    with pytest.raises(ValueError, match=rf"{T} virtual tokens plus 253 input tokens make 257 positions.*256.*"
                                         rf"max_length={256 - T}"):
        pm(torch.ones(1, 253, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens=10.*position embeddings for 256"):
        pm.generate(torch.ones(1, 250, dtype=torch.long), max_new_tokens=10)
    cls = _prompt(bert, "SEQ_CLS")  # max_position_embeddings=256
    with pytest.raises(ValueError, match="make 260 positions.*BertForSequenceClassification.*256"):
        cls(torch.ones(1, 256, dtype=torch.long))


def test_rotary_models_have_no_position_limit(llama):
    pm = _prompt(llama)  # max_position_embeddings=256, but rotary positions: longer inputs run as before
    assert pm(torch.ones(1, 300, dtype=torch.long)).logits.shape == (1, 300, llama.config.vocab_size)


# ---------------------------------------------------------------- 7. encoder indices on any device
def test_encoders_move_indices_to_their_device(gpt2, monkeypatch):
    pm = _prompt(gpt2)
    mpt = get_prompt_model(tiny_model("gpt2"), MultitaskPromptTuningConfig(task_type="CAUSAL_LM",
                                                                           num_virtual_tokens=T, num_tasks=2))
    moved = []
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        moved.append(args[0] if args else kwargs.get("device"))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    pm.prompt_encoder(torch.arange(T)[None])
    mpt.prompt_encoder(torch.arange(T)[None], torch.tensor([1]))
    monkeypatch.undo()
    assert moved.count(pm.prompt_encoder.embedding.weight.device) >= 2  # one per encoder
    if torch.cuda.is_available():
        on_gpu = _prompt(tiny_model("gpt2").cuda())
        assert on_gpu.prompt_encoder(torch.arange(T)[None]).device.type == "cuda"  # CPU indices, GPU encoder


# ---------------------------------------------------------------- 8. a prompt loaded onto another model
def test_loading_onto_a_differently_named_model_warns(tmp_path):
    source = tiny_model("llama")
    source.config._name_or_path = "org/model-a"
    _prompt(source).save_pretrained(tmp_path)
    other = tiny_model("llama", seed=1)
    other.config._name_or_path = "org/model-b"
    with pytest.warns(UserWarning, match=r"trained on 'org/model-a', but this model is 'org/model-b'"):
        PromptModel.from_pretrained(other, tmp_path)
    same = tiny_model("llama")
    same.config._name_or_path = "org/model-a"
    unnamed = tiny_model("llama")  # name_or_path '': nothing to compare
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PromptModel.from_pretrained(same, tmp_path)
        PromptModel.from_pretrained(unnamed, tmp_path)


def test_valid_saves_keep_their_layout(tmp_path):
    _prompt(tiny_model("llama")).save_pretrained(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME,
                                                                  SIDECAR_CONFIG_NAME]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
