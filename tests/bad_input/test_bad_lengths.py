"""The library's contract for lengths that do not fit the model's context.

A prompt longer than the whole context is refused when it is attached to the model, with a message that
names the limit and the fix (it used to surface at the first forward pass as "Keep the input to -44
tokens"). A text longer than the context is cut to fit, as before; when the user did not choose the cut
(no ``max_length``), train(), evaluate() and a TaskCollator say so once, with how many examples were cut.
"""

import pytest
import torch

from softprompt.config import PromptTuningConfig
from softprompt.prompt_embedding import PromptEmbedding
from softprompt.prompt_model import PromptModel, get_prompt_model
from softprompt.testing import tiny_model

# ------------------------------------------------------------------ 1. a prompt longer than the context


@pytest.mark.parametrize("arch, name", [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM"),
                                        ("bert", "BertForSequenceClassification")])
def test_a_prompt_longer_than_the_context_is_refused_when_attached(arch, name):
    model = tiny_model(arch)  # 256 positions
    with pytest.raises(ValueError) as info:
        get_prompt_model(model, PromptTuningConfig(num_virtual_tokens=300))
    message = str(info.value)
    assert message == (f"num_virtual_tokens=300: the prompt's 300 virtual tokens alone exceed {name}'s context of "
                       "256 positions, which leaves no room for the text; use at most 255 virtual tokens (or a model "
                       "with a longer context).")


def test_a_directly_built_prompt_longer_than_the_table_gets_the_same_message_not_a_negative_length():
    model = tiny_model("gpt2")  # a learned position table of 256 rows
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=300).filled_from_model(model)
    pm = PromptModel(model, config, PromptEmbedding(config, model.get_input_embeddings()))  # skips get_prompt_model
    with pytest.raises(ValueError, match=r"300 virtual tokens alone exceed GPT2LMHeadModel's context of 256 "
                                         r"positions.*use at most 255 virtual tokens") as info:
        pm(torch.ones(1, 3, dtype=torch.long))
    assert "-44" not in str(info.value) and "Keep the input to -" not in str(info.value)


def test_a_prompt_that_fills_the_context_builds_but_a_forward_names_the_fix():
    pm = get_prompt_model(tiny_model("gpt2"), PromptTuningConfig(num_virtual_tokens=256))
    with pytest.raises(ValueError, match=r"256 virtual tokens alone fill GPT2LMHeadModel's context of 256 positions"
                                         r".*use at most 255 virtual tokens"):
        pm(torch.ones(1, 1, dtype=torch.long))


def test_relative_positions_have_no_context_to_exceed():
    pm = get_prompt_model(tiny_model("t5"), PromptTuningConfig(num_virtual_tokens=300))  # T5: relative buckets
    assert pm.num_virtual_tokens == 300
