# taoremote: `make demo` runs a TAO-style task end to end; `make test` sets up and runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_FLAGS ?= -q
# CI must fail, not skip, when it cannot start dockerd, sshd or the Slurm test cluster.
REQUIRE := $(if $(filter true,$(CI)),--require-docker --require-ssh --require-slurm,)

.PHONY: venv setup demo test unit integration lint types check bench train evaluate export list clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: venv
	bash scripts/ci-setup.sh

demo: venv
	bash scripts/demo.sh

test: setup
	$(PY) -m pytest $(PYTEST_FLAGS) $(REQUIRE) tests

unit: venv
	$(PY) -m pytest $(PYTEST_FLAGS) tests/unit

integration: setup
	$(PY) -m pytest $(PYTEST_FLAGS) $(REQUIRE) tests/integration

lint: venv
	$(VENV)/bin/ruff check taoremote tests benchmarks
	$(VENV)/bin/ruff format --check taoremote tests benchmarks

types: venv
	$(VENV)/bin/mypy

check: lint types test

bench: setup
	$(PY) benchmarks/run.py

# --- example workflow targets, the kind a team keeps in its own Makefile --------------------------
# make train TASK=detectnet_v2 SPEC=/workspace/specs/train.txt RESULTS=/workspace/results KEY=tlt_encode HOST=gpu1
TASK ?= detectnet_v2
SPEC ?= /workspace/tao-experiments/specs/$(TASK)_train.txt
RESULTS ?= /workspace/tao-experiments/results/$(TASK)
KEY ?= tlt_encode
GPUS ?= all
HOST ?=
TAOREMOTE ?= $(VENV)/bin/taoremote
HOSTOPT := $(if $(HOST),--host $(HOST),)

train: venv
	$(TAOREMOTE) $(HOSTOPT) --gpus $(GPUS) $(TASK) train -e $(SPEC) -r $(RESULTS) -k $(KEY)

evaluate: venv
	$(TAOREMOTE) $(HOSTOPT) $(TASK) evaluate -e $(SPEC) -m $(RESULTS)/weights/model.tlt -k $(KEY)

export: venv
	$(TAOREMOTE) $(HOSTOPT) $(TASK) export -m $(RESULTS)/weights/model.tlt -k $(KEY) -o $(RESULTS)/model.onnx

list: venv
	$(TAOREMOTE) $(HOSTOPT) list --all

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
