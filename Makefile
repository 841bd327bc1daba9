# PlayCode Medic — the two commands a new user needs:
#   make run    set up a virtualenv and run Medic with embedded defaults (SQLite, dry-run)
#   make test   install the test servers (Debian packages), set up the virtualenv, run the suite
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
PYTEST_ARGS ?=

.PHONY: run test lint bench venv servers clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/medic serve

servers:
	bash tests/install-servers.sh

test: servers venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check service tests bench
	$(VENV)/bin/mypy

bench: venv
	$(VENV)/bin/python bench/bench_intake.py
	$(VENV)/bin/python bench/bench_runner.py
	$(VENV)/bin/python bench/bench_rollback.py
	$(VENV)/bin/python bench/bench_high_latency.py
	$(VENV)/bin/python bench/bench_redact.py
	$(VENV)/bin/python bench/bench_redis_intake.py
	$(VENV)/bin/python bench/bench_storm.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
