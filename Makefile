# Two entry points on a fresh machine that has only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The named datasets live next to the checkout (CI lays ../shared/data); users may point elsewhere.
SAFEALIGN_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export SAFEALIGN_DATA
# The CPU wheel of torch; an unpinned torch would pull gigabytes of CUDA libraries.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test demo lint bench clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

models: install
	$(BIN)/safealign models pull smollm2-135m-instruct all-minilm-l6-v2

test: models
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

demo: models
	$(BIN)/safealign demo

lint: install
	$(BIN)/ruff check src tests bench

bench: models
	$(BIN)/python bench/generation.py

clean-venv:
	rm -rf $(VENV)
