"""Mixed precision (softprompt.precision): a bfloat16 / float16 model, a float32 prompt, checked against float32.

Tolerances (tiny random models on the CPU; measured values in brackets, torch 2.13):
* the training loss of one fixed batch: within 1e-2 relative of float32 (measured <= 2e-5);
* rank-classification log-probs: within 2e-2 absolute of float32 for causal LMs (measured <= 1.2e-3), 5e-2
  for T5 and BERT (measured 1.5e-2, T5 in bfloat16), and the predictions of a trained prompt differ on at most
  1 of 16 validation examples (measured 0);
* a short train() in bfloat16 and float16 lowers the loss and leaves every trained parameter float32.
"""

import json
import math

import pytest
import torch

from softprompt import Callback, evaluate
from softprompt.batching import Batches, training_rows
from softprompt.config import PromptTuningConfig
from softprompt.mpt import MPTRecipe, distill, teacher_model, teacher_student_kl, train_teachers
from softprompt.precision import Precision, autocast, keep_float32, resolve_dtype
from softprompt.profiles import PROFILES
from softprompt.prompt_model import get_prompt_model
from softprompt.testing import tiny_model, tiny_tokenizer
from softprompt.training import TrainingConfig, default_loss, plain_loss, train
from softprompt.training_checks import trainable_parameters
from test_training import prompt_model, toy_task

HALF = (torch.bfloat16, torch.float16)


def fixed_batch(pm, task, rows=16):
    return Batches(pm, tiny_tokenizer(), [task], training_rows([task], None, 0), TrainingConfig(batch_size=rows))(0)


# ------------------------------------------------------------------ resolving a dtype

def test_dtype_names_resolve_and_auto_is_float32_without_cuda(monkeypatch):
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype("fp16") is torch.float16
    assert resolve_dtype(torch.float32) is torch.float32 and resolve_dtype("FLOAT32") is torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_dtype("auto") is torch.float32
    assert resolve_dtype("auto", "cuda") is torch.float32  # a GPU profile on a CPU-only machine
    assert PROFILES["gpu"].torch_dtype() is torch.float32 and PROFILES["cpu"].torch_dtype() is torch.float32


@pytest.mark.parametrize("native_bf16,expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_is_bfloat16_on_a100_class_gpus_and_float16_on_a_t4(monkeypatch, native_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked = {}

    def is_bf16_supported(including_emulation=True):
        asked["emulation"] = including_emulation
        return native_bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolve_dtype("auto", "cuda") is expected and PROFILES["gpu"].torch_dtype() is expected
    assert asked["emulation"] is False  # a T4 emulates bfloat16 slowly: that must not count
    assert resolve_dtype("auto", "cpu") is torch.float32


# ------------------------------------------------------------------ forward and evaluation against float32

@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_loss_and_scores_match_float32(causal_arch, dtype):
    task, tok = toy_task(), tiny_tokenizer()
    pm = prompt_model(causal_arch)
    train(pm, tok, task, steps=15, batch_size=8, lr=0.3, progress=False)  # a prompt worth classifying with
    batch = fixed_batch(pm, task)
    ref_loss = plain_loss(pm, batch).item()
    ref = evaluate(pm, tok, task, "validation", return_predictions=True)
    pm.base_model.to(dtype)
    assert pm.prompt_encoder.embedding.weight.dtype == torch.float32  # the prompt is not the model's
    with autocast(pm):
        losses = [plain_loss(pm, batch).item(), default_loss(pm, batch).item()]  # plain and shared-prompt paths
    for loss in losses:
        assert abs(loss - ref_loss) <= 1e-2 * ref_loss, (loss, ref_loss)
    for use_cache in (True, False):  # the prefix cache and the plain forward
        got = evaluate(pm, tok, task, "validation", return_predictions=True, use_cache=use_cache)
        assert got["scores"].dtype == torch.float32
        assert (got["scores"] - ref["scores"]).abs().max() <= 2e-2
        assert sum(a != b for a, b in zip(got["predictions"], ref["predictions"])) <= 1
    ref_gen = evaluate(pm.float(), tok, task, "validation", method="generate", max_examples=4, max_new_tokens=2,
                       return_predictions=True)["generations"]
    pm.base_model.to(dtype)
    for use_cache in (True, False):  # PromptPrefixCache.generate and PromptModel.generate
        got = evaluate(pm, tok, task, "validation", method="generate", max_examples=4, max_new_tokens=2,
                       use_cache=use_cache, return_predictions=True)["generations"]
        assert sum(a != b for a, b in zip(got, ref_gen)) <= 1


@pytest.mark.parametrize("arch,task_type", [("t5", "SEQ_2_SEQ_LM"), ("bert", "SEQ_CLS")])
def test_seq2seq_and_classifier_heads_train_in_bfloat16_with_float32_trained_weights(arch, task_type):
    task, tok = toy_task(), tiny_tokenizer(padding_side="right")
    ref_pm = get_prompt_model(tiny_model(arch), PromptTuningConfig(task_type=task_type, num_virtual_tokens=4))
    pm = get_prompt_model(tiny_model(arch), PromptTuningConfig(task_type=task_type, num_virtual_tokens=4))
    assert torch.equal(pm.prompt_encoder.embedding.weight, ref_pm.prompt_encoder.embedding.weight)
    ref = evaluate(ref_pm, tok, task, "validation", return_predictions=True)
    pm.base_model.to(torch.bfloat16)
    got = evaluate(pm, tok, task, "validation", return_predictions=True)  # before training: the head is bf16
    assert (got["scores"] - ref["scores"]).abs().max() <= 5e-2  # T5's larger logits: measured 1.5e-2
    h = train(pm, tok, task, steps=6, batch_size=8, lr=0.1, progress=False)
    assert all(math.isfinite(v) for _, v in h.loss)
    assert all(p.dtype == torch.float32 for _, p in trainable_parameters(pm))  # the prompt (and a SEQ_CLS head)
    ids = tok(["good movie"], return_tensors="pt")
    extra = {"labels": torch.tensor([1])} if task_type == "SEQ_CLS" else {"labels": ids["input_ids"]}
    out = pm(**ids, **extra)  # outside autocast too: a float32 head casts its inputs
    assert torch.isfinite(out.loss)


# ------------------------------------------------------------------ training

@pytest.mark.parametrize("dtype", HALF)
def test_train_in_half_precision_lowers_the_loss_and_keeps_a_float32_prompt(dtype):
    pm = prompt_model("llama")
    pm.base_model.to(dtype)
    before_base = {k: v.clone() for k, v in pm.base_model.state_dict().items()}
    h = train(pm, tiny_tokenizer(), toy_task(), steps=20, batch_size=8, lr=0.3, progress=False)
    losses = [v for _, v in h.loss]
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert pm.prompt_encoder.embedding.weight.dtype == torch.float32
    for k, v in pm.base_model.state_dict().items():
        assert v.dtype == dtype and torch.equal(v, before_base[k]), k
    assert (Precision(pm).scaler is not None) == (dtype == torch.float16)  # loss scaling for float16 only


def test_float16_overflow_skips_the_step_lowers_the_scale_and_goes_on(monkeypatch):
    """A scale so large that the float16 backward overflows: the step is skipped (the prompt unchanged), the
    scale halves, and training continues (no stop, unlike a real non-finite gradient)."""
    pm = prompt_model("llama")
    pm.base_model.to(torch.float16)
    real_init = Precision.__init__

    def huge_scale(self, model):
        real_init(self, model)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)

    monkeypatch.setattr(Precision, "__init__", huge_scale)
    start = pm.prompt_encoder.embedding.weight.detach().clone()
    steps = []

    class Watch(Callback):
        def on_step(self, state):
            steps.append(torch.equal(pm.prompt_encoder.embedding.weight, start))

    h = train(pm, tiny_tokenizer(), toy_task(), steps=30, batch_size=8, lr=0.1, progress=False, callbacks=[Watch()])
    assert h.stop_reason is None and len(h.loss) == 30
    assert steps[0] and not steps[-1]  # the first step was skipped; later ones moved the prompt
    assert not math.isfinite(h.grad_norm[0][1]) and math.isfinite(h.grad_norm[-1][1])


def test_a_float16_run_resumes_exactly_with_its_loss_scale(tmp_path):
    def run(steps, **kw):
        pm = prompt_model("llama")
        pm.base_model.to(torch.float16)
        h = train(pm, tiny_tokenizer(), toy_task(), steps=steps, batch_size=8, lr=0.1, schedule="constant",
                  progress=False, **kw)
        return pm.prompt_encoder.embedding.weight.detach().clone(), h

    whole, h_whole = run(6)
    run(3, checkpoint_dir=tmp_path, checkpoint_every=3)
    resumed, h_resumed = run(6, checkpoint_dir=tmp_path, checkpoint_every=3)
    assert torch.equal(whole, resumed) and h_whole.loss == h_resumed.loss
    state = json.loads(sorted(tmp_path.glob("checkpoint-*"))[-1].joinpath("state.json").read_text())["state"]
    assert state["grad_scaler"]["scale"] > 0 and state["fingerprint"]["dtype"] == "float16"


def test_mpt_distillation_runs_in_bfloat16():
    model, tok = tiny_model("llama").to(torch.bfloat16), tiny_tokenizer()
    tasks = [toy_task("a"), toy_task("b", label_words=("sad", "happy"))]
    recipe = MPTRecipe(num_virtual_tokens=4, batch_size=4, teacher_steps=2, distill_steps=3)
    teachers = train_teachers(model, tok, tasks, recipe, progress=False)
    assert all(p.dtype == torch.float32 for p in teachers.values())
    student, history, log = distill(model, tok, tasks, teachers, recipe, progress=False, grad_accum_steps=2)
    assert len(history.loss) == 3 and len(log) == 6  # one entry per micro-batch
    assert all(math.isfinite(v) for _, v in history.loss)
    kl = teacher_student_kl(student, teacher_model(model, teachers), tok, tasks, max_examples=4, max_length=16)
    assert math.isfinite(kl)


def test_keep_float32_upcasts_only_what_trains():
    pm = prompt_model("llama").to(torch.bfloat16)  # the prompt too, as a careless .to() would
    assert pm.prompt_encoder.embedding.weight.dtype == torch.bfloat16
    assert keep_float32(pm) == 1 and keep_float32(pm) == 0
    assert pm.prompt_encoder.embedding.weight.dtype == torch.float32
    assert all(p.dtype == torch.bfloat16 for p in pm.base_model.parameters())


def test_tolerance_is_one_rule_scaled_by_the_dtypes_eps():
    import softprompt as sp

    assert sp.tolerance(torch.float32) == {"atol": 1e-4, "rtol": 1e-5}  # float32: the summation-order floors
    for dtype in HALF:
        eps = torch.finfo(dtype).eps  # bfloat16 7.8e-3, float16 9.8e-4
        assert sp.tolerance(dtype) == {"atol": 256 * eps, "rtol": 8 * eps} == sp.tolerance(str(dtype)[6:])
    assert sp.tolerance("bf16")["atol"] > sp.tolerance("fp16")["atol"] > sp.tolerance("float32")["atol"]
    with pytest.raises(ValueError, match="dtype"):
        sp.tolerance("int8")
