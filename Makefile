# One-command setup, demo and tests on a fresh machine (Python 3.11, x86_64 or aarch64, no GPU needed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

demo: setup
	$(BIN)/python -m pipeline --source demo

test: setup
	$(BIN)/python -m pytest
