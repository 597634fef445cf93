"""PromptTrainer under ``torchrun --nproc_per_node 2`` (DDP over gloo, on the CPU) trains the prompt one process would.

tests/ddp_train_script.py trains three times: under torchrun, two processes with 4 rows each; here, in the test's
process, one process with 8 rows (the same global batch: both draw the same shuffled order from ``seed=0``); and
here again, resumed from the two processes' checkpoint-3. Trainer and accelerate do all the distributed work; we
check the result against the one-process run. (One torchrun launch: each Python process spends most of its
time importing torch and transformers.)
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_train_script import train

from softprompt.prompt_model import PromptModel
from softprompt.testing import tiny_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "ddp_train_script.py"
STEPS, SAVE_STEPS, PER_DEVICE = 6, 3, 4

# DDP all-reduces (sums) the two processes' prompt gradients, each a float32 sum over 4 rows; one process sums the
# 8 rows in another order. float32 addition is not associative, so gradients differ in the last bits (~1e-7
# relative); Adam's division by sqrt(v) carries that into the update, and 6 steps add up to ~1e-6 on prompt values
# of size ~1 (measured: 1.4e-6). 1e-5 leaves room for other CPUs' summation orders; a real fault (a process training
# on its own half, a missed all-reduce) moves the prompt by about the learning rate, 0.3 per step.
PROMPT_ATOL = 1e-5
LOSS_RTOL = 1e-5  # the logged losses and gradient norms: same batches, float32 sums in another order


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out: Path, processes: int, *args: str) -> list[dict]:
    """Run the training script under torchrun, each process on one thread; return each process's report."""
    out.mkdir(parents=True)
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1",
                "--master_port", str(free_port())]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *launcher, str(SCRIPT), str(out), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    ddp = torchrun(root / "ddp", 2, "--batch-size", str(PER_DEVICE), "--steps", str(STEPS),
                   "--save-steps", str(SAVE_STEPS))
    single = train(root / "single", 2 * PER_DEVICE, STEPS, SAVE_STEPS)
    # a checkpoint written by two processes, resumed by one with the same global batch
    resumed = train(root / "resumed", 2 * PER_DEVICE, STEPS, SAVE_STEPS,
                    resume=str(root / "ddp" / f"checkpoint-{SAVE_STEPS}"))
    return root, ddp, single, resumed


def prompt(report: dict) -> torch.Tensor:
    return torch.tensor(report["prompt"])  # (T, d)


def test_two_processes_train_the_prompt_of_one_process_with_the_same_global_batch(runs):
    _, ddp, single, _ = runs
    assert [r["world_size"] for r in ddp] == [2, 2] and single["world_size"] == 1
    assert {r["wrapper"] for r in ddp} == {"DistributedDataParallel"} and {r["backend"] for r in ddp} == {"gloo"}
    assert torch.equal(prompt(ddp[0]), prompt(ddp[1])), "DDP keeps every process's prompt identical"

    # The same global batches: the losses agree step by step, and so do the all-reduced gradients' norms
    # (Adam hides a gradient scaled by the number of processes; the norm does not).
    for key in ("losses", "grad_norms"):
        torch.testing.assert_close(torch.tensor(ddp[0][key]), torch.tensor(single[key]), rtol=LOSS_RTOL, atol=0)
    assert len(ddp[0]["losses"]) == STEPS

    difference = (prompt(ddp[0]) - prompt(single)).abs().max().item()
    moved = (prompt(single) - torch.tensor(single["initial_prompt"])).abs().max().item()
    print(f"two processes vs one: max |prompt difference| = {difference:.2e}; training moved the prompt {moved:.2f}")
    assert difference <= PROMPT_ATOL
    assert moved > 1000 * PROMPT_ATOL, "the comparison means little unless training moved the prompt"


def test_only_the_main_process_writes_adapter_files_once_per_save(runs):
    root, ddp, _, _ = runs
    saves = (root / "ddp" / "saves.log").read_text().split("\n")[:-1]
    assert saves == [f"0 checkpoint-{SAVE_STEPS}", f"0 checkpoint-{STEPS}", "0 final"]
    for folder in (f"checkpoint-{SAVE_STEPS}", f"checkpoint-{STEPS}", "final"):
        files = {p.name for p in (root / "ddp" / folder).iterdir()}
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files
        assert not {"model.safetensors", "pytorch_model.bin"} & files, "adapter files, not the frozen model"
    # Trainer's own checkpoint files: one RNG state per process
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (root / "ddp" / f"checkpoint-{STEPS}").iterdir()}

    loaded = PromptModel.from_pretrained(tiny_model("llama", seed=0), root / "ddp" / "final")
    assert torch.equal(loaded.prompt_encoder.embedding.weight, prompt(ddp[0]))


def test_a_two_process_checkpoint_resumes_in_one_process(runs):
    _, ddp, _, resumed = runs
    assert len(resumed["losses"]) == STEPS  # 3 from the checkpoint's trainer_state.json, 3 trained
    difference = (prompt(resumed) - prompt(ddp[0])).abs().max().item()
    print(f"resumed at step {SAVE_STEPS} vs uninterrupted: max |prompt difference| = {difference:.2e}")
    assert difference <= PROMPT_ATOL
