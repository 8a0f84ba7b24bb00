# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.
# Each creates .venv on first use and reinstalls only when a requirements file changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test lint bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test: requirements.txt requirements-test.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

run: $(VENV)/.runtime
	$(BIN)/streamlit run dashboard/app.py --server.port $(PORT)

# ruff's settings are in pyproject.toml. `make test` lints first, so a lint failure stops it before pytest.
lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint $(VENV)/.test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
