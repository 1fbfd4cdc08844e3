# `make test` works on a fresh clone: it installs the suite's Debian tools (as root), creates
# .venv, installs the package, runs the suite: two pytest-xdist workers (a test file stays on one
# worker), then the timed fault tests alone, then the tansu smoke subset.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test unit integration lint install demo clean setup i18n

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Machine-level tools of the suite (Chromium, promtool): installed as root, else named and skipped.
setup:
	$(PYTHON) tests/setup_machine.py

# Bytecode caches on, whatever the environment says: without them every Python process of the
# suite (pytest and its xdist workers, each hub, connector, reconciler and bench process) compiles
# the repository's modules again, and pytest rewrites every test module's asserts again.
unexport PYTHONDONTWRITEBYTECODE

# The serial and tansu parts collect only the files that use their marker: collecting the whole
# tree costs ~16 CPU-seconds (its imports) each time, on top of the parallel part's own.
SERIAL_FILES := $(shell grep -rlE 'mark\.serial\b' tests)
SMOKE_FILES  := $(shell grep -rlE 'mark\.tansu_smoke\b' tests)

test: setup install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -m serial $(SERIAL_FILES)
	HUB_TEST_BROKER=tansu $(BIN)/python -m pytest -q -m tansu_smoke $(SMOKE_FILES)

unit: install
	$(BIN)/python -m pytest -q tests/unit

integration: setup install
	$(BIN)/python -m pytest -q tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The console's catalogues: extract the messages of the UI's Python and templates into the .pot,
# then merge them into the Vietnamese and Arabic .po files (text; compiled in memory at run time).
LOCALE_DIR := hub/web/locale
i18n: install
	mkdir -p $(LOCALE_DIR)
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --omit-header \
		-k N_ -o $(LOCALE_DIR)/messages.pot .
	for l in vi ar; do \
		if [ -f $(LOCALE_DIR)/$$l/LC_MESSAGES/messages.po ]; then \
			$(BIN)/pybabel update -i $(LOCALE_DIR)/messages.pot -d $(LOCALE_DIR) -l $$l \
				--no-fuzzy-matching --ignore-obsolete --ignore-pot-creation-date; \
		else $(BIN)/pybabel init -i $(LOCALE_DIR)/messages.pot -d $(LOCALE_DIR) -l $$l; fi; \
	done

demo: install
	$(BIN)/hub demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
