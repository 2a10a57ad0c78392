# wasmactors: every target sets up what it needs. Configuration of the tools
# lives in pyproject.toml; this file only calls them.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
WIT := $(wildcard wit/*.wit)
GUESTS := examples/echo/build/echo.wasm \
          examples/counter/build/counter.wasm \
          examples/ping-pong/build/ping-pong.wasm \
          examples/pipeline/build/pipeline.wasm \
          examples/scatter-gather/build/scatter-gather.wasm \
          examples/supervision/build/supervision.wasm \
          examples/http-service/build/http-service.wasm \
          tests/guests/kitchen/build/kitchen.wasm

.PHONY: all setup guests lint typecheck test demo bench clean

all: test

# The virtualenv with the project (editable) and its dev tools; redone when
# pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

setup: $(STAMP)

# A Python guest is rebuilt only when its sources or the WIT changed.
.SECONDEXPANSION:
$(GUESTS): %.wasm: $$(wildcard $$(dir $$(@D))*.py) $(WIT) | $(STAMP)
	@$(BIN)/wasmactors build $(dir $(@D)) --output $@ --no-check

guests: $(GUESTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow the editable install's import hook, so it checks a
# tree of symlinks laid out as the installed package.
typecheck: $(STAMP)
	@rm -rf build/typecheck && mkdir -p build/typecheck/wasmactors
	@ln -s $(CURDIR)/wasmactors/*.py $(CURDIR)/wasmactors/py.typed build/typecheck/wasmactors/
	@for pkg in actors messaging runtime; do ln -s $(CURDIR)/$$pkg build/typecheck/wasmactors/$$pkg; done
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p wasmactors

test: $(STAMP) guests lint typecheck
	$(BIN)/python -m pytest

# The pipeline example end to end: four actors, backpressure, the stats table.
demo: $(STAMP) examples/pipeline/build/pipeline.wasm
	$(BIN)/wasmactors run examples/pipeline/topology.toml --storage :memory:

$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $@

bench: $(VENV)/.installed-bench guests
	$(BIN)/python -m benchmarks

clean:
	rm -rf build $(VENV) examples/*/build tests/guests/*/build
