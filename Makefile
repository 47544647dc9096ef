# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/agentmem bench store

test: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" scripts/check
	PATH="$(abspath $(BIN)):$$PATH" scripts/test

check: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" scripts/check

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
