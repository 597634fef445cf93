"""Prompt tuning on a sequence classifier: :class:`SeqClsPromptModel`, task_type SEQ_CLS.

The model reads ``[P_e; X_e]`` (Lester et al. 2021, §2) and its classification head turns the result
into class logits. The head (PEFT's ``modules_to_save = ["classifier", "score"]``) trains too, and is
saved with the prompt as ``base_model.<head>.<param>``. Encoders (BERT: ``classifier``) keep their own
positions. Decoder classifiers (``score`` heads, e.g. LlamaForSequenceClassification) read the last
position, so they need left padding, and get the causal position ids.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import TaskType
from .input_checks import check_no_logits_to_keep
from .model_kind import CLASSIFIER_HEAD_NAMES, find_classifier_head
from .positions import extend_token_type_ids, strip_prompt
from .prompt_model import PromptModel

__all__ = ["SeqClsPromptModel"]


class SeqClsPromptModel(PromptModel, task_type=TaskType.SEQ_CLS):
    """A frozen classifier plus a soft prompt; the classification head (``head``) trains with the prompt."""

    modules_to_save = CLASSIFIER_HEAD_NAMES  # PEFT's names: whichever the model has is the head

    def __init__(self, base_model: nn.Module, prompt_config, prompt_encoder: nn.Module):
        super().__init__(base_model, prompt_config, prompt_encoder)
        self.head_name = find_classifier_head(base_model)[0]

    @property
    def head(self) -> nn.Module:
        """The classification head (trainable, saved with the prompt)."""
        return getattr(self.base_model, self.head_name)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, task_ids=None, inputs_embeds: torch.Tensor | None = None,
                logits_to_keep: int = 0, **kwargs):
        """Class logits ``(B, num_labels)`` of ``[P_e; X_e]`` (Lester §2); ``labels`` ``(B,)`` give the loss."""
        check_no_logits_to_keep(self, logits_to_keep)
        return self._forward_seq_cls(input_ids, attention_mask, labels, task_ids, inputs_embeds, **kwargs)

    def _forward_seq_cls(self, input_ids, attention_mask, labels, task_ids, inputs_embeds, **kwargs):
        T = self.num_virtual_tokens
        embeds, mask, _, _, _ = self._prepend(input_ids, inputs_embeds, attention_mask, task_ids)  # (B, T + L, ·)
        if self.head_name == "score":
            # A decoder-style classifier (LlamaForSequenceClassification, ...) reads the last position, and given
            # embeddings it cannot look for pads: rows must be left-padded. Positions as for causal LMs.
            if (mask[:, -1] == 0).any():
                raise ValueError(
                    f"{type(self.base_model).__name__} classifies from the last position; with a prompt it "
                    "cannot skip right padding. Pad on the left (tokenizer.padding_side = 'left')."
                )
            if self._accepts_position_ids:
                kwargs["position_ids"] = self._position_ids(mask, kwargs.pop("position_ids", None))  # (B, T + L)
        extend_token_type_ids(kwargs, T)
        kwargs.pop("num_items_in_batch", None)  # classification heads average over the batch themselves
        out = self.base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)
        if out.get("hidden_states") is not None:
            out["hidden_states"] = strip_prompt(out.hidden_states, T)
        return out

    def generate(self, *args, **kwargs):
        raise ValueError("generate() is for CAUSAL_LM and SEQ_2_SEQ_LM prompts; call the model for SEQ_CLS.")

    def set_trainable(self, trainable: bool = True) -> SeqClsPromptModel:
        """Freeze the base model; make the prompt and the classification head trainable or not."""
        super().set_trainable(trainable)
        self.head.requires_grad_(trainable)
        return self

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """The prompt's tensors plus the head's, as ``base_model.<head>.<param>`` (PEFT's key names)."""
        tensors = super().adapter_tensors()
        for name, p in self.head.named_parameters():
            tensors[f"base_model.{self.head_name}.{name}"] = p.detach()
        return tensors

    def load_adapter_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load the head's tensors (every shape checked), then the prompt's."""
        tensors = dict(tensors)
        prefix = f"base_model.{self.head_name}."
        head_params = dict(self.head.named_parameters())
        head_tensors = {k[len(prefix):]: tensors.pop(k) for k in list(tensors) if k.startswith(prefix)}
        missing = sorted(set(head_params) - set(head_tensors))
        if missing:
            raise ValueError(f"The adapter file has no weights for the classification head ({prefix}{missing}); "
                             "it was saved from a model without this head.")
        for name, t in head_tensors.items():
            if name not in head_params:
                raise ValueError(f"The adapter file has {prefix}{name}, which this model's head does not have.")
            if tuple(t.shape) != tuple(head_params[name].shape):
                raise ValueError(
                    f"{prefix}{name} has shape {tuple(t.shape)} in the file but {tuple(head_params[name].shape)} "
                    "in this model: the head was trained for a different number of labels or hidden size."
                )
            with torch.no_grad():
                head_params[name].copy_(t.to(head_params[name].dtype))
        super().load_adapter_tensors(tensors)
