"""The soft prompt itself: `PromptEmbedding`, a table of T trainable vectors (Lester et al. 2021, §2).

Prompt tuning freezes the whole model and learns only ``P_e ∈ R^{T×d}``, the embeddings of T
"virtual tokens" put in front of the input (Lester et al. §2: ``[P_e; X_e] ∈ R^{(T+n)×d}``).
``PromptEmbedding`` holds ``P_e`` as an ``nn.Embedding`` named ``embedding``, as PEFT does, so the
state dicts and the saved ``prompt_embeddings`` tensor line up with PEFT's.

Input shape ``(B, T_total)`` (the virtual token indices, usually ``arange(T_total)`` per row),
output shape ``(B, T_total, d)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import torch
from torch import nn

from .config import PromptTuningConfig, PromptTuningInit, RandomInitScale
from .initialization import initial_prompt

__all__ = ["PromptEmbedding"]


class PromptEmbedding(nn.Module):
    """``num_virtual_tokens`` trainable vectors of size ``token_dim`` (Lester et al. §2), initialized per §3.2.

    Args:
        config: a :class:`PromptTuningConfig`; ``token_dim`` may be None (taken from ``word_embeddings``).
        word_embeddings: the base model's input embeddings (``model.get_input_embeddings()``); read once
            for the init, never stored or changed.
        tokenizer: for TEXT and CLASS_LABELS init (and to sample common words); when None and the init
            needs one, it is loaded from ``config.tokenizer_name_or_path``.

    In ``config.inference_mode`` the init is skipped (as PEFT): the weights are to be loaded.

    Example::

        prompt = PromptEmbedding(config, model.get_input_embeddings(), tokenizer)
        P = prompt(torch.arange(config.total_virtual_tokens)[None])  # (1, T, d)
    """

    needs_task_ids = False

    def __init__(self, config: PromptTuningConfig, word_embeddings: nn.Module, tokenizer=None):
        super().__init__()
        d = word_embeddings.weight.shape[1]
        if config.token_dim is None:
            config = dataclasses.replace(config, token_dim=d)
        elif config.token_dim != d:
            raise ValueError(
                f"token_dim={config.token_dim} does not match the word embeddings' size {d}; "
                f"set token_dim={d} (or None, to take it from the model)."
            )
        self.config = config
        weight = word_embeddings.weight
        self.embedding = nn.Embedding(config.total_virtual_tokens, d, device=weight.device)  # P_e: (T_total, d)
        if config.inference_mode:
            return
        keeps_default = (
            config.prompt_tuning_init == PromptTuningInit.RANDOM
            and config.random_init_scale == RandomInitScale.PEFT
            and config.seed is None
        )
        if keeps_default:  # nn.Embedding's own N(0, 1) init: exactly PEFT's RANDOM under the same torch seed
            return
        if tokenizer is None and config.uses_tokenizer:
            tokenizer = _tokenizer_for(config)
        init = initial_prompt(config, word_embeddings, tokenizer)  # (T_total, d)
        with torch.no_grad():
            self.embedding.weight.copy_(init)

    @classmethod
    def from_tensor(cls, config: PromptTuningConfig, tensor: torch.Tensor) -> PromptEmbedding:
        """A prompt holding ``tensor`` (``(T_total, d)``), e.g. a learned prompt loaded from a file."""
        if tensor.dim() != 2:
            raise ValueError(f"Expected a (T_total, d) tensor, got shape {tuple(tensor.shape)}.")
        T, d = tensor.shape
        if config.token_dim is None:
            config = dataclasses.replace(config, token_dim=d)
        if (config.total_virtual_tokens, config.token_dim) != (T, d):
            raise ValueError(
                f"The tensor has shape {(T, d)} but the config asks for (total_virtual_tokens, token_dim) = "
                f"{(config.total_virtual_tokens, config.token_dim)}; use a config that matches the tensor."
            )
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.config = config
        self.embedding = nn.Embedding(T, d, device=tensor.device)
        with torch.no_grad():
            self.embedding.weight.copy_(tensor)
        return self

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Virtual token indices ``(B, T)``, on any device -> prompt vectors ``(B, T, d)`` on the prompt's device."""
        indices = indices.to(self.embedding.weight.device)  # e.g. torch.arange(T)[None] built on CPU
        return self.embedding(indices)  # (B, T, d)

    @property
    def weight(self) -> torch.Tensor:
        """The prompt matrix ``P_e``, ``(T_total, d)``."""
        return self.embedding.weight

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """What goes into ``adapter_model.safetensors``, under PEFT's key name."""
        return {"prompt_embeddings": self.embedding.weight.detach()}

    def load_adapter_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load :meth:`adapter_tensors` output (or PEFT's file) into this prompt, checking names and shapes."""
        extra = sorted(set(tensors) - {"prompt_embeddings"})
        if "prompt_embeddings" not in tensors or extra:
            raise ValueError(
                f"Expected exactly the tensor 'prompt_embeddings', got {sorted(tensors)}"
                + (" (MPT tensors: load them into a MultitaskPromptEmbedding)." if extra else ".")
            )
        t = tensors["prompt_embeddings"]
        expected = tuple(self.embedding.weight.shape)
        if tuple(t.shape) != expected:
            raise ValueError(
                f"prompt_embeddings has shape {tuple(t.shape)}, expected {expected} "
                "(total_virtual_tokens, token_dim): the file was saved for another prompt length or model."
            )
        with torch.no_grad():
            self.embedding.weight.copy_(t)

    def extra_repr(self) -> str:
        c = self.config
        return f"init={c.prompt_tuning_init.value}, T={c.total_virtual_tokens}, d={c.token_dim}"


def _tokenizer_for(config: PromptTuningConfig):
    """Load the config's tokenizer (presets work offline); None when it names none and none is strictly needed."""
    name = config.tokenizer_name_or_path
    if name is None:
        if config.needs_tokenizer:
            raise ValueError(
                f"prompt_tuning_init={config.prompt_tuning_init.value!r} needs a tokenizer: pass "
                "PromptEmbedding(config, word_embeddings, tokenizer=...), or set tokenizer_name_or_path "
                "(config.filled_from_model(model) sets it from the model's name)."
            )
        warnings.warn(
            f"sample_vocab_size={config.sample_vocab_size} needs a tokenizer to find common words; none given, so "
            "SAMPLE_VOCAB samples the whole vocabulary (as PEFT). Pass tokenizer=... or set tokenizer_name_or_path.",
            stacklevel=3,
        )
        return None
    kwargs = {k: v for k, v in (config.tokenizer_kwargs or {}).items() if k != "trust_remote_code"}
    from .models import PRESETS, load_tokenizer

    # A preset's hub id (what filled_from_model writes) loads through the preset, so it works offline too.
    name = next((key for key, p in PRESETS.items() if p.hub_id.lower() == str(name).lower()), name)

    accepts_kwargs = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(load_tokenizer).parameters.values())
    if not kwargs or accepts_kwargs:
        return load_tokenizer(name, **kwargs)
    if str(name).lower() in PRESETS:
        raise ValueError(
            f"tokenizer_kwargs cannot be applied to the preset {name!r}; drop tokenizer_kwargs."
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name, **kwargs)
