"""Checkpoints: safetensors + JSON only, atomic directories, exact resume (also after a real SIGKILL)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from softprompt.checkpoints import (
    capture_rng, flatten_optimizer_state, latest_checkpoint, list_checkpoints, load_checkpoint, restore_rng,
    save_checkpoint, unflatten_optimizer_state,
)
from softprompt.optim import make_optimizer



# The training run of the kill test. The subprocess runs this file; the test execs it too, so
# the uninterrupted reference run and the killed run are built by the very same code.
SCRIPT = r'''
import random as _random
import sys
import time

from datasets import Dataset

from softprompt import Callback
from softprompt.config import PromptTuningConfig
from softprompt.prompt_model import get_prompt_model
from softprompt.tasks.task import Task
from softprompt.testing import tiny_model, tiny_tokenizer
from softprompt.training import train

STEPS, EVERY, HANG_AT = 30, 5, 13


def toy_task():
    pos, neg = "good great excellent love fine happy".split(), "bad terrible awful hate sad angry".split()
    fill = "the movie film book story was really very quite".split()
    def split(n, seed):
        r = _random.Random(seed)
        return Dataset.from_list([{"text": " ".join(r.sample(fill, 3) + [r.choice(pos if i % 2 else neg)]),
                                   "label": i % 2} for i in range(n)])
    return Task(name="toy", family="sentiment", description="toy", splits={"train": split(48, 0),
                "validation": split(16, 1)}, template="review : {text} . sentiment :",
                label_words=["negative", "positive"])


def run(checkpoint_dir, callbacks=()):
    # GPT-2 has dropout 0.1: an exact resume needs the torch RNG restored too.
    pm = get_prompt_model(tiny_model("gpt2"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    history = train(pm, tiny_tokenizer(), toy_task(), steps=STEPS, batch_size=4, optimizer="adafactor",
                    checkpoint_dir=checkpoint_dir, checkpoint_every=EVERY, callbacks=callbacks, progress=False)
    return pm, history


class HangAt(Callback):
    """Signal the parent, then hang mid-run until it kills us."""

    def __init__(self, marker):
        self.marker = marker

    def on_step(self, state):
        if state.step == HANG_AT:
            open(self.marker, "w").close()
            time.sleep(600)


if __name__ == "__main__":
    import torch
    torch.set_num_threads(1)
    run(sys.argv[1], [HangAt(sys.argv[2])])
'''


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    ckdir, marker = tmp_path / "ckpt", tmp_path / "hanging"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, str(script), str(ckdir), str(marker)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the training subprocess exited early:\n{proc.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the training subprocess did not reach the hang step in 180 s")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    ns = {"__name__": "kill_test"}
    exec(compile(SCRIPT, str(script), "exec"), ns)
    latest = latest_checkpoint(ckdir)
    assert latest is not None and load_checkpoint(latest).step == 10  # killed at 13: 3 steps lost, <= EVERY
    assert ns["HANG_AT"] - load_checkpoint(latest).step <= ns["EVERY"]

    resumed, resumed_history = ns["run"](ckdir)  # picks up checkpoint-000010
    reference, reference_history = ns["run"](tmp_path / "reference")
    a, b = resumed.prompt_encoder.embedding.weight, reference.prompt_encoder.embedding.weight
    assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()
    assert torch.equal(a, b)  # in practice bit-identical: same ops, same data order, same RNG draws
    assert resumed_history.loss == reference_history.loss  # full history, steps 1..30, restored from the checkpoint
    assert [s for s, _ in resumed_history.loss] == list(range(1, 31))


def _optimizer(name, steps=3):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4, 6))
    q = torch.nn.Parameter(torch.randn(3))
    opt = make_optimizer([p, q], name, lr=0.1, weight_decay=0.01)
    for _ in range(steps):
        opt.zero_grad()
        ((p ** 2).sum() + (q ** 3).sum()).backward()
        opt.step()
    return opt, (p, q)


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_optimizer_state_round_trips_bit_exactly_and_continues_identically(name, tmp_path):
    opt, (p, q) = _optimizer(name)
    save_checkpoint(tmp_path, 3, params={"p": p, "q": q}, optimizer=opt, state={})
    ck = load_checkpoint(tmp_path / "checkpoint-000003")

    # same structure and values as the live state dict
    live = opt.state_dict()
    assert ck.optimizer_state["param_groups"] == live["param_groups"]
    for i, st in live["state"].items():
        for k, v in st.items():
            got = ck.optimizer_state["state"][i][k]
            assert torch.equal(got, v) if torch.is_tensor(v) else got == v

    # a fresh optimizer loaded from the file takes the same next step
    p2, q2 = torch.nn.Parameter(ck.params["p"].clone()), torch.nn.Parameter(ck.params["q"].clone())
    opt2 = make_optimizer([p2, q2], name, lr=0.1, weight_decay=0.01)
    opt2.load_state_dict(ck.optimizer_state)
    for o, (x, y) in ((opt, (p, q)), (opt2, (p2, q2))):
        o.zero_grad()
        ((x ** 2).sum() + (y ** 3).sum()).backward()
        o.step()
    assert torch.equal(p, p2) and torch.equal(q, q2)


def test_flatten_keeps_tensors_and_scalars_apart():
    opt, _ = _optimizer("adafactor")
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    assert all(torch.is_tensor(t) for t in tensors.values())
    json.dumps(meta)  # everything else is JSON
    assert meta["scalars"]["0"]["step"] == 3  # Adafactor counts steps in a python int
    back = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    assert isinstance(back["param_groups"][0]["eps"], tuple)  # JSON lists become tuples again


def test_rng_state_restores_every_generator():
    tensors, meta = capture_rng()
    first = (torch.rand(3), random.random(), np.random.rand())
    torch.rand(5), random.random(), np.random.rand()  # move everything on
    restore_rng(tensors, json.loads(json.dumps(meta)))
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_files_are_safetensors_and_json_only(tmp_path):
    opt, (p, q) = _optimizer("adamw", steps=1)
    path = save_checkpoint(tmp_path, 1, params={"p": p}, optimizer=opt, state={"note": "hi"})
    assert sorted(f.name for f in path.iterdir()) == [
        "optimizer.safetensors", "params.safetensors", "rng.safetensors", "state.json",
    ]
    assert load_checkpoint(path).state == {"note": "hi"}


def test_half_written_checkpoints_are_invisible_and_old_ones_rotate(tmp_path):
    opt, (p, q) = _optimizer("adamw", steps=1)
    for step in (5, 10, 15):
        save_checkpoint(tmp_path, step, params={"p": p}, optimizer=opt, state={}, keep=2)
    (tmp_path / ".checkpoint-000020.abc.tmp").mkdir()  # what a kill during a save leaves behind
    assert [c.name for c in list_checkpoints(tmp_path)] == ["checkpoint-000010", "checkpoint-000015"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-000015"
    assert latest_checkpoint(tmp_path / "nowhere") is None


def test_incomplete_checkpoint_directory_is_a_clear_error(tmp_path):
    opt, (p, q) = _optimizer("adamw", steps=1)
    path = save_checkpoint(tmp_path, 1, params={"p": p}, optimizer=opt, state={})
    (path / "optimizer.safetensors").unlink()
    with pytest.raises(ValueError, match="missing optimizer.safetensors"):
        load_checkpoint(path)
    assert not any(Path(tmp_path).glob("**/*.pt")) and not any(Path(tmp_path).glob("**/*.bin"))
