"""PromptModel: prepending, masks, positions, labels, stripped outputs, logits_to_keep, generate, task ids."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from softprompt.config import PromptTuningConfig
from softprompt.positions import causal_position_ids
from softprompt.prompt_model import PromptModel, get_prompt_model, prompt_model_class
from softprompt.testing import tiny_model, tiny_tokenizer

T = 4
TEXTS = ["the movie was really good and fun", "bad", "i love this film"]


def _prompt_model(arch, **cfg):
    return get_prompt_model(tiny_model(arch), PromptTuningConfig(num_virtual_tokens=T, seed=0, **cfg))


def _batch(padding_side="left", texts=TEXTS):
    return tiny_tokenizer(padding_side)(texts, return_tensors="pt", padding=True)


# ---------------------------------------------------------------- freezing
def test_only_the_prompt_trains(causal_arch):
    pm = _prompt_model(causal_arch)
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert trainable == ["prompt_encoder.embedding.weight"]
    assert pm.word_embeddings is pm.base_model.get_input_embeddings()
    assert pm.config is pm.base_model.config


def test_seq_cls_head_trains_too():
    pm = _prompt_model("bert")
    trainable = sorted(n for n, p in pm.named_parameters() if p.requires_grad)
    assert trainable == [
        "base_model.classifier.bias", "base_model.classifier.weight", "prompt_encoder.embedding.weight",
    ]


def test_print_trainable_parameters(capsys):
    pm = _prompt_model("llama")
    trainable, total = pm.num_trainable_parameters()
    assert trainable == T * 32
    pm.print_trainable_parameters()
    assert capsys.readouterr().out == f"trainable params: 128 || all params: {total:,} || trainable%: " \
        f"{100 * 128 / total:.4f}\n"


def test_gradients_reach_the_prompt_only(causal_arch):
    pm = _prompt_model(causal_arch)
    b = _batch()
    pm(**b, labels=b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)).loss.backward()
    grad = pm.prompt_encoder.embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in pm.base_model.parameters())


# ---------------------------------------------------------------- causal forward
def test_causal_logits_are_stripped_and_hidden_states_too(causal_arch):
    pm = _prompt_model(causal_arch)
    b = _batch()
    out = pm(**b, output_hidden_states=True)
    B, L = b["input_ids"].shape
    assert out.logits.shape == (B, L, len(tiny_tokenizer()))
    assert all(h.shape == (B, L, 32) for h in out.hidden_states)


def test_left_padding_does_not_change_logits(causal_arch):
    """Prompt first, positions from the mask: a padded row equals the same row run alone."""
    pm = _prompt_model(causal_arch)
    b = _batch("left")
    batched = pm(**b).logits
    tok = tiny_tokenizer()
    for i, text in enumerate(TEXTS):
        alone = pm(**tok([text], return_tensors="pt")).logits[0]  # (L_i, V)
        torch.testing.assert_close(batched[i, -alone.shape[0]:], alone, atol=1e-5, rtol=1e-5)


def test_prompt_changes_the_output(causal_arch):
    pm = _prompt_model(causal_arch)
    b = _batch()
    before = pm(**b).logits.clone()
    with torch.no_grad():
        pm.prompt_encoder.embedding.weight.add_(1.0)
    assert not torch.allclose(before, pm(**b).logits)


def test_causal_loss_equals_peft_style_shifted_cross_entropy():
    """Labels aligned with input_ids; the prompt's last position predicts the first label."""
    pm = _prompt_model("llama")
    b = _batch()
    labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
    out = pm(**b, labels=labels)
    # Rebuild the loss from the base model on [prompt; x] explicitly.
    full_labels = torch.cat([torch.full((3, T), -100), labels], dim=1)
    embeds = torch.cat([pm.get_prompt(3), pm.word_embeddings(b["input_ids"])], dim=1)
    mask = torch.cat([torch.ones(3, T, dtype=torch.long), b["attention_mask"]], dim=1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = pm.base_model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).logits
    expected = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), full_labels[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)


def test_logits_to_keep_gives_the_same_loss(causal_arch):
    """Targets at the end of left-padded rows: k = target length + 1 positions are enough."""
    pm = _prompt_model(causal_arch)
    b = _batch()
    target_len = 2
    labels = torch.full_like(b["input_ids"], -100)
    labels[:, -target_len:] = b["input_ids"][:, -target_len:]
    full = pm(**b, labels=labels)
    fast = pm(**b, labels=labels, logits_to_keep=target_len + 1)
    assert fast.logits.shape[1] == target_len + 1
    torch.testing.assert_close(fast.loss, full.loss)
    torch.testing.assert_close(fast.logits, full.logits[:, -(target_len + 1):], atol=1e-5, rtol=1e-5)
    # num_items_in_batch (transformers.Trainer): a sum over the batch divided by that count
    n = int((labels[:, 1:] != -100).sum())
    torch.testing.assert_close(pm(**b, labels=labels, logits_to_keep=3, num_items_in_batch=n).loss, full.loss)
    torch.testing.assert_close(pm(**b, labels=labels, num_items_in_batch=n).loss, full.loss)


def test_logits_to_keep_out_of_range_is_a_clear_error():
    pm = _prompt_model("llama")
    b = _batch()
    with pytest.raises(ValueError, match="logits_to_keep=99"):
        pm(**b, logits_to_keep=99)
    with pytest.raises(ValueError, match="causal LMs"):
        _prompt_model("bert")(**_batch("right"), logits_to_keep=1)


def test_inputs_embeds_and_input_ids_are_exclusive():
    pm = _prompt_model("llama")
    b = _batch()
    emb = pm.word_embeddings(b["input_ids"])
    torch.testing.assert_close(pm(inputs_embeds=emb, attention_mask=b["attention_mask"]).logits, pm(**b).logits)
    with pytest.raises(ValueError, match="exactly one"):
        pm(input_ids=b["input_ids"], inputs_embeds=emb)


def test_given_position_ids_are_moved_past_the_prompt():
    pm = _prompt_model("llama")
    b = tiny_tokenizer()(["the movie was good"], return_tensors="pt")
    pos = torch.arange(b["input_ids"].shape[1])[None]
    torch.testing.assert_close(pm(**b, position_ids=pos).logits, pm(**b).logits)


# ---------------------------------------------------------------- generate
def _greedy(pm, input_ids, attention_mask, steps, **kw):
    """A reference greedy decoder over PromptModel.forward (no cache)."""
    new = []
    for _ in range(steps):
        nxt = pm(input_ids=input_ids, attention_mask=attention_mask, **kw).logits[:, -1].argmax(-1, keepdim=True)
        new.append(nxt)
        input_ids = torch.cat([input_ids, nxt], dim=1)
        attention_mask = torch.cat([attention_mask, torch.ones_like(nxt)], dim=1)
    return torch.cat(new, dim=1)


def test_causal_generate_equals_greedy_forward_left_padded(causal_arch):
    pm = _prompt_model(causal_arch, random_init_scale="peft")
    b = _batch()
    with torch.no_grad():
        expected = _greedy(pm, b["input_ids"], b["attention_mask"], 6)
    got = pm.generate(**b, max_new_tokens=6, do_sample=False, eos_token_id=None)
    assert got.shape == (3, 6)  # new tokens only
    assert torch.equal(got, expected)


def _greedy_seq2seq(pm, b, steps):
    start = pm.config.decoder_start_token_id
    dec = torch.full((b["input_ids"].shape[0], 1), start)
    with torch.no_grad():
        for _ in range(steps):
            nxt = pm(**b, decoder_input_ids=dec).logits[:, -1].argmax(-1, keepdim=True)
            dec = torch.cat([dec, nxt], dim=1)
    return dec[:, 1:]


@pytest.mark.parametrize("submodules", [1, 2])
def test_seq2seq_generate_equals_greedy_forward(submodules):
    """With decoder prompts, generate feeds the decoder the same [P_dec; <start>] as training."""
    pm = _prompt_model("t5", task_type="SEQ_2_SEQ_LM", num_transformer_submodules=submodules,
                       random_init_scale="peft")
    b = _batch("right")
    got = pm.generate(**b, max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert got.shape == (3, 5)
    assert torch.equal(got, _greedy_seq2seq(pm, b, 5))


def test_seq2seq_decoder_prompt_is_used_and_trains():
    pm = _prompt_model("t5", task_type="SEQ_2_SEQ_LM", num_transformer_submodules=2)
    assert pm.prompt_encoder.embedding.weight.shape == (2 * T, 32)
    b = _batch("right")
    out = pm(**b, labels=b["input_ids"])
    assert out.logits.shape[:2] == b["input_ids"].shape  # decoder prompt stripped
    out.loss.backward()
    grad = pm.prompt_encoder.embedding.weight.grad
    assert grad[:T].abs().sum() > 0 and grad[T:].abs().sum() > 0  # both halves learn (PEFT's decoder half never does)


def test_seq_cls_has_no_generate():
    with pytest.raises(ValueError, match="SEQ_CLS"):
        _prompt_model("bert").generate(**_batch("right"))


def test_seq_cls_forward_extends_token_type_ids():
    pm = _prompt_model("bert")
    b = _batch("right")
    out = pm(**b, labels=torch.tensor([0, 1, 0]), output_hidden_states=True)
    assert out.logits.shape == (3, 2) and out.loss.ndim == 0
    assert out.hidden_states[-1].shape[:2] == b["input_ids"].shape


# ---------------------------------------------------------------- multitask encoders (duck-typed)
@dataclass
class _MTConfig:
    task_type: str = "CAUSAL_LM"
    num_virtual_tokens: int = T
    num_transformer_submodules: int = 1
    num_tasks: int = 3
    peft_type: str = "MULTITASK_PROMPT_TUNING"
    inference_mode: bool = False


class _ScaledPrompt(nn.Module):
    """A stand-in multitask encoder: task k's prompt is (k + 1) · P."""

    needs_task_ids = True

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(T, 32)

    def forward(self, indices, task_ids):
        return self.embedding(indices) * (task_ids + 1).float()[:, None, None]  # (B, T, d)


def test_task_ids_reach_a_multitask_encoder_and_are_checked():
    pm = PromptModel(tiny_model("llama"), _MTConfig(), _ScaledPrompt())
    b = _batch()
    P = pm.prompt_encoder.embedding.weight
    torch.testing.assert_close(pm.get_prompt(3, torch.tensor([0, 1, 2])), torch.stack([P, 2 * P, 3 * P]))
    mixed = pm(**b, task_ids=torch.tensor([0, 2, 1])).logits
    for row, task in enumerate([0, 2, 1]):
        alone = pm(**{k: v[row:row + 1] for k, v in b.items()}, task_ids=task).logits
        torch.testing.assert_close(mixed[row:row + 1], alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="task_ids is missing"):
        pm(**b)
    with pytest.raises(ValueError, match="outside 0..2"):
        pm(**b, task_ids=torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="one id per row"):
        pm(**b, task_ids=torch.tensor([0, 1]))


def test_single_task_prompt_ignores_task_ids():
    pm = _prompt_model("llama")
    b = _batch()
    torch.testing.assert_close(pm(**b, task_ids=torch.tensor([0, 1, 2])).logits, pm(**b).logits)


def test_decoder_prompts_need_a_seq2seq_model():
    with pytest.raises(ValueError, match="num_transformer_submodules"):
        _prompt_model("llama", num_transformer_submodules=2)


def _llama_classifier():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=2, pad_token_id=tok.pad_token_id)
    return LlamaForSequenceClassification(cfg).eval()


def test_decoder_classifier_is_padding_invariant_and_refuses_right_padding():
    pm = get_prompt_model(_llama_classifier(), PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=T, seed=0))
    assert pm.head_name == "score" and pm.head.weight.requires_grad
    batched = pm(**_batch("left")).logits
    for i, text in enumerate(TEXTS):
        alone = pm(**tiny_tokenizer()([text], return_tensors="pt")).logits[0]
        torch.testing.assert_close(batched[i], alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="Pad on the left"):
        pm(**_batch("right"))


# ---------------------------------------------------------------- one class per task type
@pytest.mark.parametrize("arch, cls_name", [("llama", "PromptModel"), ("gpt2", "PromptModel"),
                                            ("t5", "Seq2SeqPromptModel"), ("bert", "SeqClsPromptModel")])
def test_get_prompt_model_picks_the_class_for_the_task_type(arch, cls_name, tmp_path):
    pm = _prompt_model(arch)
    assert isinstance(pm, PromptModel) and type(pm).__name__ == cls_name
    assert type(pm) is prompt_model_class(pm.task_type)
    pm.save_pretrained(tmp_path)
    assert type(PromptModel.from_pretrained(pm.base_model, tmp_path)) is type(pm)


def test_building_the_causal_class_for_another_task_type_is_refused():
    pm = _prompt_model("bert")
    with pytest.raises(TypeError, match="SeqClsPromptModel"):
        PromptModel(pm.base_model, pm.prompt_config, pm.prompt_encoder)


def test_position_ids_count_real_positions_and_pads_follow_the_convention():
    mask = torch.tensor([[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1]])  # [prompt T=2][pads][tokens]
    assert causal_position_ids(mask).tolist() == [[0, 1, 1, 1, 2, 3], [0, 1, 2, 3, 4, 5]]  # PromptModel's pads
    assert causal_position_ids(mask, pad_position=0).tolist() == [[0, 1, 0, 0, 2, 3], [0, 1, 2, 3, 4, 5]]
    offsets = torch.tensor([[2], [5]])  # one prompt length per row (a mixed-prompt bank)
    assert causal_position_ids(mask[:, 2:], offsets, pad_position=0).tolist() == [[0, 0, 2, 3], [5, 6, 7, 8]]
