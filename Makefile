# Two entry points on a fresh machine with Python 3.11 and make:
#   make run    install, then the main job: a c sweep on the default config and its report
#   make test   install, then lint and the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
C ?= 0.001,0.01,0.1
OUT ?= results/swissroll-$(shell date +%Y%m%d-%H%M%S)

.PHONY: run test lint

run: $(STAMP)
	$(BIN)/wgan sweep --c $(C) --out $(OUT)
	$(BIN)/wgan report $(OUT)

test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)
