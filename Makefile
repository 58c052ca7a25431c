# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: demo test bench lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The peers (torch CPU, captum, lime, scikit-image) live in their own environment.
$(BENCH_STAMP): pyproject.toml
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	# torch first, pinned to the local CPU build, so captum cannot pull a CUDA build.
	$(BENCH_PY) -m pip install --quiet torch==2.13.0
	$(BENCH_PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) -m xaijax.cli.demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(BENCH_STAMP)
	$(BENCH_PY) experiments/bench/attribution.py $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check xaijax tests experiments
	$(PY) -m ruff format --check xaijax tests experiments

format: $(STAMP)
	$(PY) -m ruff format xaijax tests experiments
	$(PY) -m ruff check --fix xaijax tests experiments

clean:
	rm -rf $(VENV) out .pytest_cache
