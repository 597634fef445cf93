"""The MPT pipeline (Wang et al. 2023, §3.2): teachers, distillation, target adaptation, and the benchmark script."""


import pytest
import torch
import torch.nn.functional as F

import softprompt as sp
from softprompt.mpt import (
    MPTRecipe,
    adapt_to_target,
    distill,
    distillation_terms,
    target_prompt_model,
    teacher_model,
    teacher_student_kl,
    train_teachers,
    vanilla_prompt_model,
)
from softprompt.multitask import MultitaskPromptTuningConfig
from softprompt.prompt_model import get_prompt_model
from softprompt.testing import tiny_model
from softprompt.batching import model_inputs

T = 4
SOURCES = ("sentiment_movies", "topic", "formality")


@pytest.fixture(scope="module")
def tasks():
    return [sp.load_task(n) for n in SOURCES]


def small_recipe(**kw):
    base = dict(num_virtual_tokens=T, batch_size=4, teacher_steps=3, distill_steps=3, target_steps=2,
                target_examples=8, max_length=48)
    base.update(kw)
    return MPTRecipe(**base)


def a_batch(task, tokenizer, task_ids, n=4, causal=True):
    rows = task.splits["train"][:n]
    make = task.causal_batch if causal else task.seq2seq_batch
    batch = {k: v for k, v in make(rows, tokenizer, num_virtual_tokens=T).items() if torch.is_tensor(v)}
    batch["task_ids"] = torch.as_tensor(task_ids)
    return batch


def random_teachers(names, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(T, 32, generator=g) for n in names}


# ----------------------------------------------------------------------------- recipe
def test_recipe_validation():
    with pytest.raises(ValueError, match="num_ranks=0"):
        MPTRecipe(num_ranks=0)
    with pytest.raises(ValueError, match="distill_weight"):
        MPTRecipe(distill_weight=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        MPTRecipe(temperature=0)
    with pytest.raises(ValueError, match="target_init='best'"):
        MPTRecipe(target_init="best")
    with pytest.raises(ValueError, match="student_init"):
        MPTRecipe(student_init="TEXT")
    assert MPTRecipe(target_init=2).target_init == 2
    with pytest.raises(ValueError, match="distill_lr=0"):
        MPTRecipe(distill_lr=0)


def test_distill_lr_is_the_stage_2_learning_rate_and_a_keyword_overrides_it(llama, tokenizer, tasks):
    teachers = random_teachers(SOURCES)
    _, history, _ = distill(llama, tokenizer, tasks, teachers, small_recipe(distill_lr=0.05, distill_steps=2),
                            progress=False, schedule="constant")
    assert [lr for _, lr in history.lr] == [0.05, 0.05]
    _, history, _ = distill(llama, tokenizer, tasks, teachers, small_recipe(distill_lr=0.05, distill_steps=2),
                            progress=False, schedule="constant", lr=0.01)
    assert [lr for _, lr in history.lr] == [0.01, 0.01]
    _, history, _ = distill(llama, tokenizer, tasks, teachers, small_recipe(distill_lr=None, distill_steps=1),
                            progress=False, schedule="constant")
    assert history.lr[0][1] == pytest.approx(3e-2)  # None: train()'s default


# ----------------------------------------------------------------------------- teachers
def test_teacher_bank_serves_each_row_its_own_teacher(llama, tokenizer, tasks):
    teachers = random_teachers(SOURCES)
    bank = teacher_model(llama, teachers)
    batch = a_batch(tasks[0], tokenizer, [2, 0, 1, 2])
    mixed = bank(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 task_ids=batch["task_ids"]).logits
    for k, name in enumerate(SOURCES):
        alone = vanilla_prompt_model(llama, teachers[name])(input_ids=batch["input_ids"],
                                                             attention_mask=batch["attention_mask"]).logits
        rows = batch["task_ids"] == k
        torch.testing.assert_close(mixed[rows], alone[rows], atol=1e-5, rtol=1e-5)


def test_train_teachers_returns_one_trained_prompt_per_task(llama, tokenizer, tasks):
    recipe = small_recipe(teacher_init="CLASS_LABELS")
    teachers = train_teachers(llama, tokenizer, tasks[:2], recipe, progress=False, lr=0.1)
    assert list(teachers) == list(SOURCES[:2])
    for name, prompt in teachers.items():
        assert prompt.shape == (T, 32) and not prompt.requires_grad
        start = vanilla_prompt_model(llama, num_virtual_tokens=T, tokenizer=tokenizer, seed=0,
                                     prompt_tuning_init="CLASS_LABELS",
                                     prompt_tuning_class_labels=list(sp.load_task(name).label_words))
        assert not torch.allclose(prompt, start.prompt_encoder.weight)  # it trained


# ----------------------------------------------------------------------------- the distillation loss
def test_terms_vanish_when_the_student_is_the_teacher(llama, tokenizer, tasks):
    teacher = torch.randn(T, 32)
    bank = teacher_model(llama, {"a": teacher})
    cfg = MultitaskPromptTuningConfig(num_virtual_tokens=T, num_tasks=1)
    student = get_prompt_model(llama, cfg)
    student.prompt_encoder.embedding.weight.data.copy_(teacher)  # IDENTITY factors: P_0 = P* = teacher
    terms = distillation_terms(student, bank, a_batch(tasks[0], tokenizer, [0, 0, 0, 0]))
    assert terms["kl"].abs() < 1e-6 and terms["mse"] < 1e-10
    assert terms["task"] > 0


def test_terms_match_an_explicit_computation(llama, tokenizer, tasks):
    teachers = random_teachers(SOURCES)
    bank = teacher_model(llama, teachers)
    student, _, _ = distill(llama, tokenizer, tasks, teachers, small_recipe(distill_steps=1), progress=False,
                            lr=1e-12)
    batch = a_batch(tasks[1], tokenizer, [0, 1, 2, 1])
    batch["logits_to_keep"] = 3  # the fast path train() uses: one position before the target, and the target
    tau = 2.0
    terms = distillation_terms(student, bank, batch, temperature=tau, hidden_layers=(-1, 1))
    # By hand, from full-length outputs: positions whose next token is a label.
    plain = {k: v for k, v in model_inputs(student, batch).items() if k != "logits_to_keep"}
    s = student(**plain, output_hidden_states=True)
    t = bank(**{k: v for k, v in plain.items() if k != "labels"}, output_hidden_states=True)
    pos = batch["labels"][:, 1:] != -100  # logits[:, j] predicts token j + 1
    p_t = F.softmax(t.logits[:, :-1][pos] / tau, -1)
    p_s = F.softmax(s.logits[:, :-1][pos] / tau, -1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(-1).mean() * tau**2
    real = batch["attention_mask"].bool()
    mse = sum(((s.hidden_states[i] - t.hidden_states[i])[real] ** 2).mean() for i in (-1, 1)) / 2
    torch.testing.assert_close(terms["kl"], kl, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(terms["mse"], mse, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(terms["task"], s.loss, atol=1e-5, rtol=1e-5)


def test_seq2seq_terms(tokenizer, tasks):
    tokenizer.padding_side = "right"
    t5 = tiny_model("t5")
    teacher = torch.randn(T, 32)
    bank = teacher_model(t5, {"a": teacher})
    student = get_prompt_model(t5, MultitaskPromptTuningConfig(num_virtual_tokens=T, num_tasks=1))
    batch = a_batch(tasks[0], tokenizer, [0, 0, 0, 0], causal=False)
    far = distillation_terms(student, bank, batch)
    student.prompt_encoder.embedding.weight.data.copy_(teacher)
    same = distillation_terms(student, bank, batch)
    assert far["kl"] > 1e-4 and far["mse"] > 1e-4
    assert same["kl"].abs() < 1e-6 and same["mse"] < 1e-10


# ----------------------------------------------------------------------------- distillation
def test_distillation_lowers_teacher_student_kl(tokenizer, tasks):
    model = tiny_model("llama", seed=1)
    teachers = random_teachers(SOURCES, seed=3)
    bank = teacher_model(model, teachers)
    recipe = small_recipe(distill_steps=25, distill_weight=1.0)
    before, _, _ = distill(model, tokenizer, tasks, teachers, recipe.replace(distill_steps=1), progress=False,
                           lr=1e-12)
    kl_before = teacher_student_kl(before, bank, tokenizer, tasks, max_examples=16)
    student, history, log = distill(model, tokenizer, tasks, teachers, recipe, progress=False, lr=0.1)
    kl_after = teacher_student_kl(student, bank, tokenizer, tasks, max_examples=16)
    plain, _, _ = distill(model, tokenizer, tasks, teachers, recipe.replace(distill=False), progress=False, lr=0.1)
    kl_plain = teacher_student_kl(plain, bank, tokenizer, tasks, max_examples=16)
    assert kl_after < 0.5 * kl_before, (kl_before, kl_after)
    assert kl_after < 0.5 * kl_plain, (kl_plain, kl_after)  # the pull towards the teachers is the distillation's
    assert len(log) == 25 and log[-1]["mse"] < log[0]["mse"]
    assert [round(r["loss"], 5) for r in log] == [round(v, 5) for _, v in history.loss]
    assert student.prompt_config.num_tasks == 3 and student.source_tasks == list(SOURCES)


def test_without_distillation_it_is_plain_multitask_training(llama, tokenizer, tasks):
    with pytest.raises(ValueError, match="TEACHER_MEAN.*needs teachers"):  # the default start is the teachers' mean
        distill(llama, tokenizer, tasks, None, small_recipe(distill=False), progress=False)
    student, history, log = distill(llama, tokenizer, tasks, None, small_recipe(distill=False, student_init="RANDOM"),
                                    progress=False)
    assert log == [] and len(history.loss) == 3 and not hasattr(student, "distillation_log")
    with pytest.raises(ValueError, match="needs teachers"):
        distill(llama, tokenizer, tasks, None, small_recipe(), progress=False)
    with pytest.raises(ValueError, match=r"no teacher for tasks \['formality'\]"):
        distill(llama, tokenizer, tasks, random_teachers(SOURCES[:2]), small_recipe(), progress=False)


def test_student_init_teacher_mean_and_rank(llama, tokenizer, tasks):
    teachers = random_teachers(SOURCES)
    student, _, _ = distill(llama, tokenizer, tasks, teachers,
                            small_recipe(student_init="TEACHER_MEAN", num_ranks=3, distill_steps=1),
                            progress=False, lr=1e-12)
    enc = student.prompt_encoder
    assert enc.prefix_task_cols.shape == (3, T, 3) and enc.prefix_task_rows.shape == (3, 3, 32)
    torch.testing.assert_close(enc.shared_prompt, torch.stack(list(teachers.values())).mean(0), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- target adaptation
@pytest.fixture
def source(llama):
    cfg = MultitaskPromptTuningConfig(num_virtual_tokens=T, num_tasks=3, num_ranks=2)
    pm = get_prompt_model(llama, cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in pm.prompt_encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return pm


def test_target_starts_from_the_source(llama, source, tmp_path):
    enc = source.prompt_encoder
    P, u, v = enc.shared_prompt, enc.prefix_task_cols, enc.prefix_task_rows
    avg = target_prompt_model(llama, source, init="average").prompt_encoder
    torch.testing.assert_close(avg.task_prompt(0), P * (u.mean(0) @ v.mean(0)))
    exact = target_prompt_model(llama, source, init=2).prompt_encoder
    torch.testing.assert_close(exact.task_prompt(0), enc.task_prompt(2))
    shared = target_prompt_model(llama, source, init="shared").prompt_encoder
    torch.testing.assert_close(shared.task_prompt(0), P, atol=1e-6, rtol=1e-6)
    source.save_pretrained(tmp_path)  # a saved directory works as the source too
    from_dir = target_prompt_model(llama, tmp_path, init="average").prompt_encoder
    torch.testing.assert_close(from_dir.task_prompt(0), avg.task_prompt(0))
    with pytest.raises(ValueError, match="not a task of the source"):
        target_prompt_model(llama, source, init=3)


def test_adapt_to_target_trains_the_target_only(llama, tokenizer, source):
    before = {k: v.clone() for k, v in source.prompt_encoder.adapter_tensors().items()}
    target_task = sp.load_task("sentiment_restaurants")
    target, history = adapt_to_target(llama, tokenizer, target_task, source, small_recipe(target_steps=3),
                                      progress=False)
    assert len(history.loss) == 3 and target.prompt_config.num_tasks == 1
    start = target_prompt_model(llama, source).prompt_encoder
    assert not torch.allclose(target.prompt_encoder.task_prompt(0), start.task_prompt(0))
    for k, v in source.prompt_encoder.adapter_tensors().items():
        assert torch.equal(v, before[k]), k  # the source is untouched
    result = sp.evaluate(target, tokenizer, target_task, task_id=0, max_examples=8)
    assert 0.0 <= result["accuracy"] <= 1.0
