"""Execute the numbered notebook series in order, in place, and report each one's wall time.

    python notebooks/run_series.py            # every NN_*.ipynb, then solutions/*.ipynb
    python notebooks/run_series.py 02 04      # only notebooks whose name starts with these

Outputs are written back into the notebooks (they are committed executed, so a reader sees
results on GitHub). A notebook that fails is not overwritten; the run goes on with the next
one and the script exits non-zero at the end.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 900


def series(prefixes: list[str]) -> list[Path]:
    books = sorted(HERE.glob("[0-9][0-9]_*.ipynb")) + sorted((HERE / "solutions").glob("*.ipynb"))
    if prefixes:
        books = [b for b in books if any(b.name.startswith(p) for p in prefixes)]
    return books


def execute(path: Path) -> tuple[bool, float, str]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        lines = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()  # the cell, then its traceback
        print("\n".join("    " + line for line in lines[-20:]), file=sys.stderr)
        return False, time.perf_counter() - t0, lines[-1][:300]
    except CellTimeoutError as exc:  # a cell over CELL_TIMEOUT_S: a failure of this notebook, the run goes on
        print(f"    {str(exc).splitlines()[0]}", file=sys.stderr)
        return False, time.perf_counter() - t0, f"a cell ran over {CELL_TIMEOUT_S} s"
    elapsed = time.perf_counter() - t0
    nbformat.write(nb, path)
    return True, elapsed, ""


def main(argv: list[str]) -> int:
    books = series(argv)
    if not books:
        print("no notebooks matched", argv)
        return 1
    rows = []
    for path in books:
        name = str(path.relative_to(HERE))
        print(f"▶ {name} ...", flush=True)
        ok, seconds, error = execute(path)
        rows.append((name, ok, seconds, error))
        print(f"  {'ok' if ok else 'FAILED'} in {seconds:6.1f} s {error}", flush=True)
    total = sum(r[2] for r in rows)
    width = max(len(r[0]) for r in rows)
    print("\nSummary")
    for name, ok, seconds, error in rows:
        print(f"  {name:<{width}}  {'ok    ' if ok else 'FAILED'}  {seconds:7.1f} s  {error}")
    failed = [r for r in rows if not r[1]]
    print(f"  {'total':<{width}}  {len(rows) - len(failed)}/{len(rows)} ok  {total:7.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
