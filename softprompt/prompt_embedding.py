"""The soft prompt itself: `PromptEmbedding`, a table of T trainable vectors (Lester et al. 2021, §2).

Prompt tuning freezes the whole model and learns only ``P_e ∈ R^{T×d}``, the embeddings of T
"virtual tokens" put in front of the input (Lester et al. §2: ``[P_e; X_e] ∈ R^{(T+n)×d}``).
``PromptEmbedding`` holds ``P_e`` as an ``nn.Embedding`` named ``embedding``, as PEFT does, so the
state dicts and the saved ``prompt_embeddings`` tensor line up with PEFT's. Where ``P_e`` starts
(§3.2) is :func:`softprompt.initialization.prompt_start`.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import PromptTuningConfig
from .config_checks import check_prompt_tensors, check_prompt_weight, check_token_dim
from .initialization import prompt_start

__all__ = ["PromptEmbedding"]


class PromptEmbedding(nn.Module):
    """``num_virtual_tokens`` trainable vectors of size ``token_dim`` (Lester et al. §2), initialized per §3.2.

    Args:
        config: a :class:`PromptTuningConfig`; ``token_dim`` may be None (taken from the model or ``weight``).
        word_embeddings: the base model's input embeddings (``model.get_input_embeddings()``); read once
            for the init, never stored or changed.
        tokenizer: for TEXT and CLASS_LABELS init (and to sample common words); when None and the init
            needs one, it is loaded from ``config.tokenizer_name_or_path``.
        weight: a ready ``(T_total, d)`` prompt instead (e.g. a learned one read from a file): no init runs.

    In ``config.inference_mode`` the init is skipped (as PEFT): the weights are to be loaded.
    Input: indices ``(B, T)``; output ``(B, T, d)``. Example::

        prompt = PromptEmbedding(config, model.get_input_embeddings(), tokenizer)
        P = prompt(torch.arange(config.total_virtual_tokens)[None])  # (1, T, d)
    """

    needs_task_ids = False

    def __init__(self, config: PromptTuningConfig, word_embeddings: nn.Module | None = None, tokenizer=None, *,
                 weight: torch.Tensor | None = None):
        super().__init__()
        if weight is not None:
            check_prompt_weight(config, weight)  # (T_total, d)
        table = word_embeddings.weight if weight is None else weight  # (V, d) or (T_total, d)
        d = table.shape[1]
        check_token_dim(config, d)
        self.config = config if config.token_dim is not None else config.replace(token_dim=d)
        self.embedding = nn.Embedding(self.config.total_virtual_tokens, d, device=table.device)  # P_e: (T_total, d)
        init = weight if weight is not None else prompt_start(self.config, word_embeddings, tokenizer)
        if init is not None:  # None: keep nn.Embedding's N(0, 1), PEFT's RANDOM (or weights about to be loaded)
            with torch.no_grad():
                self.embedding.weight.copy_(init)  # (T_total, d)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        """Virtual token indices ``(B, T)``, on any device -> prompt vectors ``(B, T, d)`` on the prompt's device."""
        indices = indices.to(self.embedding.weight.device)  # (B, T), e.g. torch.arange(T)[None] built on CPU
        return self.embedding(indices)  # (B, T, d)

    @property
    def weight(self) -> torch.Tensor:
        """The prompt matrix ``P_e``, ``(T_total, d)``."""
        return self.embedding.weight

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """What goes into ``adapter_model.safetensors``, under PEFT's key name."""
        return {"prompt_embeddings": self.embedding.weight.detach()}  # (T_total, d)

    def load_adapter_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load :meth:`adapter_tensors` output (or PEFT's file) into this prompt, checking names and shapes."""
        check_prompt_tensors(tensors, tuple(self.embedding.weight.shape))
        with torch.no_grad():
            self.embedding.weight.copy_(tensors["prompt_embeddings"])  # (T_total, d)

    def extra_repr(self) -> str:
        c = self.config
        return f"init={c.prompt_tuning_init.value}, T={c.total_virtual_tokens}, d={c.token_dim}"
