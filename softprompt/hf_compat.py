"""One name that changed between transformers releases: the key/value cache.

transformers 5.24 renamed the cache argument of ``forward``/``generate`` and the cache field of
model outputs from ``past_key_values`` to ``cache``. The old name still works there, but every call
prints a deprecation warning (into every notebook cell that evaluates with the prefix cache) and
the old name is to be removed. softprompt passes and reads the cache under the name the installed
transformers uses, so it runs warning-free on 5.24+ and unchanged on 5.23.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

__all__ = ["cache_kwargs", "output_cache"]


@lru_cache(maxsize=None)
def _cache_name(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def cache_kwargs(model, cache) -> dict:
    """``{name: cache}`` for ``model(...)`` or ``model.generate(...)``: ``cache`` where ``model.forward``
    takes it (transformers >= 5.24), else ``past_key_values``."""
    return {_cache_name(type(model)): cache}


def output_cache(output):
    """The key/value cache in a model's output: ``output.cache`` (``past_key_values`` before 5.24), or None."""
    keys = output.keys()  # the stored field names, without the deprecated alias lookup
    for name in ("cache", "past_key_values"):
        if name in keys:
            return output[name]
    return None
