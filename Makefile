# CDP Stage: the entry point for people, the README and .ci/run. `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MANAGE := $(PY) manage.py
# Development defaults; a real deployment sets its own environment (see .env.example).
export DJANGO_SETTINGS_MODULE := cdpstage.settings
RUN_ENV := DJANGO_DEBUG=1
export SANDBOX_DIR ?= .sandbox
# Ports of `make run` (the Procfile reads them from the environment).
export WEB_PORT ?= 8000
export SANDBOX_PORT ?= 8443

.PHONY: help install db migrate demo run web worker worker-imports worker-batches sandbox \
        test test-fast chaos lint fmt bench browser-deps clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned requirements

db: install ## Create the database roles and the database of DATABASE_URL if missing
	$(PY) -m cdpstage.createdb

migrate: db ## Apply migrations (as the owner role, DATABASE_OWNER_URL)
	$(RUN_ENV) $(MANAGE) migrate --no-input

demo: migrate ## Create demo users (passwords printed) and load the demo guests
	$(RUN_ENV) $(MANAGE) demo_setup

# Unless CDP_BASE_URL names a real tenant, point the app at the local sandbox and trust its CA.
SANDBOX_ENV := if [ -z "$${CDP_BASE_URL:-}" ]; then export CDP_BASE_URL=https://127.0.0.1:$(SANDBOX_PORT) \
	CDP_CLIENT_KEY=sandbox-client-key CDP_API_TOKEN=sandbox-api-token \
	REQUESTS_CA_BUNDLE=$(abspath $(SANDBOX_DIR))/ca.pem; fi;

# The demo users are printed last, once every service is up; Ctrl-C stops every child, even
# with the output piped (cdpstage/devrun.py says why this is not honcho).
run: migrate ## Set everything up, then run web + sandbox + workers (Ctrl-C stops all)
	@$(SANDBOX_ENV) export PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(RUN_ENV); \
	exec $(PY) -m cdpstage.devrun --setup "$(MANAGE) demo_setup" \
		--wait-port $(WEB_PORT) --wait-port $(SANDBOX_PORT) \
		--banner "Open http://127.0.0.1:$(WEB_PORT)/admin/ and log in with a demo user above. Ctrl-C stops everything."

web: install ## Run only the web server
	$(RUN_ENV) $(MANAGE) runserver 127.0.0.1:$(WEB_PORT)

worker: install ## Run one worker per queue, with the scheduler (start more on any host)
	@$(SANDBOX_ENV) export PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(RUN_ENV); \
	exec $(PY) -m cdpstage.devrun worker_imports worker_batches

worker-imports: install
	$(RUN_ENV) $(MANAGE) worker imports

worker-batches: install
	$(RUN_ENV) $(MANAGE) worker batches

sandbox: install ## Run the local HTTPS stand-in for the CDP Batch API
	$(PY) -m cdpsandbox --port $(SANDBOX_PORT) --state-dir $(SANDBOX_DIR)

browser-deps: ## Install Debian's Chromium for the browser test (root, apt)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Tests use a Redis database of their own (TEST_REDIS_URL), never the one `make run` uses, and
# a test database named for this run (the shell's PID): two runs on one PostgreSQL no longer
# drop each other's database. DJANGO_TEST_DATABASE_NAME chooses one.
TEST_ENV := DJANGO_SECRET_KEY=test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz \
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/1} \
	DJANGO_TEST_DATABASE_NAME=$${DJANGO_TEST_DATABASE_NAME:-test_cdpstage_run$$$$}

test: install browser-deps db ## Run the whole test suite
	$(TEST_ENV) $(PY) -m pytest

test-fast: install db ## Unit tests only (no worker, sandbox or browser)
	$(TEST_ENV) $(PY) -m pytest -m "not integration and not browser"

chaos: install db ## SIGKILL workers at each step of import -> build -> send (production lease); prints figures
	$(TEST_ENV) CHAOS_KILLS=$${CHAOS_KILLS:-15} CHAOS_ROWS=$${CHAOS_ROWS:-10000} \
		CHAOS_LEASE_SECONDS=$${CHAOS_LEASE_SECONDS:-30} \
		CHAOS_MAINTENANCE_SECONDS=$${CHAOS_MAINTENANCE_SECONDS:-10} \
		$(PY) -m pytest -p no:cacheprovider -q tests/batches/test_chaos.py

# vulture: unused imports, variables and unreachable code (80 %: what it is sure of; below that
# it reports every admin option, command and job that Django or RQ calls by name). `explain` is
# part of http.server's send_error signature, which the sandbox overrides. Not tests/: a
# fixture asked for by its side effect reads to it as an unused argument.
VULTURE := $(VENV)/bin/vulture batches cdpstage records cdpsandbox bench manage.py \
	--exclude '*/migrations/*' --min-confidence 80 --ignore-names explain

lint: install ## ruff lint + format check, vulture (dead code)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VULTURE)

fmt: install ## Format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: migrate ## Measure import and build throughput against the common approaches
	$(RUN_ENV) $(PY) -m bench

clean: ## Remove the virtualenv, media and sandbox state
	rm -rf $(VENV) media $(SANDBOX_DIR) .pytest_cache .ruff_cache
