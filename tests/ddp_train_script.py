"""Train a prompt with PromptTrainer: under ``torchrun`` for data parallelism, or as one plain process.

tests/test_multiprocess_trainer.py runs it under torchrun and calls :func:`train` in its own process with
the same global batch, then compares the prompts:

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_train_script.py OUT --batch-size 4
    python tests/ddp_train_script.py OUT --batch-size 8

The script holds no distributed code: Trainer (through accelerate) sees the ``torchrun`` environment,
wraps the model in DistributedDataParallel with the gloo backend (CPU) and shards each global batch.
It writes ``OUT/final`` (adapter files), Trainer's checkpoints, and per process ``OUT/rank{r}.json``
(that process's final prompt and losses) and a line in ``OUT/saves.log`` for every adapter save.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

from softprompt import load_task  # noqa: E402
from softprompt.config import PromptTuningConfig  # noqa: E402
from softprompt.hf_trainer import PromptTrainer, TaskCollator  # noqa: E402
from softprompt.prompt_model import PromptModel, get_prompt_model  # noqa: E402
from softprompt.testing import tiny_model, tiny_tokenizer  # noqa: E402


def log_saves(path: Path, rank: int) -> None:
    """Record which process writes adapter files (the test checks it is the main process, once per save)."""
    save = PromptModel.save_pretrained

    def logged(self, save_directory, *args, **kwargs):
        with open(path, "a") as f:
            f.write(f"{rank} {Path(save_directory).name}\n")
        return save(self, save_directory, *args, **kwargs)

    PromptModel.save_pretrained = logged


def train(out: Path, batch_size: int, steps: int = 6, save_steps: int = 3, resume: str | None = None) -> dict:
    """Train the prompt for ``steps`` steps of ``batch_size`` rows per process; report this process's result."""
    torch.set_num_threads(1)  # two processes on two cores
    task, tok = load_task("sentiment_movies"), tiny_tokenizer()
    prompt_model = get_prompt_model(tiny_model("llama", seed=0),
                                    PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=0.3, lr_scheduler_type="constant", seed=0,  # the same shuffled order in every run
        use_cpu=True,  # under torchrun, accelerate then picks the gloo backend (ddp_backend="gloo" would
        # make the plain one-process run fail: accelerate then wants a process group that torchrun did not set up)
        ddp_find_unused_parameters=False,  # the prompt, the only trainable tensor, is used in every forward
        remove_unused_columns=False,  # the collator reads the task's text and label columns
        save_strategy="steps", save_steps=save_steps, logging_steps=1, report_to=[], disable_tqdm=True,
        dataloader_num_workers=0,
    )
    initial = prompt_model.prompt_encoder.embedding.weight.detach().clone()  # (T, d)
    trainer = PromptTrainer(model=prompt_model, args=args, train_dataset=task.splits["train"],
                            data_collator=TaskCollator(task, tok, prompt_model))
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out / "final"))

    logged = [e for e in trainer.state.log_history if "loss" in e]
    return {
        "world_size": trainer.args.world_size, "initial_prompt": initial.tolist(),
        "prompt": prompt_model.prompt_encoder.embedding.weight.detach().tolist(),  # (T, d)
        "losses": [e["loss"] for e in logged], "grad_norms": [e["grad_norm"] for e in logged],
        "wrapper": type(trainer.model_wrapped).__name__,
        "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch-size", type=int, required=True, help="per process; global = this x processes")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--save-steps", type=int, default=3)
    parser.add_argument("--resume", help="a checkpoint folder to resume from (its adapter files, optimizer, RNG)")
    opts = parser.parse_args()
    rank = int(os.environ.get("RANK", 0))
    log_saves(opts.out / "saves.log", rank)
    report = train(opts.out, opts.batch_size, opts.steps, opts.save_steps, opts.resume)
    (opts.out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
