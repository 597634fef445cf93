"""Multitask prompt tuning (MPT): one shared prompt, a rank-r update per task (Wang et al. 2023, §3.1).

Task k's prompt is the shared prompt P* (T×d) times, element by element, a low-rank task matrix (§3.1)::

    P_k = P* ⊙ W_k,    W_k = u_k v_kᵀ,    u_k ∈ R^{T×r},  v_k ∈ R^{r×d}    (the paper: r = 1)

PEFT's names: ``embedding.weight`` = P* (saved as ``prompt_embeddings``), ``prefix_task_cols`` = u,
``prefix_task_rows`` = v. P* starts as a vanilla prompt, or from a source (§3.2, :mod:`softprompt.mpt_init`); u, v
start at ``u_k v_kᵀ = 1`` (IDENTITY: P_k = P*, so P*'s init survives), not PEFT's P_k ≈ 4e-4·P* (kept as PEFT).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .config import PromptTuningConfig, PromptTuningInit
from .config_checks import check_mpt_config, check_mpt_tensors
from .config_dicts import mpt_peft_dict
from .enums import SOURCE_INITS, MultitaskPromptTuningInit, TaskFactorInit
from .mpt_init import initial_task_factors, load_source_tensors, source_start
from .prompt_embedding import PromptEmbedding
from .task_ids import as_task_ids, check_task_id

__all__ = ["MultitaskPromptTuningInit", "TaskFactorInit", "MultitaskPromptTuningConfig", "MultitaskPromptEmbedding",
           "load_source_tensors", "SOURCE_INITS"]


@dataclass
class MultitaskPromptTuningConfig(PromptTuningConfig):
    """An MPT prompt (Wang et al. 2023): PEFT's fields plus our ``task_factor_*``; PromptTuningConfig's apply to P*.

    A target task from a source (§3.2): ``prompt_tuning_init="AVERAGE_SOURCE_TASKS"``, and the source's directory
    or .safetensors file in ``prompt_tuning_init_state_dict_path``."""

    peft_type: ClassVar[str] = "MULTITASK_PROMPT_TUNING"
    prompt_tuning_init: MultitaskPromptTuningInit | str = field(default=MultitaskPromptTuningInit.RANDOM, metadata={
        "help": "RANDOM, SAMPLE_VOCAB, TEXT, CLASS_LABELS (P* only) or, from a source file (§3.2), "
                "AVERAGE_SOURCE_TASKS, EXACT_SOURCE_TASK, ONLY_SOURCE_SHARED."})
    prompt_tuning_init_state_dict_path: str | None = field(default=None, metadata={
        "help": "The source for the *_SOURCE_* inits: a saved prompt directory or a .safetensors file."})
    prompt_tuning_init_task: int | None = field(default=0, metadata={"help": "EXACT_SOURCE_TASK: the source task k."})
    num_ranks: int | None = field(default=1, metadata={"help": "Rank r of each task matrix u_k v_kᵀ (paper: 1)."})
    num_tasks: int | None = field(default=1, metadata={"help": "Number of tasks K (rows of the task factors)."})
    task_factor_init: TaskFactorInit | str = field(default=TaskFactorInit.IDENTITY, metadata={
        "help": "IDENTITY: u v^T = 1, P_k = P* at step 0 (default); PEFT: N(0, 0.02^2), for parity."})
    task_factor_noise: float = field(default=0.1, metadata={"help": "IDENTITY: std of the noise telling ranks apart."})

    def __post_init__(self):
        check_mpt_config(self)  # the vanilla checks for P*, then MPT's own; see softprompt.config_checks

    @property
    def shared_prompt_config(self) -> PromptTuningConfig:
        """The vanilla config that initializes P* (RANDOM for the source inits: P* is then read from the file)."""
        init = self.prompt_tuning_init
        base = PromptTuningInit.RANDOM if init in SOURCE_INITS else PromptTuningInit(init.value)
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(PromptTuningConfig)}
        reads_words = base in (PromptTuningInit.TEXT, PromptTuningInit.CLASS_LABELS)
        kwargs.update(prompt_tuning_init=base, tokenizer_kwargs=self.tokenizer_kwargs if reads_words else None)
        return PromptTuningConfig(**kwargs)

    def peft_dict(self) -> dict:
        """PEFT's keys only, with values PEFT's ``MultitaskPromptTuningConfig`` accepts (see ``mpt_peft_dict``)."""
        return mpt_peft_dict(self)


class MultitaskPromptEmbedding(nn.Module):
    """The MPT prompt encoder: ``P_k = P* ⊙ (u_k v_kᵀ)`` for each row's task k (Wang et al. 2023, §3.1).

    Arguments as for :class:`~softprompt.PromptEmbedding` (they serve P*'s init).
    Input: indices ``(B, T)``, task_ids ``(B,)``; output ``(B, T, d)``: row b is ``P_{task_ids[b]}``."""

    needs_task_ids = True

    def __init__(self, config: MultitaskPromptTuningConfig, word_embeddings: nn.Module, tokenizer=None):
        super().__init__()
        d = word_embeddings.weight.shape[1]
        self.config = config = config if config.token_dim is not None else config.replace(token_dim=d)
        self.num_tasks, self.num_ranks = config.num_tasks, config.num_ranks
        source = config.prompt_tuning_init in SOURCE_INITS  # then P* is read from a file: no vanilla init
        shared = config.shared_prompt_config.replace(inference_mode=config.inference_mode or source)
        self.embedding = PromptEmbedding(shared, word_embeddings, tokenizer).embedding  # P*: (T, d), Lester §3.2
        u, v = initial_task_factors(config, d, word_embeddings.weight.device)  # IDENTITY (u v^T = 1) or PEFT's
        self.prefix_task_cols, self.prefix_task_rows = nn.Parameter(u), nn.Parameter(v)  # (K, T, r), (K, r, d)
        if source and not config.inference_mode:  # inference_mode: the weights are about to be loaded (as PEFT)
            self.init_from_source(load_source_tensors(config.prompt_tuning_init_state_dict_path),
                                  config.prompt_tuning_init, task=config.prompt_tuning_init_task)

    @torch.no_grad()
    def init_from_source(self, tensors: dict[str, torch.Tensor],
                         mode: MultitaskPromptTuningInit | str = "AVERAGE_SOURCE_TASKS", task: int | None = 0) -> None:
        """Start from a source prompt (Wang et al. §3.2): see :func:`softprompt.mpt_init.source_start`; all K alike."""
        _, T, r = self.prefix_task_cols.shape
        p_star, cols, rows = source_start(tensors, mode, task, T, r, self.prefix_task_rows.shape[-1])
        if cols is not None:
            self.prefix_task_cols.copy_(cols.expand_as(self.prefix_task_cols))  # (1, T, r) -> (K, T, r)
            self.prefix_task_rows.copy_(rows.expand_as(self.prefix_task_rows))  # (1, r, d) -> (K, r, d)
        self.embedding.weight.copy_(p_star)  # P*: (T, d)

    def forward(self, indices: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Virtual token indices ``(B, T)`` (any device) and ``task_ids`` ``(B,)`` -> task prompts ``(B, T, d)``."""
        indices = indices.to(self.embedding.weight.device)  # (B, T)
        task_ids = as_task_ids(task_ids, indices.shape[0], self.num_tasks, self.embedding.weight.device)  # (B,)
        p_star = self.embedding(indices)  # P*: (B, T, d)
        u = self.prefix_task_cols.index_select(0, task_ids)  # u_k: (B, T, r)
        v = self.prefix_task_rows.index_select(0, task_ids)  # v_k: (B, r, d)
        return p_star * torch.matmul(u, v)  # P* ⊙ (u_k v_kᵀ): (B, T, d)

    @property
    def shared_prompt(self) -> torch.Tensor:
        """P*, ``(T, d)``."""
        return self.embedding.weight

    weight = shared_prompt  # P*, what PromptEmbedding.weight is for a vanilla prompt

    def task_matrix(self, task_id: int) -> torch.Tensor:
        """``W_k = u_k v_kᵀ``, ``(T, d)``."""
        task_id = check_task_id(task_id, self.num_tasks)
        return self.prefix_task_cols[task_id] @ self.prefix_task_rows[task_id]  # (T, r) @ (r, d) -> (T, d)

    def task_prompt(self, task_id: int) -> torch.Tensor:
        """``P_k = P* ⊙ W_k``, ``(T, d)``: the prompt task ``task_id`` sees."""
        return self.embedding.weight * self.task_matrix(task_id)  # (T, d); task_matrix checks task_id

    def task_prompts(self) -> torch.Tensor:
        """All task prompts, ``(K, T, d)``."""
        return self.embedding.weight.unsqueeze(0) * (self.prefix_task_cols @ self.prefix_task_rows)  # (K, T, d)

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """What goes into ``adapter_model.safetensors``: PEFT's three keys."""
        return {"prompt_embeddings": self.embedding.weight.detach(),  # P*: (T, d)
                "prefix_task_cols": self.prefix_task_cols.detach(),  # u: (K, T, r)
                "prefix_task_rows": self.prefix_task_rows.detach()}  # v: (K, r, d)

    @torch.no_grad()
    def load_adapter_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load :meth:`adapter_tensors` output (ours or PEFT's file), checking names and shapes."""
        check_mpt_tensors(tensors, {k: tuple(v.shape) for k, v in self.adapter_tensors().items()})
        self.embedding.weight.copy_(tensors["prompt_embeddings"])  # P*: (T, d)
        self.prefix_task_cols.copy_(tensors["prefix_task_cols"])  # u: (K, T, r)
        self.prefix_task_rows.copy_(tensors["prefix_task_rows"])  # v: (K, r, d)

    def extra_repr(self) -> str:
        c = self.config
        return (f"init={c.prompt_tuning_init.value}, T={c.total_virtual_tokens}, d={c.token_dim}, "
                f"num_tasks={c.num_tasks}, num_ranks={c.num_ranks}, task_factor_init={c.task_factor_init.value}")
