"""A PromptModel trains under transformers.Trainer: the road to multi-GPU through accelerate."""

import random

import pytest
import torch
from datasets import Dataset

from softprompt.config import PromptTuningConfig
from softprompt.prompt_model import get_prompt_model
from softprompt.tasks.task import Task
from softprompt.testing import tiny_model, tiny_tokenizer
from softprompt.hf_trainer import PromptTrainer, TaskCollator
from softprompt.prompt_model import PromptModel



def toy_task():
    pos, neg = "good great excellent love fine happy".split(), "bad terrible awful hate sad angry".split()
    fill = "the movie film book story was really very quite".split()
    r = random.Random(0)
    rows = [{"text": " ".join(r.sample(fill, 3) + [r.choice(pos if i % 2 else neg)]), "label": i % 2}
            for i in range(64)]
    return Task(name="toy", family="sentiment", description="toy", splits={"train": Dataset.from_list(rows)},
                template="review : {text} . sentiment :", label_words=["negative", "positive"])


@pytest.mark.parametrize("fast", [True, False])
def test_trainer_trains_only_the_prompt_and_loss_goes_down(tmp_path, fast):
    from transformers import Trainer, TrainingArguments

    tok, task = tiny_tokenizer(), toy_task()
    pm = get_prompt_model(tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    prompt_before = pm.prompt_encoder.embedding.weight.detach().clone()
    base_before = {k: v.clone() for k, v in pm.base_model.state_dict().items()}
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=20, per_device_train_batch_size=8, learning_rate=0.3,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        remove_unused_columns=False,  # the collator reads the task's text and label columns
        disable_tqdm=True, seed=0, dataloader_num_workers=0,
    )
    trainer = Trainer(model=pm, args=args, train_dataset=task.splits["train"],  # the plain Trainer trains it
                      data_collator=TaskCollator(task, tok, pm, fast=fast))
    trainer.train()

    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert not torch.equal(pm.prompt_encoder.embedding.weight, prompt_before)
    for k, v in pm.base_model.state_dict().items():
        assert torch.equal(v, base_before[k]), f"{k} changed: the base model must stay frozen"
    # Trainer's optimizer holds the prompt and nothing else
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert held == {id(pm.prompt_encoder.embedding.weight)}


def test_plain_trainer_trains_but_prompt_trainer_saves_adapter_files_and_resumes(tmp_path):
    from transformers import TrainingArguments

    tok, task = tiny_tokenizer(), toy_task()
    pm = get_prompt_model(tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, report_to=[],
                             learning_rate=0.1, use_cpu=True, remove_unused_columns=False, save_strategy="steps",
                             save_steps=2, disable_tqdm=True)
    trainer = PromptTrainer(model=pm, args=args, train_dataset=task.splits["train"],
                            data_collator=TaskCollator(task, tok, pm))
    trainer.train()
    trainer.save_model(str(tmp_path / "out"))
    for d in (tmp_path / "out", tmp_path / "checkpoint-4"):
        files = {p.name for p in d.iterdir()}
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files
        assert "model.safetensors" not in files
    loaded = PromptModel.from_pretrained(tiny_model("llama"), tmp_path / "out")
    assert torch.equal(loaded.prompt_encoder.embedding.weight, pm.prompt_encoder.embedding.weight)

    # resume_from_checkpoint loads the prompt of checkpoint-2 into a fresh model, then trains on
    pm2 = get_prompt_model(tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    seen = []
    trainer2 = PromptTrainer(model=pm2, args=args, train_dataset=task.splits["train"],
                             data_collator=TaskCollator(task, tok, pm2))
    trainer2._load_from_checkpoint(str(tmp_path / "checkpoint-2"))
    seen.append(pm2.prompt_encoder.embedding.weight.detach().clone())
    ckpt2 = PromptModel.from_pretrained(tiny_model("llama"), tmp_path / "checkpoint-2")
    assert torch.equal(seen[0], ckpt2.prompt_encoder.embedding.weight)
    trainer2.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert trainer2.state.global_step == 4


def test_collator_builds_prompt_model_inputs():
    task, tok = toy_task(), tiny_tokenizer()
    pm = get_prompt_model(tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    batch = TaskCollator(task, tok, pm)([task.splits["train"][i] for i in range(3)])
    assert set(batch) == {"input_ids", "attention_mask", "labels", "logits_to_keep"}
    assert batch["logits_to_keep"] == 2 and pm(**batch).loss.isfinite()
