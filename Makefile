# PlayCode Medic — the two commands a new user needs:
#   make run    set up a virtualenv and run Medic with embedded defaults (SQLite, dry-run)
#   make test   install the test servers (Debian packages), set up the virtualenv, run the suite
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/pip
PYTEST_ARGS ?=

.PHONY: run test lint imports bench venv servers constraints floors clean

$(VENV)/.installed: pyproject.toml constraints.txt constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet --constraint constraints.txt --constraint constraints-dev.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# this machine only: no token is needed on a laptop, so nothing else on the network may reach it
run: venv
	$(VENV)/bin/medic serve --host 127.0.0.1

servers:
	bash tests/install-servers.sh

test: servers venv imports
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv imports
	$(VENV)/bin/ruff check service tests bench
	$(VENV)/bin/mypy

# the layer contracts of pyproject.toml [tool.importlinter] (DESIGN §5): before the tests, in CI too
imports: venv
	$(VENV)/bin/lint-imports

bench: venv
	$(VENV)/bin/python bench/bench_intake.py
	$(VENV)/bin/python bench/bench_inbox_group.py
	$(VENV)/bin/python bench/bench_runner.py
	$(VENV)/bin/python bench/bench_rollback.py
	$(VENV)/bin/python bench/bench_high_latency.py
	$(VENV)/bin/python bench/bench_redact.py
	$(VENV)/bin/python bench/bench_redis_intake.py
	$(VENV)/bin/python bench/bench_storm.py
	$(VENV)/bin/python bench/bench_fuzz.py
	$(VENV)/bin/python bench/bench_slow_clients.py
	$(VENV)/bin/python bench/bench_deploy_watch.py
	$(VENV)/bin/python bench/bench_verification.py

# constraints.txt pins the exact runtime dependency set (docs/dependencies.md); regenerate it after
# changing [project].dependencies in pyproject.toml: a fresh venv, a plain install, pip freeze.
CONSTRAINTS_VENV = build/constraints-venv
constraints:
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	$(CONSTRAINTS_VENV)/bin/pip install --quiet --upgrade pip
	$(CONSTRAINTS_VENV)/bin/pip install --quiet .
	{ echo '# Exact runtime dependencies of playcode-medic (CPython 3.11, Linux), resolved by pip from'; \
	  echo '# pyproject.toml. Regenerate with: make constraints   (docs/dependencies.md)'; \
	  echo '# Used by the Dockerfile (pip install -r) and by make venv (pip install -c).'; \
	  $(CONSTRAINTS_VENV)/bin/pip freeze --exclude playcode-medic; } > constraints.txt
	rm -rf $(CONSTRAINTS_VENV)

# The floors in pyproject.toml are the oldest releases Medic works with: install exactly those
# (the test tools at their newest) and run the unit tests and the backends' integration tests.
FLOORS_VENV = build/floors-venv
FLOOR_TESTS = tests/unit tests/contract tests/integration/test_intake.py tests/integration/test_cli.py \
	tests/integration/test_redis_inbox.py tests/integration/test_redis_state.py \
	tests/integration/test_mongo_store.py tests/integration/test_k8s_collectors.py \
	tests/integration/test_dataplane_prometheus.py tests/integration/test_dataplane_redis.py \
	tests/integration/test_dataplane_mongo.py tests/integration/test_admin_api.py \
	tests/integration/test_approvals_access.py tests/integration/test_crashloop_rollback.py \
	tests/integration/test_notify_pipeline.py tests/integration/test_alertmanager_to_incident.py \
	tests/integration/test_deploy_watch.py tests/integration/test_deploy_verification.py
floors: servers
	rm -rf $(FLOORS_VENV) && mkdir -p build
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(PYTHON) -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
	  print("\n".join(d.split(";")[0].replace(">=", "==") for d in deps))' > build/floors.txt
	$(FLOORS_VENV)/bin/pip install --quiet --upgrade pip
	$(FLOORS_VENV)/bin/pip install --quiet --constraint build/floors.txt -e '.[test]'
	$(FLOORS_VENV)/bin/python -c 'from importlib.metadata import version; \
	  [print(n, version(n)) for n in (l.split("==")[0] for l in open("build/floors.txt").read().split())]'
	$(FLOORS_VENV)/bin/pytest -q -p no:cacheprovider $(FLOOR_TESTS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
