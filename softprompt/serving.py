"""Serving many prompts with one frozen model: mixed-task batches and prompt ensembles.

Lester et al. (2021, §1) point out that a prompt-tuned model is *one* frozen model plus a few
kilobytes per task, so a single batch can mix tasks: each row brings its own prompt. PEFT keeps one
active prompt per model (its ``adapter_names`` mixed batches skip prompt tuning, peft #759).
:class:`PromptBank` holds named prompts for one frozen causal LM and runs batches whose rows use
different prompts, of different lengths:

    row 0 (prompt "sst", T=4):   [p p p p][0 0][pad pad][tokens ...]
    row 1 (prompt "topic", T=6): [q q q q q q][pad][tokens .......]

Each row's prompt is left-aligned and the prefix padded (mask 0) to the longest prompt, so real token
``j`` of a row still sits at position ``T_row + j``: a row's output equals that row run alone with its
own prompt. With ``use_cache=True`` the prompts' keys and values come from per-prompt caches
(:class:`~softprompt.PromptPrefixCache`), gathered row by row, and the model only runs the inputs. A
half-precision model runs under :func:`softprompt.precision.autocast`, as in :func:`softprompt.evaluate`, so a
row's scores here and from ``evaluate`` differ by rounding only (:func:`softprompt.precision.tolerance`).

**Prompt ensembling** (Lester et al. 2021, §6, Table 3): ``P`` prompts trained on the same task see
the same input in one batch of ``B * P`` rows; the ensemble predicts the majority vote, ties broken by
the highest mean log-probability (:func:`ensemble_predict` for a few texts, :func:`evaluate_ensemble` for a split).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .eval_batches import ordered_batches, split_examples, unsort
from .evaluation import summarize
from .hf_compat import cache_kwargs
from .label_words import first_token_ids
from .positions import causal_position_ids
from .precision import autocast
from .prefix_cache import PromptPrefixCache, generate_expansion
from .prompt_model import PromptModel
from .task_ids import task_id_for

__all__ = ["PromptBank", "ensemble_predict", "majority_vote", "evaluate_ensemble"]


class PromptBank:
    """Named soft prompts for one frozen causal LM; batches whose rows use different prompts.

    Args:
        model: the frozen causal LM (a :class:`~softprompt.PromptModel` works too: its base model is used).
        tokenizer: needed by :meth:`classify` and the task-level helpers (left padding).
        use_cache: compute each prompt's keys/values once and reuse them (same outputs, less work).

    Example::

        bank = PromptBank(model, tokenizer)
        bank.add("movies", movie_prompt_model, task=load_task("sentiment_movies"))
        bank.load_dir("prompts/")                      # every saved prompt directory inside
        bank.classify(["A gripping film.", "Stocks fell."], tasks=["movies", "topic"])
    """

    def __init__(self, model: nn.Module, tokenizer=None, *, use_cache: bool = True):
        if hasattr(model, "get_prompt") and hasattr(model, "base_model"):
            model = model.base_model
        if getattr(getattr(model, "config", None), "is_encoder_decoder", False) or not hasattr(model, "generate"):
            raise ValueError(
                f"PromptBank serves causal LMs; got {type(model).__name__}. Encoder-decoder and classification "
                "models take one prompt per PromptModel."
            )
        self.model = model
        self.tokenizer = tokenizer
        self.use_cache = use_cache
        self._prompts: dict[str, torch.Tensor] = {}  # name -> (T, d)
        self._tasks: dict[str, object] = {}  # name -> Task, for classify / evaluate
        self._caches: dict[str, PromptPrefixCache] = {}

    # -- filling the bank ---------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._prompts)

    def __len__(self) -> int:
        return len(self._prompts)

    def __contains__(self, name: str) -> bool:
        return name in self._prompts

    def __getitem__(self, name: str) -> torch.Tensor:
        self._check_names([name])
        return self._prompts[name]

    def task(self, name: str):
        """The Task registered with prompt ``name`` (``add(..., task=...)``)."""
        self._check_names([name])
        if name not in self._tasks:
            raise ValueError(f"prompt {name!r} has no task; add it with bank.add({name!r}, ..., task=<Task>).")
        return self._tasks[name]

    def add(self, name: str, prompt, *, task=None, task_id: int | None = None, replace: bool = False) -> PromptBank:
        """Add a prompt under ``name``.

        ``prompt`` is a PromptModel (its current prompt is copied; ``task_id`` picks an MPT task), a
        directory saved with ``PromptModel.save_pretrained`` (or PEFT's), or a tensor ``(T, d)``.
        ``task`` (a Task) lets :meth:`classify` and ensembles format inputs and read label words.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string; got {name!r}.")
        if name in self._prompts and not replace:
            raise ValueError(f"the bank already has a prompt named {name!r}; pass replace=True to overwrite it.")
        if isinstance(prompt, (str, os.PathLike)):
            prompt = PromptModel.from_pretrained(self.model, prompt)
        if hasattr(prompt, "get_prompt"):
            if getattr(prompt, "base_model", self.model) is not self.model:
                raise ValueError(f"prompt {name!r} belongs to another base model; load it onto this bank's model.")
            task_id = task_id_for(prompt, task_id, what=f"prompt {name!r}")  # an int for an MPT prompt, else None
            with torch.no_grad():
                tensor = prompt.get_prompt(1, task_ids=task_id)[0]  # (T, d)
            tensor = tensor[: prompt.num_virtual_tokens]
        elif isinstance(prompt, torch.Tensor):
            tensor = prompt[0] if prompt.dim() == 3 and prompt.shape[0] == 1 else prompt
        else:
            raise TypeError(f"prompt must be a PromptModel, a directory or a tensor; got {type(prompt).__name__}.")
        weight = self.model.get_input_embeddings().weight
        if tensor.dim() != 2 or tensor.shape[1] != weight.shape[1] or tensor.shape[0] == 0:
            raise ValueError(
                f"prompt {name!r} has shape {tuple(tensor.shape)}; this model needs (T, {weight.shape[1]}) with T >= 1."
            )
        self._prompts[name] = tensor.detach().to(device=weight.device, dtype=weight.dtype).clone()
        self._caches.pop(name, None)
        if task is not None:
            self._tasks[name] = task
        return self

    def load_dir(self, root: str | os.PathLike, tasks: Mapping | None = None) -> list[str]:
        """Add every saved prompt directory directly under ``root``, named after its folder.

        ``tasks`` maps names to Tasks. A multitask (MPT) save adds one prompt per task, ``"<folder>/<k>"``.
        Returns the names added.
        """
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{root} is not a directory; pass the folder that holds the saved prompt folders.")
        if (root / "adapter_config.json").exists():
            raise ValueError(f"{root} is itself one saved prompt; use bank.add(name, {str(root)!r}).")
        tasks = dict(tasks or {})
        added = []
        for sub in sorted(p for p in root.iterdir() if (p / "adapter_config.json").exists()):
            pm = PromptModel.from_pretrained(self.model, sub)
            if pm.needs_task_ids:
                for k in range(int(pm.prompt_config.num_tasks)):
                    name = f"{sub.name}/{k}"
                    self.add(name, pm, task_id=k, task=tasks.get(name))
                    added.append(name)
            else:
                self.add(sub.name, pm, task=tasks.get(sub.name))
                added.append(sub.name)
        if not added:
            raise ValueError(f"no saved prompts (folders with adapter_config.json) under {root}.")
        return added

    def __repr__(self) -> str:
        rows = [f"PromptBank({type(self.model).__name__}, {len(self)} prompts, use_cache={self.use_cache})"]
        for name, p in self._prompts.items():
            task = self._tasks.get(name)
            rows.append(f"  {name!r}: T={p.shape[0]}" + (f", task={task.name!r}" if task is not None else ""))
        return "\n".join(rows)

    # -- mixed batches ------------------------------------------------------------------------------

    def _check_names(self, names: Sequence[str], batch_size: int | None = None) -> None:
        if isinstance(names, str):
            raise ValueError("names must be a list with one prompt name per row, not a single string.")
        if batch_size is not None and len(names) != batch_size:
            raise ValueError(f"names has {len(names)} entries for a batch of {batch_size} rows; give one per row.")
        unknown = sorted({n for n in names if n not in self._prompts})
        if unknown:
            raise KeyError(f"no prompt named {unknown} in the bank; it has {self.names}.")

    def max_prompt_length(self, names: Sequence[str]) -> int:
        return max(self._prompts[n].shape[0] for n in names)

    def _prefix(self, names: Sequence[str]):
        """Row prompts left-aligned and padded to the longest: embeds (B, Tmax, d), mask (B, Tmax), T (B,)."""
        lengths = torch.tensor([self._prompts[n].shape[0] for n in names])  # (B,)
        Tmax = int(lengths.max())
        embeds = torch.stack([F.pad(self._prompts[n], (0, 0, 0, Tmax - self._prompts[n].shape[0])) for n in names])
        mask = (torch.arange(Tmax) < lengths[:, None]).long()  # (B, Tmax)
        device = embeds.device
        return embeds, mask.to(device), lengths.to(device)  # (B, Tmax, d), (B, Tmax), (B,)

    def _cache_for(self, names: Sequence[str], Tmax: int):
        """One cache for the batch: each row gets its prompt's keys/values, padded to Tmax (or None)."""
        unique = list(dict.fromkeys(names))
        per_name = []
        for n in unique:
            if n not in self._caches:
                self._caches[n] = PromptPrefixCache.from_prompt(self.model, self._prompts[n])
            _, cache = self._caches[n]._fresh_cache()
            if type(cache) is not DynamicCache or any(type(layer) is not DynamicLayer for layer in cache.layers):
                return None  # sliding windows and other cache kinds: take the uncached path
            per_name.append(cache)
        rows = torch.tensor([unique.index(n) for n in names], device=self.model.device)  # (B,)
        data = []
        for li in range(len(per_name[0].layers)):
            layers = [c.layers[li] for c in per_name]
            pads = [(0, 0, 0, Tmax - layer.keys.shape[-2]) for layer in layers]  # zeros after each prompt
            keys = torch.cat([F.pad(layer.keys, p) for layer, p in zip(layers, pads)])  # (U, h, Tmax, hd)
            values = torch.cat([F.pad(layer.values, p) for layer, p in zip(layers, pads)])  # (U, h, Tmax, hd)
            data.append((keys[rows], values[rows]))  # (B, h, Tmax, hd)
        return DynamicCache(data)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                names: Sequence[str], logits_to_keep: int = 0, use_cache: bool | None = None, **kwargs):
        """The model on ``[prompt_row][prefix pad][pads][tokens]`` for every row; logits align with ``input_ids``.

        ``names`` gives each row's prompt. ``logits_to_keep=k > 0`` computes the last k positions only.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length); got shape {tuple(input_ids.shape)}.")
        self._check_names(names, input_ids.shape[0])
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("a row ends with padding: batches must be LEFT padded (tokenizer.padding_side = 'left').")
        use_cache = self.use_cache if use_cache is None else use_cache
        prefix, prefix_mask, lengths = self._prefix(names)  # (B, Tmax, d), (B, Tmax), (B,)
        Tmax = prefix.shape[1]
        full_mask = torch.cat([prefix_mask.to(attention_mask.dtype), attention_mask], dim=1)  # (B, Tmax + L)
        cache = self._cache_for(names, Tmax) if use_cache else None
        if cache is not None:
            positions = causal_position_ids(attention_mask, lengths[:, None], pad_position=0)  # (B, L): j at T_row + j
            with autocast(self.model):  # a half-precision model: as in evaluate
                return self.model(input_ids=input_ids, attention_mask=full_mask, **cache_kwargs(self.model, cache),
                                  use_cache=False, position_ids=positions, logits_to_keep=logits_to_keep, **kwargs)
        embeds = torch.cat([prefix.to(self.model.dtype), self.model.get_input_embeddings()(input_ids)], dim=1)
        positions = causal_position_ids(full_mask, pad_position=0)  # (B, Tmax + L)
        with autocast(self.model):
            out = self.model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions,
                             logits_to_keep=logits_to_keep, **kwargs)
        if not logits_to_keep:
            out["logits"] = out.logits[:, Tmax:]  # (B, L, V): the virtual positions stripped
        return out

    __call__ = forward

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
               names: Sequence[str], logits_to_keep: int = 1) -> torch.Tensor:
        """Logits ``(B, k, V)`` at the last ``k = logits_to_keep`` positions (all if 0), one prompt per row."""
        return self.forward(input_ids, attention_mask, names=names, logits_to_keep=logits_to_keep).logits

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                 names: Sequence[str], **gen_kw) -> torch.Tensor:
        """Generate with one prompt per row; returns the new tokens only ``(B, new)``."""
        self._check_names(names, input_ids.shape[0])
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        prefix, prefix_mask, _ = self._prefix(names)
        full_mask = torch.cat([prefix_mask.to(attention_mask.dtype), attention_mask], dim=1)  # (B, Tmax + L)
        # generate derives position ids from the mask (cumsum - 1): token j of a row at T_row + j.
        cache = self._cache_for(names, prefix.shape[1]) if self.use_cache else None
        if cache is not None:  # the inputs continue from the gathered prompt caches
            expand = generate_expansion(self.model, gen_kw)
            if expand > 1:
                cache.batch_repeat_interleave(expand)
            with autocast(self.model):
                out = self.model.generate(input_ids=input_ids, attention_mask=full_mask,
                                          **cache_kwargs(self.model, cache), **gen_kw)
            return out[:, input_ids.shape[1]:]  # (B, new)
        embeds = torch.cat([prefix.to(self.model.dtype), self.model.get_input_embeddings()(input_ids)], dim=1)
        with autocast(self.model):
            return self.model.generate(inputs_embeds=embeds, attention_mask=full_mask, **gen_kw)  # (B, new)

    # -- tasks --------------------------------------------------------------------------------------

    def _tokenizer(self):
        if self.tokenizer is None:
            raise ValueError("this bank has no tokenizer; build it as PromptBank(model, tokenizer).")
        if self.tokenizer.padding_side != "left":
            raise ValueError("causal LMs need a LEFT-padding tokenizer; set tokenizer.padding_side = 'left'.")
        return self.tokenizer

    def _task_inputs(self, rows: Sequence[Mapping], tasks: Sequence, num_virtual_tokens: int):
        """Format each row with its own task's template; left-pad the lot into one batch."""
        tok = self._tokenizer()
        seqs = []
        for row, task in zip(rows, tasks):
            b = task.causal_batch([dict(row, label=0)], tok, with_targets=False, num_virtual_tokens=num_virtual_tokens)
            seqs.append(b["input_ids"][0][b["attention_mask"][0].bool()])
        width = max(len(s) for s in seqs)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, L)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):], mask[i, width - len(s):] = s, 1
        return ids.to(self.model.device), mask.to(self.model.device)

    @torch.no_grad()
    def class_scores(self, rows: Sequence[Mapping], names: Sequence[str], tasks: Sequence | None = None) -> list:
        """Per row, the log-probabilities of its task's classes (rank classification, one forward pass).

        ``rows``: examples (dicts with ``text``, maybe ``text_b``); ``names``: each row's prompt;
        ``tasks``: each row's Task (default: the task registered with the row's prompt).
        Returns a list of ``(K_task,)`` tensors (tasks may differ in their number of classes).
        """
        self._check_names(names, len(rows))
        tasks = [self.task(n) for n in names] if tasks is None else list(tasks)
        ids, mask = self._task_inputs(rows, tasks, self.max_prompt_length(names))
        last = self.logits(ids, mask, names=names, logits_to_keep=1)[:, -1].float().log_softmax(-1)  # (B, V)
        firsts: dict[int, torch.Tensor] = {}
        out = []
        for i, task in enumerate(tasks):
            if id(task) not in firsts:
                firsts[id(task)] = torch.tensor(first_token_ids(task, self.tokenizer), device=last.device)
            out.append(last[i, firsts[id(task)]])  # (K,)
        return out

    def classify(self, texts: Sequence, tasks: Sequence[str], *, return_scores: bool = False):
        """Label words for ``texts``, row ``i`` classified by prompt ``tasks[i]`` and its Task, in one batch.

        A text is a string, a ``(text, text_b)`` pair, or a dict of the task's fields.
        """
        if len(texts) != len(tasks):
            raise ValueError(f"texts has {len(texts)} entries but tasks has {len(tasks)}; give one task per text.")
        rows = [_as_row(t) for t in texts]
        scores = self.class_scores(rows, tasks)
        words = [self.task(n).label_words[int(s.argmax())] for n, s in zip(tasks, scores)]
        return (words, scores) if return_scores else words

    @torch.no_grad()
    def ensemble_scores(self, task, examples, names: Sequence[str], *, max_length: int | None = None) -> torch.Tensor:
        """Log-probs ``(B, P, K)`` of every example under each of the ``P`` prompts, in one batch of B*P rows.
        ``max_length``: positions per row, the longest prompt included (None: the tokenizer's limit, if any)."""
        self._check_names(names)
        if not names:
            raise ValueError("names is empty; an ensemble needs at least one prompt.")
        tok = self._tokenizer()
        batch = task.causal_batch(examples, tok, with_targets=False, max_length=max_length,
                                  num_virtual_tokens=self.max_prompt_length(names))
        P = len(names)
        ids = batch["input_ids"].repeat_interleave(P, dim=0).to(self.model.device)  # (B*P, L)
        mask = batch["attention_mask"].repeat_interleave(P, dim=0).to(self.model.device)  # (B*P, L)
        row_names = list(names) * batch["input_ids"].shape[0]
        last = self.logits(ids, mask, names=row_names, logits_to_keep=1)[:, -1].float()  # (B*P, V)
        firsts = torch.tensor(first_token_ids(task, tok), device=last.device)
        return last.log_softmax(-1)[:, firsts].view(-1, P, len(firsts))  # (B, P, K)


def majority_vote(scores: torch.Tensor) -> dict:
    """Combine ``(B, P, K)`` member log-probs: majority vote, ties broken by the highest mean log-prob.

    Returns ``predictions (B,)``, ``votes (B, K)``, ``mean_log_probs (B, K)``, ``member_predictions (B, P)``.
    """
    if scores.dim() != 3:
        raise ValueError(f"scores must be (batch, prompts, classes); got shape {tuple(scores.shape)}.")
    members = scores.argmax(-1)  # (B, P)
    votes = F.one_hot(members, scores.shape[-1]).sum(1)  # (B, K)
    mean = scores.mean(1)  # (B, K)
    tied = votes == votes.max(-1, keepdim=True).values  # (B, K): the classes with the most votes
    predictions = mean.masked_fill(~tied, float("-inf")).argmax(-1)  # (B,)
    return {"predictions": predictions, "votes": votes, "mean_log_probs": mean, "member_predictions": members}


def ensemble_predict(bank: PromptBank, task, examples, names: Sequence[str]) -> dict:
    """Prompt ensembling (Lester et al. 2021, Table 3): ``names`` prompts vote on each example.

    ``examples``: a Dataset slice, a list of dicts, or a list of strings. Returns :func:`majority_vote`'s
    dict plus ``label_words`` (the predicted words) and ``scores`` ``(B, P, K)``.
    """
    if isinstance(examples, Sequence) and examples and isinstance(examples[0], (str, tuple)):
        examples = [dict(_as_row(e), label=0) for e in examples]
    scores = bank.ensemble_scores(task, examples, names)
    out = majority_vote(scores)
    out["scores"] = scores
    out["label_words"] = [task.label_words[int(k)] for k in out["predictions"]]
    return out


def evaluate_ensemble(bank: PromptBank, task, names: Sequence[str], split: str = "test", *, batch_size: int = 32,
                      max_examples: int | None = None, max_length: int | None = None, return_predictions: bool = False,
                      sort_by_length: bool = True, progress: bool = False) -> dict:
    """Prompt ensembling (Lester et al. 2021, §6, Table 3): the ``names`` prompts vote on ``task.splits[split]``.

    Every example runs once per prompt in one batch of ``B * P`` rows (:meth:`PromptBank.ensemble_scores`);
    the vote is :func:`majority_vote` (ties to the highest mean log-prob). The arguments mean what they
    mean for :func:`softprompt.evaluate` (rank classification only). Returns its dict (the vote's accuracy,
    ...) plus ``"members"`` (each prompt's own accuracy) and ``"ensemble"`` (the names);
    ``return_predictions`` adds ``"predictions"``, ``"labels"`` and ``"scores"`` ``(N, P, K)``.
    """
    if not isinstance(bank, PromptBank):
        raise ValueError(f"evaluate_ensemble needs a PromptBank holding the prompts {list(names)}; got a "
                         f"{type(bank).__name__}. For one PromptModel use softprompt.evaluate.")
    names = list(names)
    data = split_examples(task, split, max_examples)
    batches, order = ordered_batches(task, bank._tokenizer(), data, batch_size, sort_by_length=sort_by_length,
                                     progress=f"ensemble {task.name}/{split}" if progress else None)
    predictions, members, scores = [], [], []
    for examples in batches:
        s = bank.ensemble_scores(task, examples, names, max_length=max_length)  # (B, P, K)
        vote = majority_vote(s)
        predictions += vote["predictions"].tolist()
        members.append(vote["member_predictions"].cpu())  # (B, P)
        scores.append(s.cpu())
    predictions, labels = unsort(predictions, order), [int(y) for y in data["label"]]
    result = summarize(predictions, labels, task.label_words)
    member_preds, truth = unsort(torch.cat(members), order), torch.tensor(labels)  # (N, P), (N,)
    result["members"] = {n: float((member_preds[:, i] == truth).float().mean()) for i, n in enumerate(names)}
    result.update(method="rank", split=split, ensemble=names)
    if return_predictions:
        result.update(predictions=predictions, labels=labels, scores=unsort(torch.cat(scores), order))  # (N, P, K)
    return result


def _as_row(text) -> dict:
    if isinstance(text, Mapping):
        return dict(text)
    if isinstance(text, tuple):
        return {"text": text[0], "text_b": text[1]}
    return {"text": text}
