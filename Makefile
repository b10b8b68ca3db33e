# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# CPU installs pin the torch wheel that is available offline; GPU users override, e.g.
#   make demo TORCH_SPEC="torch==2.13.0" PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
PYTEST_ARGS ?=
BIN := $(VENV)/bin
# OpenMP threads that sleep instead of spinning while they wait: on a CPU shared with other jobs, spinning
# threads make a 2-thread step up to 10x slower than a 1-thread one.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(PIP_TORCH_ARGS)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

# The demo's model, llmtime-base, is built on first use into ~/.cache/llmtime-budget/llmtime-base
# (or $$LLMTIME_BASE_DIR) and reused while its recipe is unchanged.
demo: setup
	$(BIN)/python -m experiments pretrain-base
	$(BIN)/python -m experiments run --plan demo --out runs/demo

test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --durations=15 $(PYTEST_ARGS)

bench: setup
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) runs build *.egg-info
