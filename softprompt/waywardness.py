"""Prompt waywardness (Khashabi et al., NAACL 2022): the nearest tokens are not what a soft prompt "says".

Lester et al. (2021, §7) read a learned prompt through each vector's nearest vocabulary token.
Khashabi et al. ask what happens if we take that reading literally: replace every prompt vector
``p_t`` by the embedding of its nearest token,

    p̂_t = e_{v*(t)},      v*(t) = argmax_v cos(p_t, e_v),

and use the resulting discrete text as a hard prompt. They show the two can disagree wildly: a
continuous prompt can solve a task while its projection reads as arbitrary (even misleading) text,
and the projected text alone often does much worse. So the neighbours are a hint, not a meaning.

:func:`hard_prompt_model` builds the projected model: a ``PromptModel`` on the *same* base model whose
prompt is exactly the embeddings of the projected tokens, i.e. precisely the hard prompt made of
those tokens, placed where the soft prompt was. :func:`measure_waywardness` evaluates both prompts with
:func:`softprompt.evaluate` and reports the two accuracies with the projected text.

    report = measure_waywardness(prompt_model, tokenizer, task)
    report          # soft accuracy, hard accuracy, the projected text
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .evaluation import evaluate
from .neighbors import display_token, nearest_tokens, prompt_matrix

__all__ = ["project_to_tokens", "hard_prompt_model", "measure_waywardness", "WaywardnessReport", "HardPrompt"]


def project_to_tokens(prompt_model, tokenizer, metric: str = "cosine", *, task_id: int | None = None,
                      skip_special: bool = False, words_only: bool = False) -> torch.Tensor:
    """The nearest token id of every virtual token, ``(T_total,)`` long: the discrete projection of the prompt.

    The filters (see :func:`softprompt.neighbors.vocab_mask`) restrict the projection to, e.g., real words.
    """
    table = nearest_tokens(prompt_model, None, tokenizer, k=1, metric=metric, task_id=task_id,
                           skip_special=skip_special, words_only=words_only)
    return table.ids[:, 0]  # (T_total,)


class HardPrompt(nn.Module):
    """A frozen prompt encoder holding the embeddings of fixed tokens: a hard prompt in soft-prompt clothing.

    It keeps the ``needs_task_ids`` of the encoder it replaces, so code that passes task ids to an MPT
    model keeps working (every task then gets the same, projected prompt).
    """

    def __init__(self, token_ids: torch.Tensor, word_embeddings: nn.Embedding, needs_task_ids: bool = False):
        super().__init__()
        self.needs_task_ids = needs_task_ids
        self.register_buffer("token_ids", token_ids.detach().clone().long().cpu())  # (T_total,)
        self.register_buffer("vectors", word_embeddings.weight.detach()[token_ids.to(word_embeddings.weight.device)]
                             .clone())  # (T_total, d)

    def forward(self, indices: torch.Tensor, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Indices ``(B, T)`` -> the token embeddings ``(B, T, d)``; ``task_ids`` is ignored."""
        return self.vectors[indices]  # (B, T, d)

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        return {"prompt_embeddings": self.vectors}

    def load_adapter_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        raise ValueError("a HardPrompt is fixed tokens; build a new one with hard_prompt_model(...) instead.")

    def extra_repr(self) -> str:
        more = "..." if self.token_ids.numel() > 8 else ""
        return f"T={self.token_ids.numel()}, tokens={self.token_ids.tolist()[:8]}{more}"


def hard_prompt_model(prompt_model, token_ids):
    """A ``PromptModel`` sharing ``prompt_model``'s base model whose prompt is the embeddings of ``token_ids``.

    Feeding it ``input_ids`` gives exactly what the base model gives for ``[token_ids] + input_ids``
    (same positions, same mask): the hard prompt made of those tokens. ``prompt_model`` is untouched
    and nothing large is copied.
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long).reshape(-1)  # (T_total,)
    t_total = int(prompt_model.prompt_tokens.numel())  # T * num_transformer_submodules
    if ids.numel() != t_total:
        raise ValueError(f"got {ids.numel()} token ids for a prompt of {t_total} virtual tokens; pass one id each.")
    vocab = prompt_model.word_embeddings.weight.shape[0]
    if ids.min() < 0 or ids.max() >= vocab:
        raise ValueError(f"token ids must lie in 0..{vocab - 1} (the model's vocabulary); got {ids.tolist()}.")
    encoder = HardPrompt(ids, prompt_model.word_embeddings, needs_task_ids=prompt_model.needs_task_ids)
    hard = type(prompt_model)(prompt_model.base_model, prompt_model.prompt_config, encoder)
    return hard.eval()


@dataclass
class WaywardnessReport:
    """Soft prompt against its nearest-token projection used as a hard prompt."""

    soft: dict  # evaluate() of the soft prompt
    hard: dict  # evaluate() of the projected hard prompt
    token_ids: list[int]
    tokens: list[str]  # readable pieces, '␣' = leading space
    text: str  # tokenizer.decode(token_ids)
    cosine: torch.Tensor  # (T_total,) cosine between each prompt vector and its token's embedding
    metric: str = "cosine"
    task: str = ""
    split: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def soft_accuracy(self) -> float:
        return float(self.soft["accuracy"])

    @property
    def hard_accuracy(self) -> float:
        return float(self.hard["accuracy"])

    def __repr__(self) -> str:
        where = f" on {self.task}/{self.split}" if self.task else ""
        return "\n".join([
            f"Prompt waywardness (Khashabi et al. 2022){where}, projection by {self.metric}",
            f"  soft prompt accuracy:            {self.soft_accuracy:.3f}",
            f"  projected hard prompt accuracy:  {self.hard_accuracy:.3f}",
            f"  projected text: {self.text!r}",
            f"  tokens: {' '.join(self.tokens)}",
            f"  cosine(prompt vector, its token): mean {self.cosine.mean():.3f}, "
            f"min {self.cosine.min():.3f}, max {self.cosine.max():.3f}",
        ])


def measure_waywardness(prompt_model, tokenizer, task, split: str = "test", *, metric: str = "cosine",
                task_id: int | None = None, skip_special: bool = False, words_only: bool = False,
                **evaluate_kwargs) -> WaywardnessReport:
    """Evaluate a soft prompt and its nearest-token projection as a hard prompt (Khashabi et al. 2022).

    Both go through :func:`softprompt.evaluate` with the same arguments (``evaluate_kwargs`` such as
    ``max_examples=`` or ``method=``). For an MPT prompt ``task_id`` picks the task prompt to project.
    """
    ids = project_to_tokens(prompt_model, tokenizer, metric, task_id=task_id, skip_special=skip_special,
                            words_only=words_only)  # (T_total,)
    hard = hard_prompt_model(prompt_model, ids)
    soft_result = evaluate(prompt_model, tokenizer, task, split, task_id=task_id, **evaluate_kwargs)
    hard_result = evaluate(hard, tokenizer, task, split, task_id=task_id, **evaluate_kwargs)
    p = prompt_matrix(prompt_model, task_id)  # (T, d)
    e = prompt_matrix(hard, task_id)  # (T, d)
    cos = torch.nn.functional.cosine_similarity(p, e, dim=-1)  # (T,)
    return WaywardnessReport(
        soft=soft_result, hard=hard_result, token_ids=ids.tolist(),
        tokens=[display_token(tokenizer, int(i)) for i in ids], text=tokenizer.decode(ids.tolist()),
        cosine=cos, metric=str(metric), task=getattr(task, "name", ""), split=split,
    )
