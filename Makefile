# `make repro`: set up .venv (if needed) and run the whole DVC pipeline on the offline demo data.
# `make test`:  same setup, then the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
# TensorFlow: quiet logs; keep keras on the TensorFlow backend.
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow

.PHONY: setup repro test lint bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

repro: setup
	dvc repro

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src stages tests benchmarks scripts
