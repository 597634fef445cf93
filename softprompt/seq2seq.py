"""Prompt tuning on an encoder-decoder (T5, BART): :class:`Seq2SeqPromptModel`, task_type SEQ_2_SEQ_LM.

By default the prompt goes to the encoder only, as in Lester et al. 2021 (§2, T5): the encoder reads
``[P_e; X_e]`` and the decoder runs as usual. With ``num_transformer_submodules=2`` a second block of
``T`` vectors is prepended to the decoder input, ``[P_dec; embed(decoder_input_ids)]``, and
:meth:`~Seq2SeqPromptModel.generate` feeds the decoder the same prompt that training did. Outputs strip
the virtual positions of the encoder (and of the decoder, with a decoder prompt).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, EncoderDecoderCache
from transformers.models.bart.modeling_bart import shift_tokens_right

from .config import TaskType
from .hf_compat import cache_kwargs
from .input_checks import check_no_logits_to_keep
from .positions import strip_prompt
from .prompt_model import PromptModel

__all__ = ["Seq2SeqPromptModel"]


class Seq2SeqPromptModel(PromptModel, task_type=TaskType.SEQ_2_SEQ_LM):
    """A frozen encoder-decoder plus a soft prompt in front of the encoder input (and optionally the decoder's)."""

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, task_ids=None, inputs_embeds: torch.Tensor | None = None,
                logits_to_keep: int = 0, **kwargs):
        """Run the base model with the encoder reading ``[P_e; X_e]`` (Lester §2); ``labels`` are the decoder's."""
        check_no_logits_to_keep(self, logits_to_keep)
        return self._forward_seq2seq(input_ids, attention_mask, labels, task_ids, inputs_embeds, **kwargs)

    def _decoder_prompt_inputs(self, prompt, labels, kwargs):
        """Decoder prompts (num_transformer_submodules=2): ``[P_dec; embed(decoder_input_ids)]``."""
        T = self.num_virtual_tokens
        dec_ids = kwargs.pop("decoder_input_ids", None)
        dec_embeds = kwargs.pop("decoder_inputs_embeds", None)
        if dec_embeds is None:
            if dec_ids is None:
                if labels is None:
                    raise ValueError("Pass labels or decoder_input_ids: the decoder needs an input.")
                dec_ids = self.base_model._shift_right(labels) if hasattr(self.base_model, "_shift_right") else None
                if dec_ids is None:
                    cfg = self.base_model.config
                    dec_ids = shift_tokens_right(labels, cfg.pad_token_id, cfg.decoder_start_token_id)  # (B, Ld)
            dec_embeds = self.word_embeddings(dec_ids)  # (B, Ld, d)
        B = dec_embeds.shape[0]
        kwargs["decoder_inputs_embeds"] = torch.cat([prompt[:, T:].to(dec_embeds.dtype), dec_embeds], dim=1)
        dec_mask = kwargs.get("decoder_attention_mask")
        if dec_mask is not None:
            kwargs["decoder_attention_mask"] = torch.cat([dec_mask.new_ones(B, T), dec_mask], dim=1)  # (B, T + Ld)
        if labels is not None:
            labels = torch.cat([labels.new_full((B, T), -100), labels], dim=1)  # (B, T + Ld)
        return labels

    def _forward_seq2seq(self, input_ids, attention_mask, labels, task_ids, inputs_embeds, **kwargs):
        T = self.num_virtual_tokens
        embeds, mask, prompt, _, _ = self._prepend(input_ids, inputs_embeds, attention_mask, task_ids)
        decoder_prompt = self.num_transformer_submodules == 2
        if decoder_prompt:
            labels = self._decoder_prompt_inputs(prompt, labels, kwargs)
        out = self.base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)
        if decoder_prompt:
            out["logits"] = out.logits[:, T:]  # (B, Ld, V)
            if out.get("decoder_hidden_states") is not None:
                out["decoder_hidden_states"] = strip_prompt(out.decoder_hidden_states, T)
        if out.get("encoder_last_hidden_state") is not None:
            out["encoder_last_hidden_state"] = out.encoder_last_hidden_state[:, T:]  # (B, L, d)
        if out.get("encoder_hidden_states") is not None:
            out["encoder_hidden_states"] = strip_prompt(out.encoder_hidden_states, T)
        return out

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, task_ids=None,
                 **generate_kwargs) -> torch.Tensor:
        """Generate with the encoder reading ``[P_e; X_e]``; returns only the new tokens, ``(B, new)``.

        With decoder prompts the decoder starts from the same ``[P_dec; <start>]`` it was trained on.
        The decoder start token is not returned.
        """
        embeds, mask, prompt, _, _ = self._prepend(input_ids, None, attention_mask, task_ids, check_vocab=True)
        if self.num_transformer_submodules == 1:
            out = self.base_model.generate(inputs_embeds=embeds, attention_mask=mask, **generate_kwargs)
            return out[:, 1:]  # drop the decoder start token
        return self._generate_with_decoder_prompt(embeds, mask, prompt, **generate_kwargs)

    def _generate_with_decoder_prompt(self, embeds, mask, prompt, **generate_kwargs):
        """Seq2seq generation whose decoder starts from ``[P_dec; <start>]``, as in training.

        Hugging Face's ``generate`` cannot take decoder embeddings, so we run the decoder once on the
        decoder prompt to fill the key/value cache, then let ``generate`` continue from that cache. The
        cached positions need placeholder ids in ``decoder_input_ids``; they are never embedded (the
        cache stands in for them) and are cut from the result.
        """
        T = self.num_virtual_tokens
        B = embeds.shape[0]
        base = self.base_model
        encoder_outputs = base.get_encoder()(inputs_embeds=embeds, attention_mask=mask, return_dict=True)
        cache = EncoderDecoderCache(DynamicCache(config=base.config), DynamicCache(config=base.config))
        base(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_inputs_embeds=prompt[:, T:].to(embeds.dtype),
             use_cache=True, **cache_kwargs(base, cache))
        start = base.config.decoder_start_token_id
        placeholder = base.config.pad_token_id if base.config.pad_token_id is not None else start
        dec_ids = torch.full((B, T + 1), placeholder, dtype=torch.long, device=embeds.device)  # (B, T + 1)
        dec_ids[:, -1] = start
        # A full-length decoder mask tells generate that the first T ids are already in the cache.
        dec_mask = torch.ones_like(dec_ids)  # (B, T + 1)
        out = base.generate(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=dec_ids,
                            decoder_attention_mask=dec_mask, **cache_kwargs(base, cache), **generate_kwargs)
        return out[:, T + 1:]  # (B, new)
