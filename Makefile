# BotFactory: `make run` for a local demo, `make test` for the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEST_WORKERS ?= 3
TESTS ?=
PROMTOOL := tools/prometheus/usr/bin/promtool

TEST_DATABASE_URL := $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/botfactory)
TEST_REDIS_URL := $(or $(REDIS_URL),redis://127.0.0.1:6379/0)
# Tests speak plain HTTP to the app, so the redirect to HTTPS is off; the
# HTTPS tests turn it on themselves.
TEST_ENV = DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	CACHE_KEY_PREFIX=bftest DEBUG=0 LOG_FORMAT=text DOTENV_PATH=/dev/null \
	DATABASE_STATEMENT_TIMEOUT_MS=60000 \
	ALLOWED_HOSTS=testserver,127.0.0.1,localhost \
	SECURE_SSL_REDIRECT=0 \
	SECRET_KEY=test-only-$$($(PY) -c 'import secrets; print(secrets.token_hex(16))') \
	FIELD_ENCRYPTION_KEYS=$$($(PY) -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')

.PHONY: run test deps lint fmt lock clean bench-llm bench-webhook screenshots studio-vendor

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	touch $@

.env:
	$(PY) -m botfactory.envfile .env

run: $(VENV)/.installed .env
	DEBUG=1 $(PY) manage.py migrate --no-input
	DEBUG=1 $(PY) manage.py load_demo_bot
	DEBUG=1 $(PY) manage.py create_admin_user
	DEBUG=1 $(PY) manage.py runserver 127.0.0.1:8000

# System tools that tests drive (psql and redis-cli for the service checks
# and outage tests, wrk for the webhook benchmark's flow, promtool for the
# alert rules, Chromium and an emoji font for the browser tests); installed,
# never skipped.
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
deps: $(PROMTOOL)
	@command -v psql >/dev/null && command -v redis-cli >/dev/null && \
		command -v wrk >/dev/null && test -x /usr/bin/chromium && \
		test -f $(EMOJI_FONT) || \
		(apt-get update -qq && apt-get install -y -qq postgresql-client \
			redis-tools wrk chromium fonts-noto-color-emoji)

# promtool ships in Debian's prometheus package (2.42); unpacking the .deb
# gives a standalone binary without installing the server.
$(PROMTOOL):
	rm -rf tools/download && mkdir -p tools/download
	cd tools/download && (apt-get download -qq prometheus || \
		(apt-get update -qq && apt-get download -qq prometheus))
	dpkg -x tools/download/prometheus_*.deb tools/prometheus
	rm -rf tools/download
	test -x $@

# TESTS narrows the run: make test TEST_WORKERS=0 TESTS="tests/bots/test_outage_redis.py -s"
test: $(VENV)/.installed deps
	@$(TEST_ENV) $(PY) -m tests.services_check
	$(TEST_ENV) $(PY) -m pytest -n $(TEST_WORKERS) -q $(TESTS)

# The README's pictures (docs/screenshots/diagram.png and try-it.png), taken
# by the browser tests of those pages from the demo bot.
screenshots: $(VENV)/.installed deps
	$(TEST_ENV) README_SCREENSHOTS=1 $(PY) -m pytest -q \
		"tests/browser/test_diagram.py::test_diagram_draws_every_node_of_the_demo_bot" \
		"tests/browser/test_try_it.py::test_menu_and_order_wizard_in_english"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(VENV)/bin/mypy .

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The LLM stress run (minutes; needs PostgreSQL and Redis): people who read
# each answer before the next question, 8 conversations to a bot, writes
# bench/results/llm_stress.md and .json. BENCH_ARGS=--conversations=32 for
# one level; BENCH_LLM_WORKLOAD= asks again at once (saturation).
BENCH_LLM_WORKLOAD ?= --conversations-per-bot 8 --think-ms 5000-15000
bench-llm: $(VENV)/.installed
	$(PY) -m bench.llm_stress $(BENCH_LLM_WORKLOAD) $(BENCH_ARGS)

# The webhook benchmark (minutes; needs PostgreSQL and Redis): the ceiling,
# BotFactory and the aiogram peer, writes bench/results/webhook.md and .json.
# BENCH_ARGS="--rounds 1 --seconds 10" for a short run.
PEER_VENV := bench/peers/.venv
$(PEER_VENV)/.installed: bench/peers/requirements.lock
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r bench/peers/requirements.lock
	touch $@

bench-webhook: $(VENV)/.installed $(PEER_VENV)/.installed deps
	$(PY) -m bench.webhook_bench $(BENCH_ARGS)

# Refresh the lock after editing pyproject.toml.
lock: $(VENV)/.installed
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 --no-header -o requirements.lock

clean:
	rm -rf $(VENV) data staticfiles

# The studio's front-end libraries: npm installs the pinned versions from
# package-lock.json, and their dist files and licences are copied into the
# static folder, where they are committed (no build step, no CDN).
STUDIO_FRONTEND := bots/studio/frontend
STUDIO_VENDOR := bots/static/studio/vendor
studio-vendor:
	cd $(STUDIO_FRONTEND) && npm ci --ignore-scripts --no-audit --no-fund
	rm -rf $(STUDIO_VENDOR)/jsoneditor && mkdir -p $(STUDIO_VENDOR)/jsoneditor/img
	cd $(STUDIO_FRONTEND)/node_modules/jsoneditor && cp LICENSE NOTICE \
		dist/jsoneditor.min.js dist/jsoneditor.min.css $(CURDIR)/$(STUDIO_VENDOR)/jsoneditor/
	cp $(STUDIO_FRONTEND)/node_modules/jsoneditor/dist/img/jsoneditor-icons.svg \
		$(STUDIO_VENDOR)/jsoneditor/img/
