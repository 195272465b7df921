# driftwarden: `make demo` runs the whole lifecycle on bundled data; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test docs tools lint format bench bench-detection bench-kafka kafka-start kafka-stop clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

demo: $(STAMP)
	$(BIN)/driftwarden demo

SOURCES := daemon detectors policies deploy examples tests bench
# mypy reads the packages under their installed names (driftwarden.daemon, ...) through a tree of links.
TYPECHECK := build/typecheck

# One process by default. PYTEST_ARGS="-n 2" runs two pytest-xdist workers (tests/conftest.py schedules by module, the
# slowest units first, the Kafka tests and the demo's users each on one worker): 412-476 s against one process's ~740 s,
# but not yet reliable: its runs found races that load brings out (three fixed; a trainer's exit 75 seen as SIGABRT
# and a status that stopped updating are not explained yet).
PYTEST_ARGS ?=

test: lint docs tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Helm, pinned and built from its Go module into a cache folder (tests/shipping/tools.py finds it there).
tools:
	bash .ci/install-helm

# The docs site (mkdocs-material), built with --strict: a broken link or anchor, or a page not in the nav, fails.
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet

lint: $(DEV_STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	mkdir -p $(TYPECHECK)/driftwarden
	for d in daemon detectors policies deploy examples; do ln -sfn ../../../$$d $(TYPECHECK)/driftwarden/$$d; done
	MYPYPATH=$(TYPECHECK) $(BIN)/mypy -p driftwarden.daemon -p driftwarden.detectors -p driftwarden.policies \
		-p driftwarden.deploy -p driftwarden.examples
	$(BIN)/lint-imports

format: $(DEV_STAMP)
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

bench: $(DEV_STAMP)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/fastpath.py

bench-detection: $(DEV_STAMP)
	$(BIN)/python bench/detection.py

bench-kafka: $(DEV_STAMP)
	$(BIN)/python bench/kafka_throughput.py

kafka-start:
	deploy/kafka/broker start

kafka-stop:
	deploy/kafka/broker stop

clean:
	rm -rf out .driftwarden .pytest_cache
