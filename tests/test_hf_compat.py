"""The KV-cache argument goes under the name the installed transformers uses, with no deprecation warning."""

import inspect
import warnings

import torch

from softprompt import PromptTuningConfig, get_prompt_model
from softprompt.hf_compat import cache_kwargs, output_cache
from softprompt.prefix_cache import PromptPrefixCache
from softprompt.testing import tiny_model


def test_cache_kwargs_uses_the_forward_signature_name():
    model = tiny_model("llama")
    expected = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
    assert list(cache_kwargs(model, "x")) == [expected]


def test_output_cache_finds_the_cache_and_none_without_it():
    model = tiny_model("llama")
    ids = torch.tensor([[1, 2, 3]])
    assert output_cache(model(input_ids=ids, use_cache=True)) is not None
    assert output_cache(model(input_ids=ids, use_cache=False)) is None


def test_prefix_cache_paths_raise_no_deprecation_warning():
    model = tiny_model("llama")
    pm = get_prompt_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    cache = PromptPrefixCache(pm)
    ids, mask = torch.tensor([[0, 5, 6], [7, 8, 9]]), torch.tensor([[0, 1, 1], [1, 1, 1]])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*")
        cache(ids, mask)
        cache.generate(ids, mask, max_new_tokens=2, do_sample=False)
