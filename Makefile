# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Bytecode, as a wheel install has it (the checkout is installed editable, and without it
	# every agent and daemon process compiles agentmem at import: ~1.3 MiB of heap each).
	$(BIN)/python -m compileall -q src/agentmem > /dev/null
	touch $@

# A swarm of 20 agents (corpus profile; generated data unless AGENTMEM_CORPUS names a corpus) as
# plain processes, with KSM and with agentmem: its memory table. About a minute on 2 cores.
demo: $(BIN)/.installed
	$(BIN)/agentmem swarm --agents 20

test: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" scripts/check
	PATH="$(abspath $(BIN)):$$PATH" scripts/test

check: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" scripts/check

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
