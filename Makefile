# Two entry points on a fresh machine with Python 3.11 and make:
#   make run    install, then the main job: a c sweep on the default config and its report
#   make test   install, then lint and the test suite (what CI runs)
#   make fig1   install, then reproduce WGAN-GP's Figure 1 (docs/REPRODUCTION.md)
#   make bench  install (with torch), then the throughput benchmark into BENCHMARKS.md
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
C ?= 0.001,0.01,0.1
NOW := $(shell date +%Y%m%d-%H%M%S)
OUT ?= results/swissroll-$(NOW)
FIG1 ?= results/fig1-$(NOW)
FIG1_ARMS := --constraint clip,gp --c 0.1,0.01,0.001

.PHONY: run test lint fig1 bench

# `wgan sweep` exits 3 when it finished but some run diverged: the report still shows them.
run: $(STAMP)
	$(BIN)/wgan sweep --c $(C) --out $(OUT) || [ $$? -eq 3 ]
	$(BIN)/wgan report $(OUT)

fig1: $(STAMP)
	$(BIN)/wgan sweep --config configs/fig1_depth.yaml $(FIG1_ARMS) --out $(FIG1)/depth12 \
	  || [ $$? -eq 3 ]
	$(BIN)/wgan report $(FIG1)/depth12
	for d in swissroll 8gaussians 25gaussians; do \
	  { $(BIN)/wgan sweep --config configs/fig1_surfaces.yaml $(FIG1_ARMS) \
	    --set data.dataset=$$d --out $(FIG1)/$$d || [ $$? -eq 3 ]; } \
	    && $(BIN)/wgan report $(FIG1)/$$d || exit 1; \
	done

# Sweep throughput against the matmul roofline and an eager PyTorch loop (BENCHMARKS.md).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/sweep_throughput.py --out BENCHMARKS.md

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
