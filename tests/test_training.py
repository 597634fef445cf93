"""softprompt.train on tiny models: what trains, the fast path, schedules, NaN guard, mixtures, errors."""

import math
import random
import warnings

import pytest
import torch
from datasets import Dataset

from softprompt import Callback
from softprompt.config import PromptTuningConfig
from softprompt.optim import lr_factor, make_optimizer
from softprompt.prompt_model import get_prompt_model
from softprompt.tasks.task import Task
from softprompt.testing import tiny_model, tiny_tokenizer
from softprompt.batching import ExampleOrder, MixtureSampler
from softprompt.training import History, TrainingConfig, model_inputs, train



POS, NEG = "good great excellent love fine happy".split(), "bad terrible awful hate sad angry".split()
FILL = "the movie film book story was really very quite".split()


def toy_task(name="toy", n_train=48, label_words=("negative", "positive"), template="review : {text} . sentiment :"):
    def split(n, seed):
        r = random.Random(seed)
        return Dataset.from_list([{"text": " ".join(r.sample(FILL, 3) + [r.choice(POS if i % 2 else NEG)]),
                                   "label": i % 2} for i in range(n)])
    return Task(name=name, family="sentiment", description="toy", splits={"train": split(n_train, 0),
                "validation": split(16, 1)}, template=template, label_words=list(label_words))


def prompt_model(arch="llama", task_type="CAUSAL_LM", T=4):
    return get_prompt_model(tiny_model(arch), PromptTuningConfig(task_type=task_type, num_virtual_tokens=T))


def base_state(pm):
    return {k: v.clone() for k, v in pm.base_model.state_dict().items()}


# ------------------------------------------------------------------ what trains

def test_loss_goes_down_and_only_the_prompt_changes(causal_arch):
    pm = prompt_model(causal_arch)
    before_prompt, before_base = pm.prompt_encoder.embedding.weight.detach().clone(), base_state(pm)
    h = train(pm, tiny_tokenizer(), toy_task(), steps=30, batch_size=8, lr=0.3, progress=False)
    losses = [v for _, v in h.loss]
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert not torch.equal(pm.prompt_encoder.embedding.weight, before_prompt)
    for k, v in pm.base_model.state_dict().items():
        assert torch.equal(v, before_base[k]), k


@pytest.mark.parametrize("arch,task_type", [("t5", "SEQ_2_SEQ_LM"), ("bert", "SEQ_CLS")])
def test_seq2seq_and_classification_models_train(arch, task_type):
    pm = prompt_model(arch, task_type)
    trainable = {n: p.detach().clone() for n, p in pm.named_parameters() if p.requires_grad}
    h = train(pm, tiny_tokenizer("right"), toy_task(), steps=12, batch_size=8, lr=0.3, progress=False)
    losses = [v for _, v in h.loss]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    if task_type == "SEQ_2_SEQ_LM":  # BERT's 2-class loss starts at ln 2 and is noisy: no trend to check
        assert sum(losses[-3:]) < sum(losses[:3])
    assert any("classifier" in n for n in trainable) == (task_type == "SEQ_CLS")  # the head trains too
    for n, p in pm.named_parameters():
        if n in trainable:
            assert not torch.equal(p, trainable[n]), n


def test_same_seed_same_prompt_other_seed_other_prompt():
    runs = []
    for seed in (0, 0, 1):
        pm = prompt_model("gpt2")  # dropout on: the seed must fix the dropout masks too
        train(pm, tiny_tokenizer(), toy_task(), steps=5, batch_size=4, seed=seed, progress=False)
        runs.append(pm.prompt_encoder.embedding.weight.detach())
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_training_leaves_the_model_in_the_mode_it_found():
    pm = prompt_model("gpt2").eval()
    seen = []

    class Mode(Callback):
        def on_step(self, state):
            seen.append(state.prompt_model.training)

    train(pm, tiny_tokenizer(), toy_task(), steps=2, batch_size=4, callbacks=[Mode()], progress=False)
    assert seen == [True, True] and not pm.training


# ------------------------------------------------------------------ the fast path

def test_batches_ask_only_for_label_position_logits_and_the_loss_is_unchanged():
    pm = prompt_model("llama")
    seen = []
    train(pm, tiny_tokenizer(), toy_task(), steps=1, batch_size=8, progress=False,
          loss_fn=lambda m, b: seen.append(b) or m(**model_inputs(m, b)).loss)
    batch = seen[0]
    k, L = batch["logits_to_keep"], batch["input_ids"].shape[1]
    assert k == 2 < L  # one label token ("positive"/"negative") + the position that predicts it
    assert set(batch) == {"input_ids", "attention_mask", "labels", "class_labels", "task_ids", "logits_to_keep"}
    with torch.no_grad():
        fast = pm(**model_inputs(pm, batch)).loss
        full = pm(**{**model_inputs(pm, batch), "logits_to_keep": 0}).loss
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)


def test_default_loss_runs_the_prompt_once_per_batch_with_the_same_loss_and_gradient(monkeypatch):
    from softprompt import shared_prompt
    from softprompt.training import default_loss

    pm = prompt_model("llama")  # no dropout: the shared-prompt path applies
    seen = []
    train(pm, tiny_tokenizer(), toy_task(), steps=1, batch_size=8, progress=False,
          loss_fn=lambda m, b: seen.append(b) or m(**model_inputs(m, b)).loss)
    batch, weight = seen[0], pm.prompt_encoder.embedding.weight
    calls = []
    real = shared_prompt.shared_prompt_forward
    monkeypatch.setattr(shared_prompt, "shared_prompt_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    pm.train()
    shared = default_loss(pm, batch)
    (g_shared,) = torch.autograd.grad(shared, weight)
    plain = pm(**model_inputs(pm, batch)).loss
    (g_plain,) = torch.autograd.grad(plain, weight)
    assert calls == [1]
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_shared, g_plain, rtol=1e-4, atol=1e-6)


def test_shared_prompt_path_equals_the_plain_path_for_a_one_task_mpt_batch_and_skips_mixed_ones():
    from softprompt.multitask import MultitaskPromptTuningConfig
    from softprompt.shared_prompt import shared_prompt_loss
    from softprompt.training import plain_loss

    pm = get_prompt_model(tiny_model("llama"), MultitaskPromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=4, num_tasks=2, num_ranks=1, prompt_tuning_init="RANDOM"))
    seen = []
    train(pm, tiny_tokenizer(), toy_task(), steps=1, batch_size=8, task_id=1, progress=False,
          loss_fn=lambda m, b: seen.append(b) or plain_loss(m, b))
    batch, params = seen[0], [p for p in pm.parameters() if p.requires_grad]
    pm.train()
    fast = shared_prompt_loss(pm, batch)
    g_fast = torch.autograd.grad(fast, params)
    plain = plain_loss(pm, batch)
    g_plain = torch.autograd.grad(plain, params)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_fast, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    mixed = {**batch, "task_ids": torch.tensor([0, 1] * 4)}  # rows with different prompts P_k
    assert shared_prompt_loss(pm, mixed) is None


def test_dropout_keeps_the_plain_path(monkeypatch):
    from softprompt import shared_prompt
    from softprompt.training import default_loss

    pm = prompt_model("gpt2")  # dropout 0.1: one shared mask for all rows would change the loss
    monkeypatch.setattr(shared_prompt, "shared_prompt_forward", lambda *a, **k: pytest.fail("shared path used"))
    h = train(pm, tiny_tokenizer(), toy_task(), steps=2, batch_size=4, progress=False, loss_fn=default_loss)
    assert len(h.loss) == 2


def test_padding_columns_are_trimmed():
    from softprompt.batching import trim

    b = {"input_ids": torch.tensor([[0, 0, 5, 6], [0, 0, 0, 7]]),
         "attention_mask": torch.tensor([[0, 0, 1, 1], [0, 0, 0, 1]]),
         "labels": torch.tensor([[-100, -100, -100, 6], [-100, -100, -100, 7]]), "class_labels": torch.tensor([1, 0])}
    out = trim(b, "CAUSAL_LM")
    assert out["input_ids"].tolist() == [[5, 6], [0, 7]] and out["labels"].shape == (2, 2)


# ------------------------------------------------------------------ optimizers and schedules

@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_schedules_match_hugging_face(schedule):
    from transformers import (
        get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup,
    )

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    hf = {"linear": lambda: get_linear_schedule_with_warmup(opt, 3, 20),
          "cosine": lambda: get_cosine_schedule_with_warmup(opt, 3, 20),
          "constant": lambda: get_constant_schedule_with_warmup(opt, 3)}[schedule]()
    for step in range(20):
        assert lr_factor(step, schedule=schedule, warmup_steps=3, total_steps=20) == pytest.approx(hf.get_last_lr()[0])
        opt.step()
        hf.step()


def test_adafactor_has_lester_settings_and_is_the_constant_lr_recipe():
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(2, 2))], "adafactor", lr=0.3, weight_decay=1e-5)
    g = opt.param_groups[0]
    assert (g["lr"], g["weight_decay"], g["decay_rate"], g["scale_parameter"], g["relative_step"], g["beta1"]) == (
        0.3, 1e-5, -0.8, False, False, None)
    cfg = TrainingConfig(optimizer="adafactor")
    assert (cfg.lr, cfg.weight_decay, cfg.schedule.value) == (0.3, 1e-5, "constant")
    assert TrainingConfig().schedule.value == "linear"


def test_history_records_the_scheduled_lr_and_clipped_gradients():
    pm = prompt_model("llama")
    h = train(pm, tiny_tokenizer(), toy_task(), steps=6, lr=0.1, warmup_steps=2, schedule="linear",
              max_grad_norm=1e-3, progress=False)
    assert [round(v, 6) for _, v in h.lr] == [0.0, 0.05, 0.1, 0.075, 0.05, 0.025]
    assert all(v > 1e-3 for _, v in h.grad_norm)  # the norm before clipping is recorded


# ------------------------------------------------------------------ NaN guard

def test_nan_loss_stops_with_a_clear_warning_and_keeps_the_last_good_prompt():
    pm = prompt_model("llama")
    prompts = []

    class Keep(Callback):
        def on_step(self, state):
            prompts.append(state.prompt_model.prompt_encoder.embedding.weight.detach().clone())

    def loss_fn(m, b):
        loss = m(**model_inputs(m, b)).loss
        return loss * float("nan") if len(prompts) == 3 else loss

    with pytest.warns(RuntimeWarning, match="step 4.*not finite.*keeps its values from step 3.*lower lr"):
        h = train(pm, tiny_tokenizer(), toy_task(), steps=10, loss_fn=loss_fn, callbacks=[Keep()], progress=False)
    assert h.steps == 3 and "not finite" in h.stop_reason
    assert torch.equal(pm.prompt_encoder.embedding.weight, prompts[-1])


def test_inf_gradient_also_stops_without_touching_the_prompt():
    pm = prompt_model("llama")
    before = pm.prompt_encoder.embedding.weight.detach().clone()

    def loss_fn(m, b):
        loss = m(**model_inputs(m, b)).loss  # finite ...
        loss.register_hook(lambda g: g * float("inf"))  # ... but its gradient is not
        return loss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = train(pm, tiny_tokenizer(), toy_task(), steps=3, loss_fn=loss_fn, progress=False)
    assert h.steps == 0 and "gradient norm" in h.stop_reason and caught
    assert torch.equal(pm.prompt_encoder.embedding.weight, before)


# ------------------------------------------------------------------ callbacks, evaluation, history

def test_callbacks_see_every_moment_and_can_stop_training():
    calls = []

    class Spy(Callback):
        def on_train_begin(self, s):
            calls.append(("begin", s.step))

        def on_step(self, s):
            calls.append(("step", s.step))
            s.should_stop = s.step == 4

        def on_evaluate(self, s):
            calls.append(("eval", s.step, s.metrics["accuracy"]))

        def on_train_end(self, s):
            calls.append(("end", s.step))

    h = train(prompt_model(), tiny_tokenizer(), toy_task(), steps=10, eval_every=2, eval_examples=8,
              callbacks=[Spy()], progress=False)
    kinds = [c[0] for c in calls]
    assert kinds == ["begin", "eval", "step", "step", "eval", "step", "step", "eval", "end"]
    assert [s for s, _ in h.metrics] == [0, 2, 4] and h.steps == 4 and "callback" in h.stop_reason
    assert all(0 <= m["accuracy"] <= 1 and m["n"] == 8 for _, m in h.metrics)


def test_history_round_trips_and_plots():
    h = History(loss=[(1, 2.0), (2, 1.5)], lr=[(1, 0.1), (2, 0.1)], grad_norm=[(1, 1.0), (2, 0.5)],
                metrics=[(0, {"accuracy": 0.5}), (2, {"accuracy": 0.75})])
    import json

    assert History.from_dict(json.loads(h.to_json())) == h
    fig = h.plot(smooth=2)
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "validation accuracy"
    assert repr(h) == "History(steps=2, loss 2.000 -> 1.500, accuracy 0.500 -> 0.750)"


def test_progress_bar_reports_loss(capsys):
    train(prompt_model(), tiny_tokenizer(), toy_task(), steps=2, progress=True)
    assert "prompt tuning" in capsys.readouterr().err


# ------------------------------------------------------------------ data order, few-shot, mixtures

def test_each_epoch_is_a_fresh_permutation_and_resumes_from_its_position():
    order = ExampleOrder(10, seed=3)
    first, second = order.take(10), order.take(10)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    order2 = ExampleOrder(10, seed=3)
    order2.take(13)
    state = order2.state_dict()
    fresh = ExampleOrder(10, seed=3)
    fresh.load_state_dict(state)
    assert fresh.take(7) == order2.take(7)


def test_few_shot_uses_only_the_chosen_examples():
    task = toy_task(n_train=40)
    seen = []
    train(prompt_model(), tiny_tokenizer(), task, steps=6, batch_size=4, train_examples=4, progress=False,
          loss_fn=lambda m, b: seen.append(b["input_ids"]) or m(**model_inputs(m, b)).loss)
    rows = {tuple(r[r != tiny_tokenizer().pad_token_id].tolist()) for b in seen for r in b}
    assert len(rows) <= 4
    with pytest.raises(ValueError, match="train_examples=41 but task 'toy' has only 40"):
        train(prompt_model(), tiny_tokenizer(), task, steps=1, train_examples=41, progress=False)


@pytest.mark.parametrize("mixing", ["examples", "tasks"])
def test_a_list_of_tasks_trains_a_mixture_with_task_ids_per_row(mixing):
    a = toy_task("a", n_train=60)
    b = toy_task("b", n_train=12, label_words=("sad", "happy"), template="text : {text} . label :")
    tok = tiny_tokenizer()
    seen = []
    train(prompt_model(), tok, [a, b], steps=8, batch_size=8, mixing=mixing, progress=False,
          loss_fn=lambda m, batch: seen.append(batch) or m(**model_inputs(m, batch)).loss)
    label_id = tok.convert_tokens_to_ids("label")
    counts = [0, 0]
    for batch in seen:
        for ids, tid in zip(batch["input_ids"], batch["task_ids"]):
            assert (label_id in ids.tolist()) == (tid.item() == 1)  # each row carries its own task's id
            counts[tid.item()] += 1
    share_b = counts[1] / sum(counts)
    assert (0.3 < share_b < 0.7) if mixing == "tasks" else (share_b < 0.3)  # 12 of 72 examples are task b


def test_mixture_sampler_draws_whole_tasks_uniformly():
    s = MixtureSampler([list(range(100)), list(range(5))], batch_size=50, seed=0, mixing=_mix("tasks"))
    picks = [t for step in range(20) for t, _ in s.batch(step)]
    assert 0.4 < sum(picks) / len(picks) < 0.6


def _mix(v):
    from softprompt.training import Mixing

    return Mixing(v)


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("kwargs,match", [
    ({"optimizer": "sgd"}, "optimizer='sgd'.*adamw"),
    ({"lr": 0}, "lr=0"),
    ({"steps": 0}, "steps=0"),
    ({"warmup_steps": 200}, "warmup_steps=200"),
    ({"checkpoint_every": 5}, "checkpoint_dir"),
    ({"schedule": "step"}, "schedule='step'"),
    ({"max_grad_norm": -1}, "max_grad_norm"),
])
def test_bad_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingConfig(**kwargs)


def test_one_configuration_route_config_and_keyword_overrides():
    tok, task = tiny_tokenizer(), toy_task()
    by_keywords = train(prompt_model(), tok, task, steps=3, batch_size=4, lr=0.1, progress=False)
    by_config = train(prompt_model(), tok, task, TrainingConfig(steps=3, batch_size=4, lr=0.1), progress=False)
    overridden = train(prompt_model(), tok, task, config=TrainingConfig(steps=9, batch_size=4, lr=0.1), steps=3,
                       progress=False)
    assert by_keywords.loss == by_config.loss == overridden.loss and len(by_keywords.loss) == 3
    with pytest.raises(TypeError, match=r"unknown settings \['stpes'\].*steps, batch_size, optimizer"):
        train(prompt_model(), tok, task, stpes=3, progress=False)
    with pytest.raises(ValueError, match="steps=0"):  # an override is checked like a field
        train(prompt_model(), tok, task, config=TrainingConfig(steps=3), steps=0, progress=False)


def test_empty_or_missing_train_split_is_a_clear_error():
    task = toy_task()
    task.splits["train"] = task.splits["train"].select([])
    with pytest.raises(ValueError, match="'train' split is empty"):
        train(prompt_model(), tiny_tokenizer(), task, steps=1, progress=False)
    with pytest.raises(ValueError, match="no 'nope' split.*eval_split="):
        train(prompt_model(), tiny_tokenizer(), toy_task(), steps=1, eval_every=1, eval_split="nope", progress=False)
    del task.splits["train"]
    with pytest.raises(ValueError, match="no 'train' split"):
        train(prompt_model(), tiny_tokenizer(), task, steps=1, progress=False)
    with pytest.raises(ValueError, match="empty list"):
        train(prompt_model(), tiny_tokenizer(), [], steps=1, progress=False)


def test_nothing_to_train_is_a_clear_error():
    pm = prompt_model()
    pm.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(pm, tiny_tokenizer(), toy_task(), steps=1, progress=False)


# ------------------------------------------------------------------ resume (SIGKILL: test_checkpoints.py)

def test_stop_and_resume_equals_one_run_with_adamw_and_dropout(tmp_path):
    class StopAt(Callback):
        def on_step(self, state):
            state.should_stop = state.step == 7

    kw = dict(steps=12, batch_size=4, progress=False, schedule="cosine", warmup_steps=2)
    pm1 = prompt_model("gpt2")
    train(pm1, tiny_tokenizer(), toy_task(), checkpoint_dir=tmp_path / "a", checkpoint_every=5, callbacks=[StopAt()],
          **kw)
    torch.manual_seed(123)  # a resumed run restores the RNG: whatever happened in between does not matter
    random.seed(123)
    pm2 = prompt_model("gpt2")
    h = train(pm2, tiny_tokenizer(), toy_task(), checkpoint_dir=tmp_path / "a", checkpoint_every=5, **kw)
    ref = prompt_model("gpt2")
    h_ref = train(ref, tiny_tokenizer(), toy_task(), **kw)
    assert torch.equal(pm2.prompt_encoder.embedding.weight, ref.prompt_encoder.embedding.weight)
    assert h.loss == h_ref.loss and h.lr == h_ref.lr and h.stop_reason is None


def test_resume_refuses_other_settings_and_resume_false_starts_over(tmp_path):
    kw = dict(batch_size=4, progress=False, checkpoint_dir=tmp_path)
    train(prompt_model(), tiny_tokenizer(), toy_task(), steps=3, **kw)
    with pytest.raises(ValueError, match="other settings.*lr: checkpoint 0.03 vs now 0.1"):
        train(prompt_model(), tiny_tokenizer(), toy_task(), steps=3, lr=0.1, **kw)
    h = train(prompt_model(), tiny_tokenizer(), toy_task(), steps=3, **kw)  # finished: nothing left to do
    assert h.steps == 3 and len(h.loss) == 3
    h = train(prompt_model(), tiny_tokenizer(), toy_task(), steps=2, lr=0.1, resume=False, **kw)
    assert h.steps == 2 and [p.name for p in tmp_path.iterdir()] == ["checkpoint-000002"]



def test_live_loss_plot_redraws_in_place_in_notebooks_and_does_nothing_elsewhere(monkeypatch):
    import IPython.display

    from softprompt.live import LiveLossPlot

    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj))

    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=None: shown.append(("new", obj)) or Handle())
    off, on = LiveLossPlot(every=2), LiveLossPlot(every=2, enabled=True)
    assert not off.enabled  # pytest is not a Jupyter kernel
    train(prompt_model(), tiny_tokenizer(), toy_task(), steps=4, callbacks=[off, on], progress=False)
    assert off.draws == 0 and on.draws == 3  # steps 2 and 4, and the end
    assert [k for k, _ in shown] == ["new", "update", "update"]
    assert shown[0][1].data[:4] == b"\x89PNG"


def test_a_multitask_prompt_gets_each_rows_task_id_in_training_and_evaluation():
    from softprompt.multitask import MultitaskPromptTuningConfig

    pm = get_prompt_model(tiny_model("llama"), MultitaskPromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=4, num_tasks=2, num_ranks=1, prompt_tuning_init="RANDOM"))
    a, b = toy_task("a"), toy_task("b", label_words=("sad", "happy"))
    cols = pm.prompt_encoder.prefix_task_cols.detach().clone()  # (K, T, r): u_k per task
    h = train(pm, tiny_tokenizer(), [a, b], steps=4, batch_size=8, mixing="tasks", eval_every=4, eval_examples=4,
              progress=False)
    changed = (pm.prompt_encoder.prefix_task_cols.detach() != cols).flatten(1).any(1)
    assert changed.tolist() == [True, True]  # both tasks' factors received gradient
    assert set(h.metrics[-1][1]) >= {"accuracy/a", "accuracy/b", "accuracy"}
    with pytest.raises(ValueError, match="task_ids"):  # a multitask prompt refuses rows without ids
        pm(**{k: v for k, v in model_inputs(pm, {"input_ids": torch.tensor([[5, 6]])}).items()})


def test_merging_seq2seq_batches_pads_inputs_and_labels_on_the_right():
    from softprompt.batching import merge

    one = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.tensor([[1, 1, 1]]),
           "labels": torch.tensor([[8, 1]]), "class_labels": torch.tensor([0])}
    two = {"input_ids": torch.tensor([[5]]), "attention_mask": torch.tensor([[1]]),
           "labels": torch.tensor([[9, 8, 1]]), "class_labels": torch.tensor([1])}
    m = merge([one, two], pad_token_id=0, padding_side="right", task_type="SEQ_2_SEQ_LM")
    assert m["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]] and m["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert m["labels"].tolist() == [[8, 1, -100], [9, 8, 1]] and m["class_labels"].tolist() == [0, 1]
