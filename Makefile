# The two commands of the README's quick start: `make run` and `make test`.
# Each creates .venv when it is missing and installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= runs/default
CONFIG ?= configs/default.yaml

.PHONY: run test lint install sysdeps serve bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[build,server,dev]'
	touch $(STAMP)

install: $(STAMP)

sysdeps:
	./scripts/ensure-system-deps.sh

## Build the front on the bundled model and data (resumes if interrupted), then query and plot it.
run: $(STAMP) sysdeps
	$(BIN)/paretoctl build --config $(CONFIG) --out $(OUT) --resume
	@# A policy query exits 1 when nothing fits the budget: a valid answer (it prints the fastest latency).
	$(BIN)/paretoctl policy --front $(OUT)/front.json --snr 5 --latency 50 || [ $$? -eq 1 ]
	$(BIN)/paretoctl policy --front $(OUT)/front.json --snr 20 --latency 16 || [ $$? -eq 1 ]
	$(BIN)/paretoctl plot $(OUT) --out $(OUT)/plots
	@echo "Serve it with: make serve   (dashboard at http://127.0.0.1:8000/)"

serve: $(STAMP)
	$(BIN)/paretoctl serve --front $(OUT)/front.json --host 127.0.0.1 --port 8000

## Lint, type-check and run the whole test suite.
test: $(STAMP)
	./scripts/ensure-system-deps.sh --browser
	$(BIN)/ruff check .
	$(BIN)/mypy -p paretoctl
	@# Idle OpenMP threads sleep rather than spin in the tests, whose servers, browser and builds share few
	@# cores. Not in `make run`: at 2 threads a sleeping policy slows a build's evaluations by ~10%
	@# (bench/RESULTS.md, "Evaluation speed").
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy -p paretoctl

bench: $(STAMP) sysdeps
	./scripts/ensure-system-deps.sh --bench
	$(BIN)/python bench/merge_speed.py
	$(BIN)/python bench/channel_speed.py
	$(BIN)/python bench/service_load.py
	$(BIN)/python bench/bo_vs_baselines.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
