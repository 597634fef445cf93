"""Device mixing, caught on a CPU: the library's main paths with the model "on cuda" (simulated).

:class:`softprompt.device_check.SimulatedAccelerator` tags tensors moved to ``"cuda"`` and raises
when an operation mixes tagged and untagged tensors, as a real GPU would. First the checker itself
(it catches notebook 01's old bug, passes the fixed code, keeps CUDA's exceptions); then every main
path of the library with a tiny model moved to ``"cuda"``: a tensor left behind on the CPU fails here.
"""

import pytest
import torch

import softprompt as sp
from softprompt.callbacks import Callback
from softprompt.device_check import DeviceMixingError, SimulatedAccelerator
from softprompt.evaluation import class_scores
from softprompt.mpt import MPTRecipe, adapt_to_target, distill, train_teachers, vanilla_prompt_model
from softprompt.prefix_cache import PromptPrefixCache
from softprompt.prompt_embedding import PromptEmbedding
from softprompt.serving import PromptBank, ensemble_predict, evaluate_ensemble
from softprompt.testing import tiny_model
from softprompt.waywardness import hard_prompt_model, project_to_tokens

T = 4


@pytest.fixture
def accel():
    with SimulatedAccelerator() as mode:
        yield mode


@pytest.fixture
def model(accel):
    return tiny_model("llama").to("cuda")


@pytest.fixture(scope="module")
def task():
    return sp.load_task("sentiment_movies")


def prompt_model(model, tokenizer, **kw):
    config = sp.PromptTuningConfig(**{"task_type": "CAUSAL_LM", "num_virtual_tokens": T, "seed": 0, **kw})
    return sp.get_prompt_model(model, config, tokenizer=tokenizer)


# ----------------------------------------------------------------------------- the checker itself
def test_notebook_01_bug_is_caught_and_the_fix_passes(accel, model, tokenizer):
    config = sp.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=T, prompt_tuning_init="TEXT",
                                   prompt_tuning_init_text="good movie")
    soft = PromptEmbedding(config, model.get_input_embeddings(), tokenizer)
    soft.to("cuda")
    weight = soft.embedding.weight if hasattr(soft, "embedding") else next(soft.parameters())
    assert weight.device.type == "cuda" and accel.on_accelerator(weight)
    with pytest.raises(DeviceMixingError, match="same device.*embedding"):
        torch.nn.functional.embedding(torch.arange(T)[None], weight)  # the old notebook 01 line, unmoved
    out = torch.nn.functional.embedding(torch.arange(T, device=weight.device)[None], weight)  # (1, T, d)
    assert out.device.type == "cuda"


def test_mixing_raises_and_cuda_exceptions_pass(accel):
    x = torch.ones(3, 2, device="cuda")
    cpu = torch.ones(3, 2)
    assert x.device == torch.device("cuda", 0) and x.is_cuda and not cpu.is_cuda
    for mixed in (lambda: x + cpu, lambda: torch.cat([x, cpu]), lambda: cpu @ x.T, lambda: torch.equal(x, cpu)):
        with pytest.raises(DeviceMixingError, match="cuda:0 and cpu"):
            mixed()
    assert (x * torch.tensor(2.0)).is_cuda  # a 0-dim CPU tensor mixes freely, as on CUDA
    assert x[torch.tensor([0, 2])].shape == (2, 2)  # CPU indices into a CUDA tensor are fine ...
    with pytest.raises(DeviceMixingError, match="indices"):
        cpu[torch.tensor([0], device="cuda")]  # ... the other way round is not
    cpu.copy_(x)  # copies cross devices
    assert not cpu.is_cuda and not x.cpu().is_cuda and x.to(cpu).device.type == "cpu"
    with pytest.raises(TypeError, match="numpy"):
        x.numpy()
    assert x.cpu().numpy().shape == (3, 2)
    assert torch.zeros_like(x).is_cuda and x.new_zeros(2).is_cuda and x.sum().is_cuda
    assert x.to(torch.float16).is_cuda and x.to("cuda", torch.float16).dtype == torch.float16


def test_moving_a_module_tags_parameters_buffers_and_grads(accel):
    lin = torch.nn.Linear(2, 3)
    lin.register_buffer("scale", torch.ones(3))
    lin.to("cuda")
    assert all(accel.on_accelerator(t) for t in [*lin.parameters(), *lin.buffers()])
    lin(torch.ones(4, 2, device="cuda")).sum().backward()
    assert lin.weight.grad.is_cuda
    assert torch.nn.Parameter(lin.weight.detach() * 2).is_cuda
    with pytest.raises(DeviceMixingError):
        lin(torch.ones(4, 2))
    lin.to("cpu")
    assert not lin.weight.is_cuda and lin(torch.ones(4, 2)).shape == (4, 3)


def test_leaving_the_mode_restores_torch():
    new = torch.nn.Parameter.__dict__["__new__"]
    with SimulatedAccelerator():
        assert torch.nn.Parameter.__dict__["__new__"] is not new
    assert torch.nn.Parameter.__dict__["__new__"] is new
    assert torch.ones(2).device.type == "cpu"


# ----------------------------------------------------------------------------- the library on "cuda"
def test_forward_generate_and_save_load(model, tokenizer, tmp_path):
    pm = prompt_model(model, tokenizer, prompt_tuning_init="TEXT", prompt_tuning_init_text="good bad movie")
    assert pm.prompt_encoder.weight.is_cuda
    enc = tokenizer(["good movie", "a bad film it is"], return_tensors="pt", padding=True).to(model.device)
    out = pm(**enc, labels=enc["input_ids"])
    assert out.logits.is_cuda and out.loss.is_cuda
    new = pm.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert new.is_cuda and new.shape == (2, 3)
    pm.save_pretrained(tmp_path / "p")
    loaded = sp.PromptModel.from_pretrained(model, tmp_path / "p")
    assert loaded.prompt_encoder.weight.is_cuda
    assert torch.equal(loaded(**enc).logits, pm(**enc).logits)


def test_train_with_eval_checkpoint_and_resume(model, tokenizer, task, tmp_path):
    pm = prompt_model(model, tokenizer, prompt_tuning_init="CLASS_LABELS", prompt_tuning_class_labels=task.label_words)
    kw = dict(batch_size=4, eval_every=2, eval_examples=8, checkpoint_dir=tmp_path, checkpoint_every=2,
              progress=False, max_length=48)

    class StopAt3(Callback):
        def on_step(self, state):
            if state.step == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sp.train(pm, tokenizer, task, steps=4, callbacks=[StopAt3()], **kw)
    history = sp.train(pm, tokenizer, task, steps=4, **kw)  # resumes from the checkpoint at step 2
    assert history.loss[-1][0] == 4 and pm.prompt_encoder.weight.is_cuda
    adafactor = prompt_model(model, tokenizer)
    sp.train(adafactor, tokenizer, task, steps=2, batch_size=4, optimizer="adafactor", progress=False)


def test_evaluate_and_class_scores(model, tokenizer, task):
    pm = prompt_model(model, tokenizer)
    for use_cache in (True, False):
        r = sp.evaluate(pm, tokenizer, task, max_examples=8, use_cache=use_cache, return_predictions=True)
        assert r["n"] == 8 and r["scores"].shape == (8, task.num_classes)
    sp.evaluate(model, tokenizer, task, max_examples=4)  # zero-shot
    sp.evaluate(pm, tokenizer, task, max_examples=4, method="generate")
    scores = class_scores(pm, tokenizer, task, task["test"].select(range(3)))
    assert len(scores) == 3
    cache = PromptPrefixCache(pm)
    assert cache is not None


def test_mpt_pipeline(model, tokenizer):
    sources = [sp.load_task(n) for n in ("sentiment_movies", "topic")]
    target = sp.load_task("arbitrary_sentiment")
    recipe = MPTRecipe(num_virtual_tokens=T, batch_size=4, teacher_steps=2, distill_steps=2, target_steps=2,
                       target_examples=8, max_length=48)
    teachers = train_teachers(model, tokenizer, sources, recipe, progress=False)
    assert all(p.is_cuda for p in teachers.values())
    sp.evaluate(vanilla_prompt_model(model, teachers["topic"]), tokenizer, sources[1], max_examples=4)
    student, _, log = distill(model, tokenizer, sources, teachers, recipe, progress=False)
    assert student.prompt_encoder.shared_prompt.is_cuda and len(log) == 2
    sp.evaluate(student, tokenizer, sources[0], max_examples=4, task_id=0)
    table = sp.nearest_tokens(student, tokenizer=tokenizer, task_id=1, k=3)
    assert table.ids.shape == (T, 3)
    adapted = adapt_to_target(model, tokenizer, target, student, recipe, progress=False)
    pm = adapted[0] if isinstance(adapted, tuple) else adapted
    sp.evaluate(pm, tokenizer, target, max_examples=4, task_id=0)
    target_pm = sp.target_prompt_model(model, student, init="average")
    sp.train(target_pm, tokenizer, target, steps=1, batch_size=4, task_id=0, progress=False)


def test_serving_bank_ensemble_and_generate(model, tokenizer, task, tmp_path):
    pms = [prompt_model(model, tokenizer, prompt_tuning_init="SAMPLE_VOCAB", seed=s) for s in range(3)]
    for i, pm in enumerate(pms):
        pm.save_pretrained(tmp_path / f"m{i}")
    for use_cache in (True, False):
        bank = PromptBank(model, tokenizer, use_cache=use_cache)
        bank.load_dir(tmp_path, tasks={f"m{i}": task for i in range(3)})
        rows = [task["test"][i] for i in range(3)]
        words, scores = bank.classify(rows, tasks=["m0", "m1", "m2"], return_scores=True)
        assert len(words) == 3
        bank.class_scores(rows, ["m2", "m0", "m1"])
        ens = evaluate_ensemble(bank, task, ["m0", "m1", "m2"], max_examples=6, return_predictions=True)
        assert ens["n"] == 6
        ensemble_predict(bank, task, ["a good movie", "a bad film"], ["m0", "m1"])
        enc = tokenizer(["good movie", "a bad film it is"], return_tensors="pt", padding=True).to(model.device)
        new = bank.generate(enc["input_ids"], enc["attention_mask"], names=["m0", "m1"], max_new_tokens=2,
                            do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert new.is_cuda


def test_reading_tools(model, tokenizer, task):
    pm = prompt_model(model, tokenizer, prompt_tuning_init="TEXT", prompt_tuning_init_text="good bad movie")
    table = sp.nearest_tokens(pm, None, tokenizer, k=3)
    assert table.ids.shape == (T, 3)
    sp.nearest_tokens(pm.prompt_encoder.weight.detach(), model, tokenizer, k=2, metric="dot")
    snaps = sp.PromptSnapshots(every=1)
    sp.train(pm, tokenizer, task, steps=2, batch_size=4, callbacks=[snaps], progress=False)
    snaps.neighbors(-1, tokenizer, k=3)
    snaps.label_ranks(tokenizer, task.label_words)
    snaps.distance_from_init()
    snaps.norms()
    snaps.summary(tokenizer, label_words=task.label_words, k=3)
    ids = project_to_tokens(pm, tokenizer)
    hard = hard_prompt_model(pm, ids)
    enc = tokenizer(["good movie"], return_tensors="pt").to(model.device)
    assert hard(**enc).logits.is_cuda
    report = sp.measure_waywardness(pm, tokenizer, task, max_examples=8)
    assert 0 <= report.soft_accuracy <= 1
