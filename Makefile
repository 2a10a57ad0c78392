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
# JavaScript guests (componentize-js; `wasmactors build` installs it with npm
# into ~/.cache/wasmactors/toolchains on first use). Skipped without node.
JS_GUESTS := $(if $(shell command -v node && command -v npm),examples/polyglot/tally/build/tally.wasm)

.PHONY: all setup guests lint typecheck test stress demo bench clean FORCE

all: test

# The list of modules and package data: a strict editable install links each
# file, so a new module needs a reinstall (an edited one does not).
MODULES := $(sort $(wildcard wasmactors/*.py runtime/*.py actors/*.py messaging/*.py wit/*.wit))
MODULE_LIST := build/modules.txt

$(MODULE_LIST): FORCE
	@mkdir -p $(@D)
	@echo '$(MODULES)' | cmp -s - $@ || echo '$(MODULES)' > $@

# The virtualenv with the project in setuptools' strict editable mode (a tree
# of links laid out as the installed package, which mypy and IDEs follow) and
# its dev tools; redone when pyproject.toml or the module list changes.
$(STAMP): pyproject.toml $(MODULE_LIST)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing wasmactors and its dev tools into $(VENV) (about a minute the first time)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' \
		--config-settings editable_mode=strict
	@touch $@

setup: $(STAMP)

# A Python guest is rebuilt only when its sources or the WIT changed.
.SECONDEXPANSION:
$(GUESTS): %.wasm: $$(wildcard $$(dir $$(@D))*.py) $(WIT) | $(STAMP)
	@$(BIN)/wasmactors build $(dir $(@D)) --output $@ --no-check

$(JS_GUESTS): %.wasm: $$(wildcard $$(dir $$(@D))*.js) $(WIT) | $(STAMP)
	@$(BIN)/wasmactors build $(dir $(@D)) --output $@ --no-check

guests: $(GUESTS) $(JS_GUESTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The library strictly; tests, examples and benchmarks with the overrides in
# pyproject.toml. MYPYPATH puts the install's link tree before the checkout's
# root, whose `wasmactors/` folder alone is not the whole package.
EDITABLE = $(firstword $(wildcard build/__editable__.wasmactors-*))
typecheck: $(STAMP)
	MYPYPATH=$(EDITABLE) $(BIN)/mypy -p wasmactors
	MYPYPATH=$(EDITABLE) $(BIN)/mypy tests examples benchmarks

test: $(STAMP) guests lint typecheck
	$(BIN)/python -m pytest

# The long versions of the overlap stress tests (hundreds of repetitions on
# both backends); `make test` runs a short version of each.
stress: $(STAMP) guests
	$(BIN)/python -m pytest -m stress

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
