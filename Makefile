# km3mon: `make` installs, `make test` runs the whole suite, `make test-fast` skips slow end-to-end tests.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all install test test-fast lint clean demo start stop status

all: install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(VENV)/bin/km3mon compile-kernels  # numba cache: no program compiles for minutes at its start
	touch $(STAMP)

# Three workers for most tests (whole files per worker, so module fixtures are built once):
# most of their time is spent waiting for simulated streams in real time, not computing, so
# a third worker on a 2-core machine shortens the run; tests wait on load-aware deadlines.
# The tests marked serial, which measure CPU or need the machine, after them one at a time;
# the slowest are listed at the end (what to look at when the suite grows past 15 minutes).
test: install lint
	$(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder -m "not serial" --durations=15
	$(PY) -m pytest -m serial --durations=5

test-fast: install
	$(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder -m "not slow"

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

# Operations (supervisord in WORKDIR, default: here). `source setenv.sh` before `make start`.
WORKDIR ?= .
demo: install
	$(VENV)/bin/km3mon demo $(DEMO_ARGS)

start: install
	@$(VENV)/bin/km3mon start --dir $(WORKDIR)

stop:
	@$(VENV)/bin/km3mon stop --dir $(WORKDIR)

status:
	@$(VENV)/bin/km3mon status --dir $(WORKDIR)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
