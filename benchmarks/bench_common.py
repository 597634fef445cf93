"""What the benchmark scripts share: results files that name no machine's directories, and comma lists."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_relative(value):
    """A path under the project as a relative path (results files must not name this machine's directories)."""
    if isinstance(value, str) and Path(value).is_absolute():
        p = Path(value).resolve()
        return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else "<outside the project>"
    return value


def ints(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    return [int(s) for s in str(text).split(",") if s]
