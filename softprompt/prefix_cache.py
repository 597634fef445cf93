"""The prompt-prefix KV cache: a soft prompt's keys and values, computed once and reused.

In prompt tuning every input starts with the *same* ``T`` virtual tokens (Lester et al. 2021, §2:
the prompt is prepended to every embedded input). In a causal LM a position only attends to the
positions before it, so the keys and values of the prompt positions never depend on the input that
follows. A model that re-runs the prompt through every layer for every example does the same work
again and again. :class:`PromptPrefixCache` runs the prompt once, ``(1, T, d)``, keeps its per-layer
keys and values, and hands every batch a copy of them expanded to ``B`` rows::

    uncached:  model([prompt][pad..pad][tokens])           every batch: B * (T + L) positions
    cached:    model([tokens], past=[prompt keys/values])  every batch: B * L positions

The layout keeps the library's convention (ARCHITECTURE.md): the prompt sits first, left padding
after it, and position ids come from the attention mask, so real token ``j`` of a row sits at
position ``T + j``. Outputs therefore equal :meth:`PromptModel.forward`'s (to float rounding:
:func:`softprompt.precision.tolerance`). A half-precision model runs under
:func:`softprompt.precision.autocast`, building the cache and using it, as in :func:`softprompt.evaluate`.

The cache is for inference: it is built under ``torch.no_grad`` and carries no gradient to the
prompt. It rebuilds itself whenever the prompt's values change (after a training step, or after
loading another prompt), so it is safe to keep one around across training and evaluation.

Training can use the same idea: :func:`shared_prompt_forward` runs the prompt once per batch with
its autograd graph kept, so the model processes ``T + B * L`` positions instead of ``B * (T + L)``
and the gradient reaches the prompt through the shared keys and values.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .enums import TaskType
from .hf_compat import cache_kwargs, output_cache
from .model_kind import model_task_type
from .positions import causal_position_ids
from .precision import autocast
from .task_ids import task_id_for

__all__ = ["PromptPrefixCache", "generate_expansion", "shared_prompt_forward"]


class _FixedPrompt:
    """A prompt tensor ``(1, T, d)`` in front of a plain causal LM, shaped like a PromptModel for the cache."""

    task_type = TaskType.CAUSAL_LM
    needs_task_ids = False

    def __init__(self, model: nn.Module, prompt: torch.Tensor):
        self.base_model, self.prompt = model, prompt

    def get_prompt(self, batch_size: int, task_ids=None) -> torch.Tensor:
        return self.prompt  # (1, T, d)


class PromptPrefixCache:
    """Keys and values of a soft prompt, computed once and reused for every batch (causal LMs only).

    Args:
        prompt_model: a causal-LM :class:`~softprompt.PromptModel`.
        task_id: for a multitask (MPT) prompt, the task whose prompt to cache (Wang et al. 2023, §3.2:
            one prompt per target task). Required iff the prompt encoder needs task ids.

    Use :meth:`from_prompt` to cache a raw prompt tensor for any causal LM instead.

    Example::

        cache = PromptPrefixCache(prompt_model)
        logits = cache.logits(batch["input_ids"], batch["attention_mask"])          # (B, 1, V)
        new_tokens = cache.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=5)
    """

    def __init__(self, prompt_model: nn.Module, task_id: int | None = None):
        for attr in ("base_model", "get_prompt"):
            if not hasattr(prompt_model, attr):
                raise TypeError(
                    f"PromptPrefixCache needs a PromptModel (with .{attr}); got {type(prompt_model).__name__}. "
                    "For a plain model and a prompt tensor use PromptPrefixCache.from_prompt(model, prompt)."
                )
        task_type = model_task_type(prompt_model) if hasattr(prompt_model, "task_type") else TaskType.CAUSAL_LM
        if task_type != TaskType.CAUSAL_LM:
            raise ValueError(
                f"PromptPrefixCache works for causal LMs only; this PromptModel has task_type="
                f"{getattr(task_type, 'value', task_type)!r}. "
                "Seq2seq models put the prompt in the encoder, which runs once per input anyway: use the model."
            )
        task_id = task_id_for(prompt_model, task_id)  # an int for a multitask (MPT) prompt, else None
        self.model = prompt_model.base_model
        self.task_id = task_id

        def prompt_fn() -> torch.Tensor:
            return prompt_model.get_prompt(1, task_ids=task_id)  # (1, T, d)

        self._prompt_fn = prompt_fn
        self._prompt: torch.Tensor | None = None  # the prompt values the cache was built from
        self._cache = None
        self.builds = 0  # how many times the prompt ran through the model (1 unless the prompt changed)

    @classmethod
    def from_prompt(cls, model: nn.Module, prompt: torch.Tensor) -> PromptPrefixCache:
        """Cache a prompt tensor ``(T, d)`` or ``(1, T, d)`` in front of any causal LM ``model``."""
        if prompt.dim() == 2:
            prompt = prompt.unsqueeze(0)  # (1, T, d)
        if prompt.dim() != 3 or prompt.shape[0] != 1:
            raise ValueError(f"prompt must have shape (T, d) or (1, T, d); got {tuple(prompt.shape)}.")
        d = model.get_input_embeddings().weight.shape[1]
        if prompt.shape[-1] != d:
            raise ValueError(f"prompt has width {prompt.shape[-1]} but the model's embeddings have d={d}.")
        return cls(_FixedPrompt(model, prompt))

    @property
    def num_virtual_tokens(self) -> int:
        """``T``: how many positions the cached prefix holds."""
        return self._fresh_cache()[0].shape[1]

    # -- building -----------------------------------------------------------------------------------

    @torch.no_grad()
    def _fresh_cache(self):
        """Return ``(prompt, cache)``, rebuilding the cache if the prompt's values changed."""
        weight = self.model.get_input_embeddings().weight
        prompt = self._prompt_fn().detach().to(dtype=weight.dtype, device=weight.device)  # (1, T, d)
        if self._cache is None or self._prompt.shape != prompt.shape or not torch.equal(self._prompt, prompt):
            T = prompt.shape[1]
            with autocast(self.model):  # a half-precision model: as every forward of the library runs
                out = self.model(
                    inputs_embeds=prompt,
                    attention_mask=torch.ones(1, T, dtype=torch.long, device=prompt.device),
                    position_ids=torch.arange(T, device=prompt.device).unsqueeze(0),  # (1, T)
                    use_cache=True,
                    logits_to_keep=1,  # the prompt's own logits are never needed
                )
            cache = output_cache(out)
            if cache is None:
                name = type(self.model).__name__
                raise ValueError(f"{name} returned no key/value cache (past_key_values); it cannot be prefix-cached.")
            self._prompt, self._cache = prompt.clone(), cache
            self.builds += 1
        return self._prompt, self._cache

    def past_key_values(self, batch_size: int):
        """A fresh copy of the prompt's cache, repeated to ``batch_size`` rows (it grows as it is used)."""
        return _repeated(self._fresh_cache()[1], batch_size)

    def _inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length); got shape {tuple(input_ids.shape)}.")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}."
            )
        if input_ids.shape[1] and bool((attention_mask[:, -1] == 0).any()):
            raise ValueError(
                "a row ends with padding: causal batches must be LEFT padded (tokenizer.padding_side = 'left')."
            )
        prompt, cache = self._fresh_cache()  # one check of the prompt per batch
        B, T = input_ids.shape[0], prompt.shape[1]
        ones = torch.ones(B, T, dtype=attention_mask.dtype, device=attention_mask.device)
        full_mask = torch.cat([ones, attention_mask], dim=1)  # (B, T + L)
        return attention_mask, full_mask, T, cache

    # -- using --------------------------------------------------------------------------------------

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, logits_to_keep: int = 1,
                **kwargs):
        """The base model's output on ``[prompt][pads][tokens]``, with the prompt read from the cache.

        ``logits`` cover the input positions only (like :meth:`PromptModel.forward`): ``(B, L, V)``, or
        the last ``logits_to_keep`` positions when it is > 0 (the default 1: rank classification reads
        only the last position of a left-padded row).
        """
        attention_mask, full_mask, T, cache = self._inputs(input_ids, attention_mask)
        with autocast(self.model):
            return self.model(
                input_ids=input_ids,                                         # (B, L)
                attention_mask=full_mask,                                    # (B, T + L)
                position_ids=causal_position_ids(attention_mask, T, pad_position=0),  # (B, L)
                **cache_kwargs(self.model, _repeated(cache, input_ids.shape[0])),
                use_cache=False,
                logits_to_keep=logits_to_keep,
                **kwargs,
            )

    __call__ = forward

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               logits_to_keep: int = 1) -> torch.Tensor:
        """Logits ``(B, k, V)`` at the last ``k = logits_to_keep`` input positions (all ``L`` if 0)."""
        return self.forward(input_ids, attention_mask, logits_to_keep=logits_to_keep).logits

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **gen_kw) -> torch.Tensor:
        """``model.generate`` continuing from the cached prompt; returns the new tokens only ``(B, new)``.

        Hugging Face ``generate`` accepts a pre-filled cache with only the new input ids as long as
        the attention mask covers the full sequence (prompt + input); it then derives the same
        position ids from the mask as the uncached path does.
        """
        attention_mask, full_mask, _, cache = self._inputs(input_ids, attention_mask)
        for key in ("past_key_values", "cache", "inputs_embeds", "position_ids"):
            if key in gen_kw:
                raise ValueError(f"{key}= cannot be passed to PromptPrefixCache.generate: the cache supplies it.")
        rows = input_ids.shape[0] * generate_expansion(self.model, gen_kw)
        with autocast(self.model):
            out = self.model.generate(input_ids=input_ids, attention_mask=full_mask,
                                      **cache_kwargs(self.model, _repeated(cache, rows)), **gen_kw)
        sequences = out.sequences if hasattr(out, "sequences") else out
        return sequences[:, input_ids.shape[1]:]  # (B, new)


def shared_prompt_forward(prompt_model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          labels: torch.Tensor | None = None, *, logits_to_keep: int = 0, task_id: int | None = None,
                          num_items_in_batch=None):
    """:meth:`PromptModel.forward` for training, with the prompt run through the model once per batch.

    The same observation as the cache, made differentiable: the prompt positions come first, so their
    hidden states are the same in every row. Instead of ``B * (T + L)`` positions the model runs
    ``T + B * L``: the prompt once as ``(1, T, d)`` (keeping its keys/values, with their autograd
    graph), then the inputs of all rows on top of those keys/values repeated to ``B`` rows. The
    gradient reaches the prompt through the keys/values. Same loss and gradients as
    ``prompt_model(input_ids, attention_mask, labels, logits_to_keep=k)`` (to float rounding) when the
    base model has no dropout (Llama; GPT-2 in eval mode): dropout would draw one mask for the shared
    prompt positions instead of one per row. ``task_id``: one MPT task for the whole batch.
    """
    if not hasattr(prompt_model, "task_type") or model_task_type(prompt_model) != TaskType.CAUSAL_LM:
        raise ValueError("shared_prompt_forward is for causal-LM PromptModels; call the PromptModel itself.")
    base = prompt_model.base_model
    B, L = input_ids.shape
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    T = prompt_model.num_virtual_tokens
    task_id = task_id_for(prompt_model, task_id)  # an int for a multitask (MPT) prompt, else None
    weight = base.get_input_embeddings().weight
    prompt = prompt_model.get_prompt(1, task_ids=task_id)[:, :T].to(weight.dtype)  # (1, T, d), with grad
    ones = torch.ones(1, T, dtype=attention_mask.dtype, device=attention_mask.device)
    past = output_cache(base(inputs_embeds=prompt, attention_mask=ones, use_cache=True, logits_to_keep=1,
                             position_ids=torch.arange(T, device=prompt.device)[None]))
    if B != 1:
        past.batch_repeat_interleave(B)  # differentiable: the B rows share one graph back to the prompt
    out = base(
        input_ids=input_ids,                                                         # (B, L)
        attention_mask=torch.cat([ones.expand(B, T), attention_mask], dim=1),        # (B, T + L)
        position_ids=causal_position_ids(attention_mask, T, pad_position=0),                  # (B, L)
        **cache_kwargs(base, past),
        use_cache=False,
        logits_to_keep=logits_to_keep,
    )
    if labels is not None:
        k = logits_to_keep or L
        out["loss"] = base.loss_function(logits=out.logits, labels=labels[:, -k:], vocab_size=out.logits.shape[-1],
                                         num_items_in_batch=num_items_in_batch)
    return out


def _repeated(cache, batch_size: int):
    """A copy of a one-row cache with ``batch_size`` rows; the model grows the copy, never the original."""
    past = copy.deepcopy(cache)
    if batch_size != 1:
        past.batch_repeat_interleave(batch_size)
    return past


def generate_expansion(model: nn.Module, gen_kw: dict) -> int:
    """How many rows ``generate`` makes of each input row (beams, returned sequences).

    ``generate`` repeats ``input_ids`` and the mask that many times, but not a cache it is handed,
    so a pre-filled prompt cache must be repeated to match.
    """
    config = gen_kw.get("generation_config") or getattr(model, "generation_config", None)
    beams = gen_kw.get("num_beams") or getattr(config, "num_beams", 1) or 1
    returns = gen_kw.get("num_return_sequences") or getattr(config, "num_return_sequences", 1) or 1
    return max(int(beams), int(returns))
