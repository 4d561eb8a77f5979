# The two commands a new user needs: `make demo` and `make test`. Both create
# the project's virtual environment (.venv) and install into it on first use.
PYTHON ?= python3
VENV   ?= .venv
UI_PORT ?= 5000
# The Keras backend installed into .venv: tensorflow, jax or torch (`make install BACKEND=jax`;
# pneumo then runs on it when TensorFlow is not there too, else set KERAS_BACKEND=jax).
BACKEND ?= tensorflow
BIN    := $(VENV)/bin
# What installs into .venv: pip, or uv, as CI does (`make install PIP_INSTALL="uv pip install --compile-bytecode
# --python .venv/bin/python"`: the same packages; CI's .venv and JAX-only venv took 42 s with uv, pip's .venv ~95 s).
PIP_INSTALL ?= $(BIN)/python -m pip install

.PHONY: install demo smoke test test-all test-fast lint ui bench gpu-kit clean

install: $(VENV)/.installed-$(BACKEND)
$(VENV)/.installed-$(BACKEND): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(PIP_INSTALL) --quiet -e ".[$(BACKEND),dev]"
	touch $@

demo: install          ## the main job: the demo sweep on the built-in synthetic data
	$(BIN)/pneumo sweep demo

smoke: install         ## an install check in about a minute
	$(BIN)/pneumo sweep smoke

# Two pytest workers (pytest-xdist): while one waits on a server or the browser, the other trains. Tests
# are shared out one by one, the slow first (tests/conftest.py); the smoke store is built once for both.
# Each worker forks its jobs from one pre-imported pneumo (tests/zygote.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: install          ## what CI runs: the fast suite and the slow tests marked `ci` (~10 min); PYTEST_ARGS adds options
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load -m "not slow or ci" $(PYTEST_ARGS)

test-all: install      ## every test, the slow ones too (~35 min on 2 cores): before a release, and nightly
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load $(PYTEST_ARGS)

test-fast: install     ## everything but the slow (training / server / browser) tests
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load -m "not slow"

lint: install          ## ruff, as CI runs it
	$(BIN)/ruff check pneumo tests docs benchmarks

ui: install            ## the MLflow UI on the local store, http://127.0.0.1:$(UI_PORT)
	$(BIN)/pneumo ui --port $(UI_PORT)

bench: install
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/overhead.py

# The kit for the lent GPU machine (benchmarks/gpu/README.md): wheels at $(VENV)'s versions and the data at
# 128 px, in the ignored .gpu-kit/. Not after `install`: any venv with pneumo's dependencies will do.
gpu-kit:
	VENV=$(abspath $(VENV)) bash benchmarks/gpu/make_kit.sh

clean:
	rm -rf outputs multirun .cache .pytest_cache

.PHONY: nightly
nightly: install       ## the docs' tables CI cannot afford to rerun: a fresh demo sweep and a toy seed sweep (~6 min)
	PNEUMO_NIGHTLY=1 $(BIN)/python -m pytest -n 0 tests/test_docs_nightly.py

# Mutation testing (outside CI: 6,056 mutants, about 14 h of their tests on 2 cores; docs/reliability.md#mutation-testing):
# mutmut mutates pneumo/release/, pneumo/evaluation/ and pneumo/search/guard.py ([tool.mutmut] in pyproject.toml), runs
# the fast tests that call each mutated function, and docs/mutation_results.py writes the kill rate per module into
# docs/reliability.md. Niced, MUTATION_CHILDREN mutants at a time: it must not starve a training run beside it.
# MUTATION_MODULES="pneumo.search.guard pneumo.release.gates" runs those modules only, one after the other, each
# timed; the table then says which modules were not run. A fresh run each time (mutants/ removed);
# MUTATION_RESUME=1 keeps the results of an earlier or interrupted one.
MUTATION_CHILDREN ?= 2
MUTATION_MODULES ?=
.PHONY: mutation
mutation: install
	test -n "$(MUTATION_RESUME)" || rm -rf mutants
	for scope in $(or $(MUTATION_MODULES),all); do \
	  start=$$(date +%s); \
	  if [ $$scope = all ]; then nice -n 19 $(BIN)/mutmut run --max-children $(MUTATION_CHILDREN) || exit $$?; \
	  else nice -n 19 $(BIN)/mutmut run --max-children $(MUTATION_CHILDREN) "$$scope.*" || exit $$?; fi; \
	  echo "{\"scope\": \"$$scope\", \"seconds\": $$(( $$(date +%s) - start )), \"children\": $(MUTATION_CHILDREN), \"cpus\": $$(nproc)}" >> mutants/run-times.jsonl; \
	done
	$(BIN)/python docs/mutation_results.py
