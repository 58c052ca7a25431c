# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test bench lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	# torch first, pinned to the local CPU build, so captum cannot pull a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) -m xaijax.demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(BENCH_STAMP)
	$(PY) experiments/bench/attribution.py

lint: $(STAMP)
	$(PY) -m ruff check xaijax tests experiments
	$(PY) -m ruff format --check xaijax tests experiments

format: $(STAMP)
	$(PY) -m ruff format xaijax tests experiments
	$(PY) -m ruff check --fix xaijax tests experiments

clean:
	rm -rf $(VENV) out .pytest_cache
