# The two commands: `make run` and `make test`. Everything else is a helper for them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
DEPS := $(VENV)/.deps-installed

# Tests always run on PostgreSQL and Redis (local defaults, or the caller's URLs).
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/loyalty)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/15)

.PHONY: run test test-slow setup chromium lint check-migrations contracts pytest bench soak services lock clean

$(DEPS): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing dependencies into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@touch $@

setup: $(DEPS)

# The browser tests (tests/browser) drive Debian's chromium through Playwright, which never
# downloads a browser of its own. Installed here when missing; if that fails the tests say so.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x $(CHROMIUM) || { \
		echo "==> installing chromium (Debian package) for the browser tests"; \
		log=$$(mktemp); \
		{ $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium; } >"$$log" 2>&1 \
		|| { cat "$$log" >&2; echo "!!! could not install chromium: the browser tests (tests/browser) will fail" \
			"until $(CHROMIUM) exists (apt-get install chromium)" >&2; }; \
		rm -f "$$log"; }

## make run: set up and start the platform (embedded defaults unless DATABASE_URL/REDIS_URL/CELERY_BROKER_URL)
run: $(DEPS)
	@$(PY) manage.py migrate --noinput
	@$(PY) manage.py seed_demo
	@$(PY) manage.py seed_demo_tiers
	@$(PY) manage.py seed_demo_campaigns
	@$(PY) manage.py seed_demo_catalog
	@$(PY) manage.py seed_demo_redemptions
	@$(PY) manage.py seed_demo_insights
	@bash scripts/run.sh

## make test: lint, contracts, migrations check and the whole suite on PostgreSQL and Redis
test: $(DEPS) chromium
	@DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" bash scripts/ensure-services.sh
	@DATABASE_URL="$(TEST_DATABASE_URL)" $(PY) scripts/ensure_database.py
	@echo "==> ruff check" && $(BIN)/ruff check .
	@echo "==> ruff format --check" && $(BIN)/ruff format --check .
	@echo "==> import contracts" && $(BIN)/lint-imports
	@echo "==> makemigrations --check" && DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" \
		$(PY) manage.py makemigrations --check --dry-run
	@echo "==> OpenAPI schema (no warnings)" && $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null
	@echo "==> pytest" && DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" \
		$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

## make test-slow: the thorough variants left out of make test (pytest -m slow), on PostgreSQL and Redis
test-slow: $(DEPS)
	@DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" bash scripts/ensure-services.sh
	@DATABASE_URL="$(TEST_DATABASE_URL)" $(PY) scripts/ensure_database.py
	@echo "==> pytest -m slow" && DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" \
		$(BIN)/pytest -m slow $(PYTEST_ARGS)

lint: $(DEPS)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

format: $(DEPS)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

## make bench: benchmarks under bench/ (PostgreSQL and Redis); prints figures
bench: $(DEPS)
	@DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" bash scripts/ensure-services.sh
	@DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" $(PY) bench/run.py $(BENCH)

## make soak: 10 minutes of mixed load on the platform in its production shape; fails on any
## error, on memory growing past 10 %, or on a broken ledger or stock invariant at the end
SOAK_SECONDS ?= 600
SOAK_RATE ?= 30
soak: $(DEPS)
	@DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" bash scripts/ensure-services.sh
	@DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" BENCH_LOAD_SCENARIOS=baseline \
		BENCH_SOAK_SECONDS=$(SOAK_SECONDS) BENCH_SOAK_RATE=$(SOAK_RATE) BENCH_SOAK_STRICT=1 $(PY) bench/run.py load

## make lock: re-pin requirements*.txt from requirements*.in
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip-tools
	$(BIN)/pip-compile -q --strip-extras --no-header --no-emit-index-url --no-emit-find-links requirements.in -o requirements.txt
	$(BIN)/pip-compile -q --strip-extras --no-header --no-emit-index-url --no-emit-find-links requirements-dev.in -o requirements-dev.txt

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .ruff_cache
