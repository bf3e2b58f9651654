# Two entry points for a new user: `make demo` and `make test`.  Both create .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and pinned: on the project's machines this CPU build lies on local disk.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/metasrgan demo --output demo-output

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	bash scripts/install_browser.sh
	bash scripts/install_bids_validator.sh
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
