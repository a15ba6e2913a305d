# Flora: `make run` starts the app, `make test` lints and runs the whole test suite.
# Both create .venv and install the pinned requirements on first use.

# The interpreter the venvs are made with: the system's own CPython (/usr/bin/python3) where it is the same Python
# version as `python3` and can make a venv, else `python3`. Debian's and Ubuntu's are built with profile-guided and
# link-time optimisation into one executable; pyenv's default build (`--enable-shared`, neither optimisation: this
# machine's `python3`) runs the same Python code slower. Here, importing Flora with Keras, TensorFlow, pandas and
# scikit-learn took 2.84 -> 2.36 CPU-s, building three ResNet-50s 1.94 -> 1.81, `make test` on a fresh clone 14 min 4 s
# -> 13 min 16 s (docs/PERFORMANCE.md). `make PYTHON=python3` makes them with `python3`; an existing venv is kept.
SYSTEM_PYTHON ?= /usr/bin/python3
python_version = $(shell $(1) -c 'import sys, ensurepip, venv; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(origin PYTHON),undefined)
SYSTEM_PYTHON_VERSION := $(call python_version,$(SYSTEM_PYTHON))
SAME_VERSION := $(filter $(SYSTEM_PYTHON_VERSION),$(call python_version,python3))
PYTHON := $(if $(and $(SYSTEM_PYTHON_VERSION),$(SAME_VERSION)),$(SYSTEM_PYTHON),python3)
endif
VENV ?= .venv
BIN := $(VENV)/bin
# The build this machine gets (core/gpu_build.py, standard library only): requirements.txt on a CPU machine,
# the GPU build its NVIDIA driver supports where `nvidia-smi` lists a GPU. FLORA_GPU=0/1 overrides;
# FLORA_BACKEND=jax picks JAX (jax[cuda13] or jax[cuda12] by the driver) and is the Keras backend of `make run`.
FLORA_BACKEND ?= tensorflow
export FLORA_BACKEND
REQUIREMENTS := $(shell $(PYTHON) core/gpu_build.py)
BUILD := $(patsubst requirements%.txt,%,$(REQUIREMENTS))
STAMP := $(VENV)/.installed$(BUILD)
# The installer: uv (pinned, itself installed by the venv's pip) puts the same pinned requirements in a venv in 55 s
# from an empty cache where pip took 98 s, downloads included (it fetches and unpacks in parallel; bytecode: below).
# INSTALLER=pip installs with pip alone, e.g. where only pip's own settings (pip.conf) reach a package mirror.
INSTALLER ?= uv
UV_VERSION := 0.9.30
ifeq ($(INSTALLER),pip)
install = $(1) -m pip install --quiet $(2)
INSTALL_WORDS := pip install
else
install = $(1) -m pip install --quiet uv==$(UV_VERSION) && $(dir $(1))uv pip install --python $(1) --quiet $(2)
INSTALL_WORDS := uv pip install
endif
# Bytecode: compiling every module of the venv at install (uv's --compile-bytecode, what pip does) cost 62 CPU-s for
# Flora's and 36 for MLflow's server's, most of it for modules no Flora process imports (the two installs ran 63 s of
# the fresh clone's CI). The modules Flora's processes load are compiled once after the install instead, by importing
# them with bytecode writing on (about 8 CPU-s a venv); any other module is compiled when Python first imports it.
warm_bytecode = PYTHONDONTWRITEBYTECODE= $(1) -W ignore -c "import importlib, importlib.util; \
	[importlib.import_module(m) for m in '$(2)'.split() if importlib.util.find_spec(m.split('.')[0])]"
FLORA_IMPORTS := core.cli keras streamlit pandas scipy.stats sklearn.metrics sklearn.linear_model sklearn.decomposition \
	onnxruntime openvino tf2onnx fastapi uvicorn PIL cv2 pytest playwright.sync_api
MLFLOW_SERVER_IMPORTS := mlflow.cli mlflow.server.fastapi_app mlflow.server.handlers uvicorn
PORT ?= 8501
# 127.0.0.1: this machine only. HOST=0.0.0.0 shares Flora on the network: people then sign in (README, Sharing).
HOST ?= 127.0.0.1
# pytest-xdist workers: 2 on these 2 cores; a third worker measured no faster (the whole suite 20 min 2 s and 22 min 48 s
# with 3, 19 min 42 s with 2; a fresh clone's `make test` 12 min 51 s with 3, 13 min 2 s with 2; docs/PERFORMANCE.md)
TEST_WORKERS ?= 2
# One thread for each worker's TensorFlow and OpenMP pools (and the processes the tests start): two workers already
# keep both cores busy, and each one's default pools (a thread per core) only fought the other's. The results and
# training tests went 155-163 s -> 131 s (docs/PERFORMANCE.md). Set here, before pytest: the workers inherit the
# controller's environment, so a conftest cannot give them their own.
TEST_THREADS := TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1
# Python writes bytecode for Flora's own modules and pytest caches its rewritten test modules, even where the
# machine sets PYTHONDONTWRITEBYTECODE (this one does): otherwise each of the ~100 processes the tests start
# compiles Flora's modules again and each worker rewrites all ~160 test modules again.
# glibc's malloc gives freed memory back to the kernel as soon as the top of its heap holds 128 KB free, so a process
# that makes and drops arrays (decoding photos, converting a model) faults every page in again, each one zeroed by the
# kernel: the suite spent 14% of its CPU in the kernel, 41 M page faults. 64 MB of slack kept at the heap's top
# (glibc's own tunable, for the tests and every process they start): 29 M faults, kernel 218 -> 170 CPU-s, the
# TensorFlow suite 1,587 -> 1,444 CPU-s (adding the demo set 11.2 -> 4.0, an ONNX export 52 -> 41; docs/PERFORMANCE.md).
TEST_MALLOC := GLIBC_TUNABLES=glibc.malloc.top_pad=67108864
TEST_ENV := $(TEST_THREADS) PYTHONDONTWRITEBYTECODE= $(TEST_MALLOC)

.PHONY: run test lint format test-jax test-fast bench clean-venv build device mlflow-server venvs

# Another build installed here before (a CPU venv on a machine that now has a driver, TensorFlow's CUDA pins
# where JAX's are wanted): the venv is made afresh, never two frameworks' CUDA libraries in one.
$(STAMP): requirements.txt requirements-dev.txt $(REQUIREMENTS)
	@echo "flora: $$($(PYTHON) core/gpu_build.py --explain) -> $(REQUIREMENTS)"
	@if ls $(VENV)/.installed* >/dev/null 2>&1 && [ ! -e $(STAMP) ]; then \
		echo "flora: $(VENV) holds another build: making it afresh"; rm -rf $(VENV); fi
	@echo "flora: $(VENV) made with $(PYTHON), $$($(PYTHON) -c 'import sys; print(sys.version.split()[0])')"
	$(PYTHON) -m venv $(VENV)
	$(call install,$(BIN)/python,-r $(REQUIREMENTS) -r requirements-dev.txt)
	-KERAS_BACKEND=$(FLORA_BACKEND) $(call warm_bytecode,$(BIN)/python,$(FLORA_IMPORTS))
	touch $(STAMP)
	@# the check that the framework sees the GPU, after every import Flora does (a warning, not a failure)
	-@[ "$(REQUIREMENTS)" = "requirements.txt" ] || KERAS_BACKEND=$(FLORA_BACKEND) $(BIN)/python -m core device

# What `make` would install on this machine and why (a dry run: installs nothing).
build:
	@echo "$$($(PYTHON) core/gpu_build.py --explain)"
	@echo "install: $(INSTALL_WORDS) -r $(REQUIREMENTS) -r requirements-dev.txt"

# Which device trains, as the framework sees it after Flora's imports; why not, when a driver is there.
device: $(STAMP)
	KERAS_BACKEND=$(FLORA_BACKEND) $(BIN)/python -m core device

run: $(STAMP)
	$(BIN)/python -m core share-check --host $(HOST) --port $(PORT)
	KERAS_BACKEND=$${KERAS_BACKEND:-$(FLORA_BACKEND)} $(BIN)/streamlit run streamlit_app.py \
		--server.address $(HOST) --server.port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The MLflow tracking server the tracking tests start (and `.venv-mlflow/bin/mlflow server` for you): a venv of
# its own, since the full mlflow package would move pyarrow in Flora's (requirements-mlflow-server.txt says why).
MLFLOW_VENV ?= .venv-mlflow
$(MLFLOW_VENV)/.installed: requirements-mlflow-server.txt
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(call install,$(MLFLOW_VENV)/bin/python,-r requirements-mlflow-server.txt)
	-$(call warm_bytecode,$(MLFLOW_VENV)/bin/python,$(MLFLOW_SERVER_IMPORTS))
	touch $@

mlflow-server: $(MLFLOW_VENV)/.installed

# Flora's virtualenv and MLflow's at once: uv's downloads and unpacking overlap, 55 -> 46 s in a fresh clone.
venvs:
	@$(MAKE) --no-print-directory -j2 $(STAMP) $(MLFLOW_VENV)/.installed

# The whole suite on TensorFlow and, beside it, the backend-agnostic smoke subset on JAX (one worker; its output is
# kept and printed after the suite's). The two workers leave the cores idle ~8% of the time (a test waiting on a
# browser, a server, a process starting); the subset fills some of that instead of running alone after the suite.
# Either one failing fails `make test`. `make test-jax` runs the subset alone.
test: venvs lint mlflow-server
	@jax_log=$$(mktemp -t flora-test-jax.XXXXXX); \
	( $(MAKE) --no-print-directory test-jax TEST_WORKERS=1 > $$jax_log 2>&1; echo $$? > $$jax_log.rc ) & \
	echo "flora: the JAX subset runs beside the suite; its output follows the suite's"; \
	KERAS_BACKEND=tensorflow $(TEST_ENV) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup; tf=$$?; \
	wait; echo "flora: the JAX subset (make test-jax), run beside the suite:"; cat $$jax_log; \
	jax=$$(cat $$jax_log.rc); rm -f $$jax_log $$jax_log.rc; \
	echo "flora: TensorFlow suite exit $$tf, JAX subset exit $$jax"; [ $$tf -eq 0 ] && [ $$jax -eq 0 ]

# Only the files that mark a test backend_agnostic are collected: each worker importing all ~150 test files for the
# ~35 that hold the subset cost 18 CPU-s of collection against 8.
test-jax: $(STAMP)
	KERAS_BACKEND=jax $(TEST_ENV) $(BIN)/python -m pytest -m backend_agnostic -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup \
		$$(grep -rl --include='test_*.py' backend_agnostic tests)

# The inner loop: everything but the end-to-end tests that start Flora in another process, and the browser.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow and not browser"

bench: $(STAMP)
	$(BIN)/python -m core bench

clean-venv:
	rm -rf $(VENV)
