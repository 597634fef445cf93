"""Multitask prompt tuning (MPT): one shared prompt, a rank-r update per task (Wang et al. 2023, §3.1).

MPT writes the prompt of task k as the shared prompt ``P*`` (T×d) times, element by element, a
low-rank task matrix (Wang et al. §3.1, "prompt decomposition")::

    P_k = P* ⊙ W_k,    W_k = u_k v_kᵀ,    u_k ∈ R^{T×r},  v_k ∈ R^{r×d}

(the paper uses rank r = 1: ``u_k ∈ R^T``, ``v_k ∈ R^d``). ``P*`` carries what the tasks share;
``u_k``, ``v_k`` are a few hundred numbers per task. The tensors have PEFT's names and shapes, so
files move between the two libraries: ``embedding.weight`` = P* ``(T, d)`` (saved as
``prompt_embeddings``), ``prefix_task_cols`` = the u_k ``(K, T, r)``, ``prefix_task_rows`` = the
v_k ``(K, r, d)``.

Initialization (``MultitaskPromptTuningConfig.prompt_tuning_init``): P* starts as a vanilla prompt
does (RANDOM, SAMPLE_VOCAB, TEXT, CLASS_LABELS) or from a source MPT file (Wang et al. §3.2, target
adaptation): AVERAGE_SOURCE_TASKS (P*, mean u, mean v), EXACT_SOURCE_TASK (P*, u_k, v_k of one source
task) or ONLY_SOURCE_SHARED (P* only).

**One deliberate difference from PEFT** (``task_factor_init``). PEFT draws u and v from N(0, 0.02²),
so at step 0 ``W_k`` has entries of about 0.02·0.02·√r ≈ 4e-4 and ``P_k ≈ 4e-4·P*``: a text,
class-label or source init of P* is thrown away, the model first sees an all-but-zero prompt, and the
gradient reaching P* is scaled down by the same 4e-4. Our default, ``IDENTITY``, starts at
``u_k v_kᵀ = 1`` exactly, so ``P_k = P*`` at step 0 and every P* init survives: ``v_k = 1/r`` and
``u_k = 1 + ε``, where the noise ε (std ``task_factor_noise``) has zero mean across the r ranks of
each row. That keeps ``u_k v_kᵀ = 1`` exact while making the r rank-one components differ, so they
do not stay copies of each other (for r = 1 the noise vanishes). ``PEFT`` reproduces PEFT's draws
(same order, same torch RNG) for parity tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from .config import PromptTuningConfig, PromptTuningInit, _enum
from .initialization import make_generator
from .task_ids import as_task_ids, check_task_id

__all__ = [
    "MultitaskPromptTuningInit", "TaskFactorInit", "MultitaskPromptTuningConfig", "MultitaskPromptEmbedding",
    "load_source_tensors",
]


class MultitaskPromptTuningInit(str, Enum):
    """How P* (and, from a source, the task factors) start out. PEFT's five modes plus two of Lester's."""

    RANDOM = "RANDOM"  # P* random (vanilla prompt init)
    SAMPLE_VOCAB = "SAMPLE_VOCAB"  # P* = sampled vocabulary embeddings (not in PEFT's MPT)
    TEXT = "TEXT"  # P* = embeddings of prompt_tuning_init_text
    CLASS_LABELS = "CLASS_LABELS"  # P* = label word embeddings, Lester §3.2 (not in PEFT)
    AVERAGE_SOURCE_TASKS = "AVERAGE_SOURCE_TASKS"  # P*, mean_k u_k, mean_k v_k of a source file (Wang §3.2)
    EXACT_SOURCE_TASK = "EXACT_SOURCE_TASK"  # P*, u_k, v_k of source task k = prompt_tuning_init_task
    ONLY_SOURCE_SHARED = "ONLY_SOURCE_SHARED"  # P* of a source file; fresh task factors


SOURCE_INITS = (
    MultitaskPromptTuningInit.AVERAGE_SOURCE_TASKS,
    MultitaskPromptTuningInit.EXACT_SOURCE_TASK,
    MultitaskPromptTuningInit.ONLY_SOURCE_SHARED,
)


class TaskFactorInit(str, Enum):
    """How the task factors u_k, v_k start when they are not read from a source."""

    IDENTITY = "IDENTITY"  # u_k v_kᵀ = 1 exactly: P_k = P* at step 0 (ours, the default)
    PEFT = "PEFT"  # u, v ~ N(0, 0.02²): P_k ≈ 4e-4 · P* at step 0 (PEFT, for parity)


# Our fields that PEFT's MultitaskPromptTuningConfig does not have (kept out of adapter_config.json).
_MPT_PEFT_KEYS = ("prompt_tuning_init_state_dict_path", "prompt_tuning_init_task", "num_ranks", "num_tasks")


@dataclass
class MultitaskPromptTuningConfig(PromptTuningConfig):
    """Configuration of an MPT prompt (Wang et al. 2023): PEFT's fields, plus ours.

    Everything of :class:`~softprompt.PromptTuningConfig` applies to the shared prompt P*.
    Example (a target task, starting from the average of three source tasks)::

        config = MultitaskPromptTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=8, num_tasks=1, num_ranks=1,
            prompt_tuning_init="AVERAGE_SOURCE_TASKS",
            prompt_tuning_init_state_dict_path="runs/mpt_source")   # a directory or a .safetensors file
    """

    peft_type: ClassVar[str] = "MULTITASK_PROMPT_TUNING"

    prompt_tuning_init: MultitaskPromptTuningInit | str = field(
        default=MultitaskPromptTuningInit.RANDOM,
        metadata={"help": "RANDOM, SAMPLE_VOCAB, TEXT, CLASS_LABELS (P* only) or AVERAGE_SOURCE_TASKS, "
                          "EXACT_SOURCE_TASK, ONLY_SOURCE_SHARED (from a source file)."},
    )
    prompt_tuning_init_state_dict_path: str | None = field(
        default=None,
        metadata={"help": "The source for the *_SOURCE_* inits: a saved prompt directory or a .safetensors file."},
    )
    prompt_tuning_init_task: int | None = field(
        default=0, metadata={"help": "For EXACT_SOURCE_TASK: which source task's u_k, v_k to start from."}
    )
    num_ranks: int | None = field(default=1, metadata={"help": "Rank r of each task matrix u_k v_kᵀ (paper: 1)."})
    num_tasks: int | None = field(default=1, metadata={"help": "Number of tasks K (rows of the task factors)."})
    # --- ours ---
    task_factor_init: TaskFactorInit | str = field(
        default=TaskFactorInit.IDENTITY,
        metadata={"help": "IDENTITY: u v^T = 1, P_k = P* at step 0 (default); PEFT: N(0, 0.02^2), for parity."},
    )
    task_factor_noise: float = field(
        default=0.1, metadata={"help": "IDENTITY init: std of the zero-mean noise that tells the r ranks apart."}
    )

    def __post_init__(self):
        init = _enum(MultitaskPromptTuningInit, self.prompt_tuning_init, "prompt_tuning_init")
        # The parent validates the init of P*; a source init reads P* from a file, so P* itself is "RANDOM".
        self.prompt_tuning_init = PromptTuningInit.RANDOM if init in SOURCE_INITS else PromptTuningInit(init.value)
        super().__post_init__()
        self.prompt_tuning_init = init

        for name in ("num_tasks", "num_ranks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                what = "the number of tasks K" if name == "num_tasks" else "the rank r of each task matrix"
                raise ValueError(f"{name}={value!r} must be a positive int ({what}), e.g. {name}=1.")
        self.task_factor_init = _enum(TaskFactorInit, self.task_factor_init, "task_factor_init")
        if not isinstance(self.task_factor_noise, (int, float)) or self.task_factor_noise < 0:
            raise ValueError(f"task_factor_noise={self.task_factor_noise!r} must be a float >= 0, e.g. 0.1.")
        task = self.prompt_tuning_init_task
        if task is not None:  # the index of a source task: an int >= 0 (its range is checked against the source)
            task = self.prompt_tuning_init_task = check_task_id(task, None, "prompt_tuning_init_task", "the source")
        if init in SOURCE_INITS and not self.prompt_tuning_init_state_dict_path:
            raise ValueError(
                f"prompt_tuning_init={init.value!r} reads a source prompt: set prompt_tuning_init_state_dict_path "
                "to a saved MPT prompt directory or its adapter_model.safetensors."
            )
        if init == MultitaskPromptTuningInit.EXACT_SOURCE_TASK and task is None:
            raise ValueError("prompt_tuning_init='EXACT_SOURCE_TASK' needs prompt_tuning_init_task, e.g. 0.")

    @property
    def shared_prompt_config(self) -> PromptTuningConfig:
        """The vanilla config that initializes P* (RANDOM for the source inits: P* is then read from the file)."""
        init = self.prompt_tuning_init
        base = PromptTuningInit.RANDOM if init in SOURCE_INITS else PromptTuningInit(init.value)
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(PromptTuningConfig)}
        kwargs["prompt_tuning_init"] = base
        if base not in (PromptTuningInit.TEXT, PromptTuningInit.CLASS_LABELS):
            kwargs["tokenizer_kwargs"] = None
        return PromptTuningConfig(**kwargs)

    def peft_dict(self) -> dict:
        """PEFT's keys only, with values PEFT's ``MultitaskPromptTuningConfig`` accepts.

        PEFT re-reads ``prompt_tuning_init_state_dict_path`` whenever the init is a source init, also when
        it loads a trained prompt; the init has done its work once the prompt is trained, so the file says
        ``RANDOM`` then (the full config is in the sidecar). CLASS_LABELS and SAMPLE_VOCAB are not MPT inits
        in PEFT: ``RANDOM`` too.
        """
        shared = self.shared_prompt_config
        if self.prompt_tuning_init == MultitaskPromptTuningInit.TEXT:
            out = shared.peft_dict()
        else:
            out = dataclasses.replace(shared, prompt_tuning_init=PromptTuningInit.RANDOM, tokenizer_kwargs=None,
                                      prompt_tuning_class_labels=None).peft_dict()
        out.update({k: getattr(self, k) for k in _MPT_PEFT_KEYS})
        out["prompt_tuning_init_state_dict_path"] = None
        out["peft_type"] = self.peft_type
        return out


def load_source_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a source prompt: a saved prompt directory (ours or PEFT's) or a ``.safetensors`` file.

    Never unpickles: PEFT also accepts a ``torch.save`` file here; we refuse it with the conversion recipe.
    """
    from .adapter_files import ADAPTER_WEIGHTS_NAME, load_adapter

    path = Path(path)
    if path.is_dir():
        return load_adapter(path)[1]
    if not path.exists():
        raise ValueError(
            f"prompt_tuning_init_state_dict_path={str(path)!r} does not exist; pass the directory a source "
            f"MPT prompt was saved to (save_pretrained), or its {ADAPTER_WEIGHTS_NAME}."
        )
    if path.suffix != ".safetensors":
        raise ValueError(
            f"{path} is not a .safetensors file; softprompt never unpickles (.bin/.pt can run code). Convert it "
            "once if you trust it: save_file(torch.load(path, weights_only=True), 'adapter_model.safetensors')."
        )
    from safetensors.torch import load_file

    return load_file(path)


class MultitaskPromptEmbedding(nn.Module):
    """The MPT prompt encoder: ``P_k = P* ⊙ (u_k v_kᵀ)`` for each row's task k (Wang et al. 2023, §3.1).

    Args:
        config: a :class:`MultitaskPromptTuningConfig` (``token_dim`` may be None: taken from the model).
        word_embeddings: the base model's input embeddings; read for the init of P*, never changed.
        tokenizer: for TEXT / CLASS_LABELS init of P* (else ``config.tokenizer_name_or_path`` is loaded).

    Parameters (PEFT's names and shapes): ``embedding`` (nn.Embedding, weight = P*, ``(T, d)``),
    ``prefix_task_cols`` (the u_k, ``(K, T, r)``), ``prefix_task_rows`` (the v_k, ``(K, r, d)``),
    where T = ``config.total_virtual_tokens``, K = ``num_tasks``, r = ``num_ranks``.

    Input: indices ``(B, T)`` and task_ids ``(B,)``; output ``(B, T, d)``: row b is ``P_{task_ids[b]}``.
    """

    needs_task_ids = True

    def __init__(self, config: MultitaskPromptTuningConfig, word_embeddings: nn.Module, tokenizer=None):
        super().__init__()
        from .prompt_embedding import PromptEmbedding

        d = word_embeddings.weight.shape[1]
        if config.token_dim is None:
            config = dataclasses.replace(config, token_dim=d)
        self.config = config
        self.num_tasks, self.num_ranks = config.num_tasks, config.num_ranks
        T, K, r = config.total_virtual_tokens, config.num_tasks, config.num_ranks
        device = word_embeddings.weight.device

        # P*, the shared prompt: initialized as a vanilla prompt would be (Lester §3.2), or from a source below.
        shared = config.shared_prompt_config
        if config.prompt_tuning_init in SOURCE_INITS:
            shared = dataclasses.replace(shared, inference_mode=True)  # no init work: the file provides P*
        self.embedding = PromptEmbedding(shared, word_embeddings, tokenizer).embedding  # P*: (T, d)
        # u_k and v_k, PEFT's draw order: cols, then rows, from torch's global RNG (replaced below if IDENTITY).
        self.prefix_task_cols = nn.Parameter(torch.normal(0.0, 0.02, size=(K, T, r), device=device))  # u: (K, T, r)
        self.prefix_task_rows = nn.Parameter(torch.normal(0.0, 0.02, size=(K, r, d), device=device))  # v: (K, r, d)
        if config.inference_mode:
            return  # the weights are about to be loaded (PEFT skips init work too)
        if config.task_factor_init == TaskFactorInit.IDENTITY:
            self.reset_task_factors()
        if config.prompt_tuning_init in SOURCE_INITS:
            self.init_from_source(
                load_source_tensors(config.prompt_tuning_init_state_dict_path),
                config.prompt_tuning_init,
                task=config.prompt_tuning_init_task,
            )

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_task_factors(self, noise: float | None = None) -> None:
        """IDENTITY init: ``u_k v_kᵀ = 1`` exactly, so every task prompt equals P* (see the module docstring).

        ``v_k = 1/r``; ``u_k = 1 + ε`` with ε ~ N(0, noise²) centred across the r ranks of each row, which
        keeps ``Σ_j u_ij v_jc = 1`` while breaking the symmetry between the rank-one components.
        """
        noise = self.config.task_factor_noise if noise is None else noise
        K, T, r = self.prefix_task_cols.shape
        seed = self.config.seed
        gen = make_generator(None if seed is None else seed + 1)  # not the P* init's stream
        eps = torch.randn(K, T, r, generator=gen) * noise  # (K, T, r)
        eps = eps - eps.mean(dim=-1, keepdim=True)  # zero mean over the ranks: Σ_j ε_ij = 0
        self.prefix_task_cols.copy_(1.0 + eps.to(self.prefix_task_cols.device))  # u: (K, T, r)
        self.prefix_task_rows.fill_(1.0 / r)  # v: (K, r, d)

    @torch.no_grad()
    def init_from_source(self, tensors: dict[str, torch.Tensor],
                         mode: MultitaskPromptTuningInit | str = "AVERAGE_SOURCE_TASKS", task: int | None = 0) -> None:
        """Start from a trained source prompt (Wang et al. §3.2, target adaptation).

        ``tensors`` holds ``prompt_embeddings`` (P*) and, except for ONLY_SOURCE_SHARED, the source's
        ``prefix_task_cols`` / ``prefix_task_rows``. AVERAGE_SOURCE_TASKS takes the mean u and the mean v
        over the source tasks (PEFT's rule; note that ``mean(u) mean(v)ᵀ`` is not ``mean(u vᵀ)``),
        EXACT_SOURCE_TASK those of source task ``task``. Every one of our K tasks starts from that
        same factor pair (PEFT requires K = 1 here). A vanilla prompt file works for ONLY_SOURCE_SHARED.
        """
        mode = _enum(MultitaskPromptTuningInit, mode, "mode")
        if mode not in SOURCE_INITS:
            raise ValueError(f"mode={mode.value!r} is not a source init; use one of {[m.value for m in SOURCE_INITS]}.")
        if "prompt_embeddings" not in tensors:
            raise ValueError(f"The source has no 'prompt_embeddings' (P*); its tensors are {sorted(tensors)}.")
        p_star = tensors["prompt_embeddings"]
        if tuple(p_star.shape) != tuple(self.embedding.weight.shape):
            raise ValueError(
                f"The source's prompt_embeddings (P*) has shape {tuple(p_star.shape)}, this prompt needs "
                f"{tuple(self.embedding.weight.shape)} (total_virtual_tokens, token_dim): set num_virtual_tokens "
                "to the source's and use the source's base model."
            )
        if mode != MultitaskPromptTuningInit.ONLY_SOURCE_SHARED:
            cols, rows = self._source_factors(tensors, mode, task)  # (1, T, r), (1, r, d)
            self.prefix_task_cols.copy_(cols.expand_as(self.prefix_task_cols))
            self.prefix_task_rows.copy_(rows.expand_as(self.prefix_task_rows))
        self.embedding.weight.copy_(p_star)

    def _source_factors(self, tensors, mode, task):
        missing = [k for k in ("prefix_task_cols", "prefix_task_rows") if k not in tensors]
        if missing:
            raise ValueError(
                f"prompt_tuning_init={mode.value!r} needs the source's task factors, but it has no {missing} "
                "(a vanilla prompt?). Use ONLY_SOURCE_SHARED to start from its prompt alone."
            )
        cols, rows = tensors["prefix_task_cols"], tensors["prefix_task_rows"]
        _, T, r = self.prefix_task_cols.shape
        d = self.prefix_task_rows.shape[-1]
        if cols.dim() != 3 or rows.dim() != 3 or cols.shape[0] != rows.shape[0]:
            raise ValueError(
                f"The source's prefix_task_cols {tuple(cols.shape)} and prefix_task_rows {tuple(rows.shape)} do not "
                "fit each other: expected (K, T, r) and (K, r, d) with the same K. The file is damaged or not MPT."
            )
        K_src = cols.shape[0]
        if cols.shape[2] != r or rows.shape[1] != r:
            raise ValueError(
                f"The source has num_ranks={cols.shape[2]}, this config num_ranks={r}: set num_ranks={cols.shape[2]}."
            )
        if cols.shape[1] != T or rows.shape[2] != d:
            raise ValueError(
                f"The source's task factors are for T={cols.shape[1]}, d={rows.shape[2]}; this prompt has T={T}, "
                f"d={d}: use the source's num_virtual_tokens and base model."
            )
        if mode == MultitaskPromptTuningInit.AVERAGE_SOURCE_TASKS:
            return cols.mean(0, keepdim=True), rows.mean(0, keepdim=True)  # (1, T, r), (1, r, d)
        if task is None:
            raise ValueError(f"prompt_tuning_init_task=None is not a task of the source, which has num_tasks={K_src}: "
                             f"use a task id in 0..{K_src - 1}.")
        task = check_task_id(task, K_src, "prompt_tuning_init_task", owner="the source")
        return cols[task : task + 1], rows[task : task + 1]  # (1, T, r), (1, r, d)

    # ------------------------------------------------------------------ forward
    def forward(self, indices: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        """Virtual token indices ``(B, T)`` and ``task_ids`` ``(B,)`` -> task prompts ``(B, T, d)`` (§3.1).

        ``indices`` may live on any device (``torch.arange(T)[None]`` built on CPU): they move to the prompt's.
        """
        indices = indices.to(self.embedding.weight.device)  # (B, T)
        task_ids = as_task_ids(task_ids, indices.shape[0], self.num_tasks, self.embedding.weight.device)  # (B,)
        p_star = self.embedding(indices)  # P*: (B, T, d)
        u = self.prefix_task_cols.index_select(0, task_ids)  # u_k: (B, T, r)
        v = self.prefix_task_rows.index_select(0, task_ids)  # v_k: (B, r, d)
        return p_star * torch.matmul(u, v)  # P* ⊙ (u_k v_kᵀ): (B, T, d)

    # ------------------------------------------------------------------ reading the prompts
    @property
    def shared_prompt(self) -> torch.Tensor:
        """P*, ``(T, d)``."""
        return self.embedding.weight

    @property
    def weight(self) -> torch.Tensor:
        """P* (what ``PromptEmbedding.weight`` is for a vanilla prompt)."""
        return self.embedding.weight

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

    # ------------------------------------------------------------------ files
    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """What goes into ``adapter_model.safetensors``: PEFT's three keys."""
        return {
            "prompt_embeddings": self.embedding.weight.detach(),  # P*: (T, d)
            "prefix_task_cols": self.prefix_task_cols.detach(),  # u: (K, T, r)
            "prefix_task_rows": self.prefix_task_rows.detach(),  # v: (K, r, d)
        }

    @torch.no_grad()
    def load_adapter_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load :meth:`adapter_tensors` output (ours or PEFT's file), checking names and shapes."""
        expected = {k: tuple(v.shape) for k, v in self.adapter_tensors().items()}
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        if missing or extra:
            hint = " (a vanilla prompt? load it with ONLY_SOURCE_SHARED init)" if missing else ""
            raise ValueError(f"Expected the tensors {sorted(expected)}; missing {missing}, unexpected {extra}{hint}.")
        names = {"prompt_embeddings": "(total_virtual_tokens, token_dim)",
                 "prefix_task_cols": "(num_tasks, T, num_ranks)",
                 "prefix_task_rows": "(num_tasks, num_ranks, token_dim)"}
        for key, shape in expected.items():
            if tuple(tensors[key].shape) != shape:
                raise ValueError(
                    f"{key} has shape {tuple(tensors[key].shape)}, this prompt needs {shape} {names[key]}: the file "
                    "was saved with another num_tasks, num_ranks, prompt length or model; match the config to it."
                )
        self.embedding.weight.copy_(tensors["prompt_embeddings"])
        self.prefix_task_cols.copy_(tensors["prefix_task_cols"])
        self.prefix_task_rows.copy_(tensors["prefix_task_rows"])

    def extra_repr(self) -> str:
        c = self.config
        return (f"init={c.prompt_tuning_init.value}, T={c.total_virtual_tokens}, d={c.token_dim}, "
                f"num_tasks={c.num_tasks}, num_ranks={c.num_ranks}, task_factor_init={c.task_factor_init.value}")
