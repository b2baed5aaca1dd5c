# The two commands of the README: `make run` (install + the default target) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test lint clean hub-mirror trtllm-selfcheck triton-interpreter

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch 2.13.0 first: on the project's CPU machines pip takes the local CPU build of it
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev,slurm,hub,mpi]"
	touch $@

install: $(BIN)/snakemake

# make run                                   the default target (the offline demo)
# make run TARGET=results/demo/tp2/rouge.json  one file and what it needs
run: install
	$(BIN)/snakemake --cores all $(TARGET)

# On a GPU box with TensorRT-LLM: the trtllm backend against torch and HF on the demo model (README, TensorRT-LLM).
# Run it with the Python that imports tensorrt_llm: make trtllm-selfcheck PY=python3
PY ?= $(BIN)/python
trtllm-selfcheck:
	$(PY) -m trtflow.selfcheck --workdir selfcheck

# olah, a self-hosted Hugging Face mirror, in a venv of its own: tests/test_hub.py serves repositories with it.
HUB_VENV ?= .venv-hub
$(HUB_VENV)/bin/olah-cli:
	($(PYTHON) -m venv $(HUB_VENV) && $(HUB_VENV)/bin/python -m pip install --quiet "olah==0.5.4") \
	  || echo "olah could not be installed: tests/test_hub.py will be SKIPPED"

hub-mirror: $(HUB_VENV)/bin/olah-cli

# Triton, for tests/test_kernels.py: the GPU kernels of decode: kernels run in its CPU interpreter. Kept
# in .triton/, apart from .venv (the CPU build of torch runs without it).
TRITON_DIR ?= .triton
$(TRITON_DIR)/triton:
	$(BIN)/python -m pip install --quiet --no-deps --target $(TRITON_DIR) "triton==3.6.0" \
	  || echo "triton could not be installed: tests/test_kernels.py will be SKIPPED"

triton-interpreter: install $(TRITON_DIR)/triton

# Two workers (pytest-xdist), each test file's tests stolen by whichever is idle; the demo model is trained once
# and shared (tests/conftest.py); the 15 slowest steps are listed at the end. PYTEST_ARGS adds options, e.g.
# PYTEST_ARGS="-n 0" for one process.
test: install hub-mirror triton-interpreter
	$(BIN)/python -m pytest -x -q -n 2 --dist worksteal --durations=15 $(PYTEST_ARGS)

# ruff for the Python, snakefmt (settings in pyproject.toml) and Snakemake's own linter for the workflow, as the
# Snakemake workflow catalog checks them
lint: install
	$(BIN)/ruff check workflow/scripts tests benchmarks
	$(BIN)/snakefmt --check workflow/Snakefile workflow/rules/
	$(BIN)/snakemake --lint

clean:
	rm -rf results resources logs .snakemake selfcheck
