"""The prompt's ``T`` virtual positions: position ids from the mask (the one formula every path uses),
and the other per-position inputs and outputs they shift (token type ids, hidden states).

The prompt goes first and left padding after it (Lester et al. 2021, §2: ``[P_e; X_e]``), so a
token's position is the number of real positions before it: ``offset + cumsum(mask) - 1``. Real
token ``j`` of a row then sits at ``T + j`` however much padding the row has, and a left-padded row
gives the same outputs at its real tokens as the same row unpadded.

A pad's position is masked from every other position, but not from its own output, and a causal
LM's loss reads that output where the pad precedes a label (the last left pad predicts the first
token). So the pad convention is part of the loss: ``PromptModel.forward`` lets a pad carry the
running count (the position of the last real position before it); the prefix cache and the prompt
bank put pads at ``pad_position=0``.
"""

from __future__ import annotations

import torch

__all__ = ["causal_position_ids", "shifted_position_ids", "extend_token_type_ids", "strip_prompt"]


def causal_position_ids(mask: torch.Tensor, offset: int | torch.Tensor = 0,
                        pad_position: int | None = None) -> torch.Tensor:
    """Position ids ``(B, N)`` for an attention mask ``(B, N)`` (1 = real position, 0 = pad).

    ``mask`` is the full mask ``[ones(T), input_mask]`` with ``offset=0``, or the input's mask alone
    with ``offset=T`` when the ``T`` prompt positions come from a key/value cache. ``offset`` may be
    a ``(B, 1)`` tensor: one prompt length per row (a mixed-prompt batch). Pads get ``pad_position``,
    or, when it is None, the running count (never below 0).
    """
    positions = offset + mask.long().cumsum(-1) - 1  # (B, N): real token j at offset + j
    if pad_position is None:
        return positions.clamp(min=0)  # (B, N)
    return positions.masked_fill(mask == 0, pad_position)  # (B, N)


def shifted_position_ids(position_ids: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """A caller's position ids ``(B, L)`` for the real tokens, moved past ``num_prefix`` prompt positions."""
    B, T = position_ids.shape[0], num_prefix
    prompt_positions = torch.arange(T, device=position_ids.device).expand(B, T)  # (B, T)
    return torch.cat([prompt_positions, position_ids + T], dim=1)  # (B, T + L)


def extend_token_type_ids(kwargs: dict, num_prefix: int) -> None:
    """``token_type_ids`` ``(B, L)`` in ``kwargs`` (if any) get segment 0 for the prompt positions: ``(B, T + L)``."""
    if kwargs.get("token_type_ids") is not None:
        tt = kwargs["token_type_ids"]  # (B, L)
        kwargs["token_type_ids"] = torch.cat([tt.new_zeros(tt.shape[0], num_prefix), tt], dim=1)  # (B, T + L)


def strip_prompt(hidden_states, num_prefix: int):
    """Per-layer hidden states ``(B, T + L, d)`` without the prompt positions: ``(B, L, d)`` each."""
    return None if hidden_states is None else tuple(h[:, num_prefix:] for h in hidden_states)
