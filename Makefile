# One-command setup, demo and tests on a fresh machine (Python 3.11, x86_64 or aarch64, no GPU needed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo demo-synthetic test
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

demo: setup  # the bundled real clip (assets/), default detector and refiner, contact sheet
	$(BIN)/python -m pipeline --source demo

demo-synthetic: setup  # generated clip with exact ground truth: COCO AP of detector vs refined boxes
	$(BIN)/python -m pipeline --source synthetic

test: setup
	$(BIN)/python -m pytest
