# openwit: every target installs what it needs into .venv on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.openwit-installed
# The tests also need the `airflow` extra (Airflow 3 + the Beam provider); the demo does not.
STAMP_TEST := $(VENV)/.openwit-test-installed
PYTEST_ARGS ?=
# Test processes: each takes whole modules (their fixtures are module-scoped); 0 runs the
# suite in this process.
TEST_WORKERS ?= 2
DEMO_OUT ?= demo-out

# img2dataset imports albumentations, which otherwise checks PyPI for updates at import.
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test demo bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "openwit needs Python >= 3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(STAMP_TEST): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,airflow]'
	@touch $@

test: $(STAMP_TEST)
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

demo: install
	$(BIN)/openwit demo --out $(DEMO_OUT)

bench: install
	OPENWIT_BENCH_SCALE_FULL=1 $(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache build dist *.egg-info
