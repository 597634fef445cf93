"""Notebook 01's exercise checks: a right answer passes, wrong ones fail with a message that says what is wrong.

Tiny random models: the word-level tiny tokenizer (``llama``, ``gpt2``), and a tiny Llama with SmolLM2's own
tokenizer (``smol``), whose byte-level BPE has the leading-space convention and words of several pieces."""

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from softprompt.exercises import check
from softprompt.initialization import common_word_token_ids
from softprompt.models import load_tokenizer


def messages(result) -> str:
    return "\n".join(r.message for r in result.test_case_results if not r.passed)


@pytest.fixture(scope="module")
def smol():
    """A tiny random Llama (d=32, 2 layers) over SmolLM2's tokenizer; no row of its table is zero."""
    tok = load_tokenizer("smollm2-135m-instruct")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight[tok.pad_token_id].normal_(0, 0.02)  # padding_idx starts at zero
    return model, tok


# --- 01.2: TEXT init, REPEAT fill -------------------------------------------------------------------------------

def repeat_fill(E, ids, T):
    return E[(list(ids) * math.ceil(T / len(ids)))[:T]]  # (T, d)


def test_01_2_text_prompt(llama, gpt2, tokenizer):
    for model in (llama, gpt2):
        assert check("01.2", text_prompt=repeat_fill, model=model, tokenizer=tokenizer).passed_all
    last = check("01.2", text_prompt=lambda E, ids, T: E[(list(ids) * T)[-T:]], model=llama, tokenizer=tokenizer)
    assert not last.passed_all and "Your slots hold the rows of the text's tokens at positions" in messages(last)
    zeros = check("01.2", model=llama, tokenizer=tokenizer,
                  text_prompt=lambda E, ids, T: torch.cat([E[ids[:T]], E.new_zeros(max(T - len(ids), 0), E.shape[1])]))
    assert "('-': a row of no token of the text)" in messages(zeros) and "slots hold the wrong row" in messages(zeros)
    assert "define `text_prompt` first" in messages(check("01.2", text_prompt=None, model=llama, tokenizer=tokenizer))
    assert "run the notebook's cells above first" in messages(check("01.2", text_prompt=repeat_fill, model=None))


# --- 01.3: the centroid init ------------------------------------------------------------------------------------

def test_01_3_centroid_prompt(llama):
    assert check("01.3", centroid_prompt=lambda E, T: E.mean(0).expand(T, -1), model=llama).passed_all
    assert check("01.3", centroid_prompt=lambda E, T: E.sum(0).repeat(T, 1) / len(E), model=llama).passed_all
    directions = check("01.3", model=llama,
                       centroid_prompt=lambda E, T: (E / E.norm(dim=-1, keepdim=True)).mean(0).expand(T, -1))
    assert not directions.passed_all and "are not the centroid of E" in messages(directions)
    assert "whose norm is" in messages(directions)
    per_row = check("01.3", centroid_prompt=lambda E, T: E.mean(1), model=llama)
    assert "expected (8, 6) (T slots of d numbers each)" in messages(per_row)
    assert "define `centroid_prompt` first" in messages(check("01.3", centroid_prompt=None, model=llama))


# --- 01.4: a label word's slot ------------------------------------------------------------------------------------

def mean_of_pieces(E, tokenizer, word):
    return E[tokenizer(" " + word, add_special_tokens=False)["input_ids"]].mean(0)  # (d,)


def test_01_4_label_slot(llama, tokenizer, smol):
    model, tok = smol
    assert check("01.4", label_slot=mean_of_pieces, model=llama, tokenizer=tokenizer).passed_all
    assert check("01.4", label_slot=mean_of_pieces, model=model, tokenizer=tok).passed_all
    at_start = check("01.4", model=model, tokenizer=tok,
                     label_slot=lambda E, tokenizer, word: E[tokenizer(word, add_special_tokens=False)["input_ids"]]
                     .mean(0))
    assert not at_start.passed_all and "a label word is read after a space" in messages(at_start)
    summed = check("01.4", model=model, tokenizer=tok,
                   label_slot=lambda E, tokenizer, word: E[tokenizer(" " + word)["input_ids"]].sum(0))
    assert "it is the sum of the word's piece rows, not their mean" in messages(summed)
    first = check("01.4", model=model, tokenizer=tok,
                  label_slot=lambda E, tokenizer, word: E[tokenizer(" " + word)["input_ids"][0]])
    assert "it is the row of the word's first piece only" in messages(first)
    assert "define `label_slot` first" in messages(check("01.4", label_slot=None, model=model, tokenizer=tok))


# --- 01.5: cosine and dot-product rankings ------------------------------------------------------------------------

def nearest(q, E, k, metric):
    scores = E @ q if metric == "dot" else (E / E.norm(dim=-1, keepdim=True)) @ (q / q.norm())  # (V,)
    return scores.topk(k).indices


def test_01_5_top_tokens(smol):
    model, _ = smol
    assert check("01.5", top_tokens=nearest, model=model).passed_all
    dot_only = check("01.5", top_tokens=lambda q, E, k, metric: (E @ q).topk(k).indices, model=model)
    assert not dot_only.passed_all and "tokens are the nearest by dot, not by cosine" in messages(dot_only)
    farthest = check("01.5", top_tokens=lambda q, E, k, metric: nearest(-q, E, k, metric), model=model)
    assert "tokens are the farthest by" in messages(farthest)
    assert "define `top_tokens` first" in messages(check("01.5", top_tokens=None, model=model))


# --- 01.6: scaling the prompt, layer by layer ----------------------------------------------------------------------

def change(prompt_model, input_ids, scale, restore=True, relative=True, embeddings=True):
    weight = prompt_model.prompt_encoder.weight
    with torch.no_grad():
        before = prompt_model(input_ids=input_ids, output_hidden_states=True).hidden_states
        saved = weight.clone()
        weight.mul_(scale)
        after = prompt_model(input_ids=input_ids, output_hidden_states=True).hidden_states
        if restore:
            weight.copy_(saved)
    out = torch.stack([(a - b).norm() / (b.norm() if relative else 1) for a, b in zip(after, before)])
    return out if embeddings else out[1:]


def test_01_6_hidden_change(llama, tokenizer):
    assert check("01.6", hidden_change=change, model=llama, tokenizer=tokenizer).passed_all
    kept = check("01.6", hidden_change=lambda *a: change(*a, restore=False), model=llama, tokenizer=tokenizer)
    assert not kept.passed_all and "the prompt model's prompt is no longer P_e" in messages(kept)
    absolute = check("01.6", hidden_change=lambda *a: change(*a, relative=False), model=llama, tokenizer=tokenizer)
    assert "entries are wrong; first at the output of layer 0 (entry 1)" in messages(absolute)
    layers = check("01.6", hidden_change=lambda *a: change(*a, embeddings=False), model=llama, tokenizer=tokenizer)
    assert "expected (3,) (one number for the embeddings, then one per layer: this model has 2 layers)" in messages(
        layers)
    assert "define `hidden_change` first" in messages(check("01.6", hidden_change=None, model=llama,
                                                            tokenizer=tokenizer))


# --- 01.7: CLASS_LABELS by hand, and its twin ----------------------------------------------------------------------

def label_ids(tokenizer, labels, leading_space=True):
    return [tokenizer((" " if leading_space else "") + w, add_special_tokens=False)["input_ids"] for w in labels]


def sampled_ids(tokenizer, E, labels, T, seed, seeded=True):
    candidates = common_word_token_ids(tokenizer, 5000)
    candidates = candidates[candidates < len(E)]
    generator = torch.Generator().manual_seed(seed) if seeded else None
    return candidates[torch.randperm(len(candidates), generator=generator)[: T - len(labels)]].tolist()


def by_hand(E, tokenizer, labels, T, seed, leading_space=True, seeded=True):
    rows = [E[ids].mean(0) for ids in label_ids(tokenizer, labels, leading_space)]
    return torch.stack(rows + [E[i] for i in sampled_ids(tokenizer, E, labels, T, seed, seeded)])  # (T, d)


def twin(tokenizer, labels, T, seed):
    pieces = label_ids(tokenizer, labels)
    if any(len(p) > 1 for p in pieces):
        return None
    return [p[0] for p in pieces] + sampled_ids(tokenizer, range(len(tokenizer)), labels, T, seed)


def test_01_7_class_labels_by_hand(llama, tokenizer, smol):
    model, tok = smol
    for m, t in ((llama, tokenizer), (model, tok)):
        assert check("01.7", class_label_prompt=by_hand, hard_prompt_twin=twin, model=m, tokenizer=t).passed_all
    unseeded = check("01.7", class_label_prompt=lambda *a: by_hand(*a, seeded=False), hard_prompt_twin=twin,
                     model=llama, tokenizer=tokenizer)
    assert not unseeded.passed_all and "the label slots are right, but the sampled slots" in messages(unseeded)
    at_start = check("01.7", class_label_prompt=lambda *a: by_hand(*a, leading_space=False), hard_prompt_twin=twin,
                     model=model, tokenizer=tok)
    assert "a label word is read after a space" in messages(at_start)
    first_pieces = check("01.7", class_label_prompt=by_hand, model=llama, tokenizer=tokenizer,
                         hard_prompt_twin=lambda tok, labels, T, seed: [ids[0] for ids in label_ids(tok, labels)]
                         + sampled_ids(tok, range(len(tok)), labels, T, seed))
    assert "gave a twin, not None" in messages(first_pieces)
    missing = messages(check("01.7", class_label_prompt=None, hard_prompt_twin=None, model=llama, tokenizer=tokenizer))
    assert "define `class_label_prompt` first" in missing and "define `hard_prompt_twin` first" in missing
