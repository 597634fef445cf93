"""The contract for misused precision and memory knobs: each bad value is a ValueError naming the knob and the fix.

A dtype softprompt does not run in (``"bf32"``, float64) is refused by ``check_dtype``, ``load_model`` (before
anything loads) and ``Profile``; a Profile's ``grad_accum_steps`` must divide its ``batch_size``, and its
``eval_batch_size`` / ``max_length`` be positive; ``TrainingConfig.grad_accum_steps`` must be a positive integer
dividing ``batch_size`` (the message lists the values that do); a checkpoint made in another dtype is not resumed.
"""

import random

import pytest
import torch
from datasets import Dataset

from softprompt.config import PromptTuningConfig
from softprompt.models import load_model
from softprompt.precision import check_dtype
from softprompt.profiles import PROFILES
from softprompt.prompt_model import get_prompt_model
from softprompt.tasks.task import Task
from softprompt.testing import tiny_model, tiny_tokenizer
from softprompt.training import TrainingConfig, train

POS, NEG = "good great excellent love fine happy".split(), "bad terrible awful hate sad angry".split()
FILL = "the movie film book story was really very quite".split()


def toy_task():
    r = random.Random(0)
    rows = [{"text": " ".join(r.sample(FILL, 3) + [r.choice(POS if i % 2 else NEG)]), "label": i % 2}
            for i in range(16)]
    return Task(name="toy", family="sentiment", description="toy", splits={"train": Dataset.from_list(rows)},
                template="review : {text} . sentiment :", label_words=["negative", "positive"])


def prompt_model(arch="llama"):
    return get_prompt_model(tiny_model(arch), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))


@pytest.mark.parametrize("bad", ["bf32", "float64", torch.float64, 16])
def test_unknown_dtypes_are_clear_errors(bad):
    with pytest.raises(ValueError, match="dtype.*'float32', 'bfloat16', 'float16' or 'auto'|torch.float32, torch"):
        check_dtype(bad)
    with pytest.raises(ValueError, match="dtype"):
        load_model("no-such-model", dtype=bad)  # refused before anything is loaded


def test_profile_checks_its_memory_knobs():
    gpu = PROFILES["gpu"]
    with pytest.raises(ValueError, match="dtype='bf32'"):
        gpu.with_(dtype="bf32")
    with pytest.raises(ValueError, match="grad_accum_steps=3 must divide batch_size=32"):
        gpu.with_(grad_accum_steps=3)
    for knob, value in [("grad_accum_steps", 0), ("eval_batch_size", 0), ("max_length", -1)]:
        with pytest.raises(ValueError, match=f"{knob}={value}"):
            gpu.with_(**{knob: value})
    assert gpu.with_(grad_accum_steps=4, max_length=None).grad_accum_steps == 4  # what does fit is accepted


def test_resume_refuses_a_checkpoint_made_in_another_dtype(tmp_path):
    pm = prompt_model()
    train(pm, tiny_tokenizer(), toy_task(), steps=2, batch_size=4, progress=False, checkpoint_dir=tmp_path)
    pm.base_model.to(torch.bfloat16)
    with pytest.raises(ValueError, match="dtype: checkpoint 'float32' vs now 'bfloat16'"):
        train(pm, tiny_tokenizer(), toy_task(), steps=4, batch_size=4, progress=False, checkpoint_dir=tmp_path)


@pytest.mark.parametrize("kwargs,match", [
    (dict(grad_accum_steps=0), r"grad_accum_steps=0: must be a positive integer"),
    (dict(grad_accum_steps=1.5), r"grad_accum_steps=1.5: must be a positive integer"),
    (dict(grad_accum_steps=3, batch_size=8), r"grad_accum_steps=3 does not divide batch_size=8.*\[1, 2, 4, 8\]"),
    (dict(eval_batch_size=0), r"eval_batch_size=0: must be a positive integer"),
])
def test_bad_accumulation_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingConfig(**kwargs)
    with pytest.raises(ValueError, match=match):
        train(prompt_model(), tiny_tokenizer(), toy_task(), steps=1, progress=False, **kwargs)
