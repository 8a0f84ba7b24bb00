# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.
# Each creates .venv on first use and reinstalls only when a requirements file, or the TensorFlow build, changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

# The TensorFlow build: `cuda` when `nvidia-smi -L` answers and lists a GPU (one "GPU 0: NAME (UUID: ...)" line
# each), else `cpu`; a missing, failing, hanging or silent nvidia-smi means cpu. Force one with
# `make run TF_BUILD=cpu` (or cuda); `make tf-build` prints the choice and why.
ifndef TF_BUILD
GPU_COUNT := $(shell out=$$(timeout 10 nvidia-smi -L 2>/dev/null) && printf '%s\n' "$$out" | grep -c '^GPU ')
TF_BUILD := $(if $(filter-out 0,$(GPU_COUNT)),cuda,cpu)
endif
# Per build: the runtime file it installs, and the other build's wheel, uninstalled first when switching
# (tensorflow-cpu and tensorflow both provide the `tensorflow` module, so one must go before the other comes).
TF_REQUIREMENTS_cpu := requirements.txt
TF_REQUIREMENTS_cuda := requirements-cuda.txt
TF_OTHER_WHEEL_cpu := tensorflow
TF_OTHER_WHEEL_cuda := tensorflow-cpu
TF_REQUIREMENTS := $(TF_REQUIREMENTS_$(TF_BUILD))
TF_OTHER_WHEEL := $(TF_OTHER_WHEEL_$(TF_BUILD))
ifeq ($(TF_REQUIREMENTS),)
$(error TF_BUILD is '$(TF_BUILD)'; it must be cpu or cuda)
endif

.PHONY: run test lint bench clean-venv tf-build FORCE

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# .tf-build holds the build last installed: a different choice now reinstalls the runtime (FORCE), whatever the dates.
TF_BUILD_INSTALLED := $(shell cat $(VENV)/.tf-build 2>/dev/null)

$(VENV)/.runtime: $(TF_REQUIREMENTS) requirements-base.txt $(if $(filter $(TF_BUILD),$(TF_BUILD_INSTALLED)),,FORCE) | $(BIN)/python
	if $(BIN)/pip show --quiet $(TF_OTHER_WHEEL) >/dev/null 2>&1; then $(BIN)/pip uninstall --quiet --yes $(TF_OTHER_WHEEL); fi
	$(BIN)/pip install --quiet -r $(TF_REQUIREMENTS)
	echo $(TF_BUILD) > $(VENV)/.tf-build
	touch $@

$(VENV)/.test: requirements-base.txt requirements-test.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

# `make run CLASSROOM=1`: classroom mode (learners' names, a fair queue, the Class board), served on the network
# (CLASS_ADDRESS) so the class can connect; it prints the instructor code first.
CLASS_ADDRESS ?= 0.0.0.0
run: $(VENV)/.runtime
ifneq ($(CLASSROOM),)
	TRANSFER_LAB_CLASSROOM=1 $(BIN)/python -m core.classroom
	TRANSFER_LAB_CLASSROOM=1 $(BIN)/streamlit run dashboard/app.py --server.port $(PORT) --server.address $(CLASS_ADDRESS)
else
	$(BIN)/streamlit run dashboard/app.py --server.port $(PORT)
endif

tf-build:
	@if [ "$(origin TF_BUILD)" != file ]; then why="TF_BUILD=$(TF_BUILD) was set ($(origin TF_BUILD))"; \
	elif ! command -v nvidia-smi >/dev/null 2>&1; then why="no nvidia-smi on PATH"; \
	elif [ $(TF_BUILD) = cuda ]; then why="nvidia-smi -L lists $(GPU_COUNT) GPU(s)"; \
	else why="nvidia-smi -L failed or lists no GPU"; fi; \
	echo "$(TF_BUILD): $$why; installs $(TF_REQUIREMENTS)"

# ruff's settings are in pyproject.toml. `make test` lints first, so a lint failure stops it before pytest.
lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint $(VENV)/.test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
