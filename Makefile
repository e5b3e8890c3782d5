# make build: run stale experiments, render, build the site (offline, on the bundled organism)
# make test:  lint and the test suite;  make serve: preview;  make bench: the benchmarks
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch==2.13.0: on these machines pip finds the CPU wheel on disk; elsewhere PyPI's default
# build (CUDA on Linux). Override with `make TORCH="torch==X" ...` or install torch yourself.
TORCH  ?= torch==2.13.0

.PHONY: install build run render site serve status lint test bench mutation corpus organism clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[run,dev,ray]"
	touch $@

build: install
	$(BIN)/capcircuit build

run: install
	$(BIN)/capcircuit run

render: install
	$(BIN)/capcircuit render

site: install  # render and build from the stored results, running nothing (what Pages runs)
	$(BIN)/capcircuit site

status: install
	$(BIN)/capcircuit status

serve: install
	$(BIN)/capcircuit serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The organisms' corpus (three Debian packages, fetched with apt-get download): the tests
# check its cleaning and that retraining starts exactly as the committed run did.
corpus: install
	$(BIN)/capcircuit organism fetch

# Two pytest-xdist workers, a test file each at a time (module fixtures such as the Ray cluster
# start once), the slowest files first (tests/conftest.py SLOW_FILES, kept in that order by
# --no-loadscope-reorder): the suite is CPU-bound on one torch thread per worker, and per
# command a test starts (OMP_NUM_THREADS=1: OpenMP threads spin-wait on each other on 2 cores).
# TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: install lint corpus
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install  # both benchmarks, e.g. make bench BENCH_ARGS="--threads 1"
	$(BIN)/python benchmarks/bench_patching.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_circuit.py $(BENCH_ARGS)

# Mutation testing of the numeric core: not part of `make test` or CI. The modules come in sets
# ([tool.capcircuit.mutation.<set>] in pyproject.toml: their modules and the tests run on their
# mutants), each run by mutmut in .mutation/<set>/ (scripts/mutation_set.py prepares it and
# names the functions whose mutants run), since mutmut takes one list of tests per run. Each
# set is bounded by MUTATION_TIMEOUT seconds, niced, one torch thread per worker; mutmut keeps
# its results in .mutation/<set>/mutants/. MUTATION_SETS and MUTANTS narrow a run, e.g.
# make mutation MUTATION_SETS=numeric MUTANTS="generator.circuit_stats.*".
MUTATION_TIMEOUT ?= 3600
MUTATION_WORKERS ?= 2
MUTATION_SETS ?= $(shell $(BIN)/python scripts/mutation_set.py --list)
MUTANTS ?=
mutation: install
	@set -f; for set in $(MUTATION_SETS); do \
	  targets=$$($(BIN)/python scripts/mutation_set.py $$set) || exit 1; \
	  echo "mutation set $$set"; \
	  (cd .mutation/$$set && OMP_NUM_THREADS=1 timeout $(MUTATION_TIMEOUT) nice -n 10 \
	    $(abspath $(BIN))/mutmut run --max-children $(MUTATION_WORKERS) $(or $(MUTANTS),$$targets)) || true; \
	done
	$(BIN)/python scripts/mutation_report.py

organism: install
	$(BIN)/capcircuit organism train

clean:
	rm -rf site docs/*.md docs/assets
