# The two entry points: `make up` (set up, train if needed, serve) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA ?=
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
# Setup installs without bytecode (below), so Python must be free to write it on first
# import: with PYTHONDONTWRITEBYTECODE set (some CI images set it), every one of the suite's
# hundred-odd processes recompiled torch and MLflow from source (pytest 15m28 instead of ~6).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: up down test test-containers bench lint typecheck train serve system-deps setup clean

$(VENV)/.installed: requirements/*.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# --no-compile: pip would byte-compile every module of torch's 5.5 GB CUDA wheel, most of
	# which nothing here imports; Python compiles what is imported, once (see the unexport
	# above). Setup: 4m15 -> 2m27.
	$(BIN)/pip install --quiet --no-compile -r requirements/dev.txt
	# The `catdog` command (client.cli:main), linked to this checkout.
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: system-deps $(VENV)/.installed

# System packages the suite and the local stack use; installed with apt only where missing.
system-deps:
	@bash scripts/system-deps.sh

train: setup
	DATA="$(DATA)" bash scripts/train-if-needed.sh

up: train
	bash scripts/serve.sh

serve: setup
	bash scripts/serve.sh

down:
	bash scripts/stop.sh

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

test: setup
	bash scripts/run-tests.sh

# The deployed form, built and run here: both images from the Dockerfiles, the compose stack
# started by the real deploy scripts, smoke test over TLS, a failed deploy rolled back, the
# restore drill (tests/containers/run.sh; about 15 minutes on 2 cores, as root). Not part of
# `make test`: it needs root and a container engine, and takes as long as the suite itself.
test-containers: setup
	bash tests/containers/run.sh

# The serving benchmark against the stack `make up` started (bench/serving.py): results
# under bench/results/. Run it on a quiet machine.
bench: $(VENV)/.installed
	$(BIN)/python bench/serving.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
