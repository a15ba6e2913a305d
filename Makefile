# Flora: `make run` starts the app, `make test` lints and runs the whole test suite.
# Both create .venv and install the pinned requirements on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
# 127.0.0.1: this machine only. HOST=0.0.0.0 shares Flora on the network: people then sign in (README, Sharing).
HOST ?= 127.0.0.1
# pytest-xdist workers: 2 processes made the suite 1.5x faster on 2 cores (docs/PERFORMANCE.md)
TEST_WORKERS ?= 2

.PHONY: run test lint format test-jax test-fast bench clean-venv

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m core share-check --host $(HOST) --port $(PORT)
	$(BIN)/streamlit run streamlit_app.py --server.address $(HOST) --server.port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The whole suite on TensorFlow, then the backend-agnostic smoke subset on JAX.
test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS)
	$(MAKE) test-jax

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -m backend_agnostic -p no:cacheprovider

# The inner loop: everything but the end-to-end tests that start Flora in another process, and the browser.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not slow and not browser"

bench: $(STAMP)
	$(BIN)/python -m core bench

clean-venv:
	rm -rf $(VENV)
