"""Kill a real training run with SIGKILL, resume it, and compare with a run that was never interrupted.

The checkpoint promise of ``softprompt.train`` (checkpoints every N steps, written atomically, with
optimizer and RNG state): a process killed at any moment loses at most N steps, and the resumed run
ends exactly where an uninterrupted one ends. ``tests/test_checkpoints.py`` checks this on a tiny
model; this script shows it on the offline SmolLM2 and a built-in task:

1. a child process trains ``--steps`` steps with ``checkpoint_every=--every`` and reports each step
   to a file; the parent sends SIGKILL once the child has passed ``--kill-after`` steps (wherever it is:
   mid-step, mid-save);
2. the parent calls ``train`` again with the same settings, which resumes from the newest checkpoint;
3. the parent trains a reference run from scratch, and prints steps lost, the largest prompt difference
   and whether the loss histories agree.

    python benchmarks/kill_resume.py                 # SmolLM2-135M offline, 20 steps, checkpoint every 5
    python benchmarks/kill_resume.py --model tiny    # a tiny random Llama: seconds
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import softprompt as sp
from softprompt.checkpoints import latest_checkpoint, load_checkpoint


class ReportSteps(sp.Callback):
    """Write the number of the step just finished to a file (the parent watches it)."""

    def __init__(self, path: str):
        self.path = path

    def on_step(self, state):
        Path(self.path).write_text(str(state.step))


def build(model_name: str):
    if model_name == "tiny":
        from softprompt.testing import tiny_model, tiny_tokenizer

        return tiny_model("llama"), tiny_tokenizer()
    return sp.load_model(model_name)


def run(args, checkpoint_dir: str, callbacks=()):
    model, tokenizer = build(args.model)
    config = sp.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=args.num_virtual_tokens,
                                   prompt_tuning_init="SAMPLE_VOCAB", seed=0)
    prompt_model = sp.get_prompt_model(model, config, tokenizer)
    history = sp.train(prompt_model, tokenizer, sp.load_task(args.task), steps=args.steps, batch_size=args.batch_size,
                       checkpoint_dir=checkpoint_dir, checkpoint_every=args.every, callbacks=callbacks,
                       seed=0, progress=False)
    return prompt_model, history


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a load_model name, or 'tiny'")
    ap.add_argument("--task", default="sentiment_movies")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--every", type=int, default=5, help="checkpoint_every")
    ap.add_argument("--kill-after", type=int, default=12, help="SIGKILL once the child has finished this many steps")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-virtual-tokens", type=int, default=8)
    ap.add_argument("--child", nargs=2, metavar=("CKPT_DIR", "STEP_FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 0 < args.kill_after < args.steps:
        ap.error("--kill-after must lie between 0 and --steps")
    if args.child:
        run(args, args.child[0], [ReportSteps(args.child[1])])
        return 0

    work = Path(tempfile.mkdtemp(prefix="kill_resume_"))
    ckpt, step_file = work / "killed", work / "step"
    own_args = argv if argv is not None else sys.argv[1:]
    child = [sys.executable, __file__, *own_args, "--child", str(ckpt), str(step_file)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(child, env=dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1")))
    killed_at = 0
    while proc.poll() is None:
        killed_at = int(step_file.read_text() or 0) if step_file.exists() else 0
        if killed_at >= args.kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        print(f"the child ended with code {proc.returncode} before it was killed", file=sys.stderr)
        return 1
    latest = latest_checkpoint(ckpt)
    saved = load_checkpoint(latest).step if latest else 0
    print(f"killed with SIGKILL after step {killed_at} ({time.perf_counter() - t0:.0f} s); newest checkpoint: "
          f"step {saved}; steps lost: {killed_at - saved} (at most checkpoint_every = {args.every})")

    t1 = time.perf_counter()
    resumed, resumed_history = run(args, str(ckpt))
    print(f"resumed from step {saved} and finished {args.steps - saved} steps in {time.perf_counter() - t1:.0f} s")
    reference, reference_history = run(args, str(work / "reference"))
    a = resumed.prompt_encoder.embedding.weight.detach()
    b = reference.prompt_encoder.embedding.weight.detach()
    same_loss = resumed_history.loss == reference_history.loss
    print(f"resumed vs uninterrupted: max |prompt difference| {(a - b).abs().max():.1e}; "
          f"bit-identical: {torch.equal(a, b)}; loss histories equal: {same_loss} "
          f"(final loss {resumed_history.loss[-1][1]:.4f})")
    ok = killed_at - saved <= args.every and torch.equal(a, b) and same_loss
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
