# nlclf: `make demo` and `make test` work on a machine that has only python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_ROOT ?= ../shared/data

.PHONY: demo test test-fast venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nlclf train configs/demo.yaml --overwrite
	$(BIN)/nlclf eval runs/demo data/demo/test.tsv
	head -n 5 data/demo/unlabeled.txt | $(BIN)/nlclf predict runs/demo - --proba

test: $(STAMP)            # everything, on two processes (pytest-xdist)
	$(BIN)/python -m pytest -n 2

test-fast: $(STAMP)       # math, features, formats, config, checkpoints: seconds
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache

include bench/Makefile.accuracy
include bench/Makefile.speed
include bench/Makefile.serve
