# `make repro`: set up .venv (if needed) and run the whole DVC pipeline on the offline demo data.
# `make test`:  same setup, then the test suite.
# `make paper`: the pipeline with the paper's encoders (params.paper.yaml), as a DVC experiment;
#               stops before running anything when a weights folder is missing.
# `make lock`:  regenerate requirements.lock from pyproject.toml (keeps existing pins; to move
#               them: make lock LOCK_ARGS=--upgrade, or LOCK_ARGS='--upgrade-package numpy').
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements.lock
# pip itself is not in the lock (it installs it); pinned here to the version the lock was made with.
PIP_VERSION := 26.3
export PATH := $(abspath $(VENV))/bin:$(PATH)
# TensorFlow: quiet logs; keep keras on the TensorFlow backend.
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND ?= tensorflow

.PHONY: setup repro test lint bench lock paper

# Exactly the locked versions (hash-checked), then tgmatl itself without resolving anything;
# the check fails naming any package that is not at its pinned version (e.g. an older .venv).
$(VENV)/.installed: $(LOCK) pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q pip==$(PIP_VERSION)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m tgmatl.versions --check $(LOCK)
	touch $@

setup: $(VENV)/.installed

repro: setup
	dvc repro

paper: setup
	$(PY) -m tgmatl.embedding.paper $(PAPER_ARGS)

test: setup
	$(PY) -m pytest -q

# uv comes from the lock (dev extra); a venv without it gets one just to write the lock.
lock:
	test -x $(VENV)/bin/uv || { test -x $(PY) || python3 -m venv $(VENV); $(PY) -m pip install -q uv; }
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --generate-hashes --quiet \
		--custom-compile-command 'make lock' -o $(LOCK) $(LOCK_ARGS)

lint: setup
	$(VENV)/bin/ruff check src stages tests benchmarks scripts
