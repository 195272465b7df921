# driftwarden: `make demo` runs the whole lifecycle on bundled data; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench bench-detection bench-kafka kafka-start kafka-stop clean

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

test: $(DEV_STAMP)
	$(BIN)/python -m pytest
	$(BIN)/lint-imports

lint: $(DEV_STAMP)
	$(BIN)/ruff check daemon detectors policies deploy tests bench examples
	$(BIN)/mypy daemon detectors policies deploy

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
