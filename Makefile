# `make test` works on a fresh clone: it installs the suite's Debian tools (as root), creates
# .venv, installs the package, runs the suite: three pytest-xdist workers (a test file stays on
# one worker), beside them the timed fault tests, then the tansu smoke subset.
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

# The timed tests (`serial`: the fault tests, the consumer group, the benches with a time
# limit) and the tansu subset run one after another beside the parallel part, which runs at a
# lower priority (nice 10, inherited by its servers: a tenth of the CPU against a busy bench),
# so their processes get the CPU the moment they need it (recovery limits of seconds, the
# benches' 5 minutes) while the rest of the suite uses what they leave. Their output follows the
# parallel part's; `make test` fails if either lane does.
PARALLEL := nice -n 10 $(BIN)/python -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder \
	-m 'not serial'
SERIAL   := $(BIN)/python -m pytest -q -m serial $(SERIAL_FILES) \
	&& HUB_TEST_BROKER=tansu $(BIN)/python -m pytest -q -m tansu_smoke $(SMOKE_FILES)

test: setup install
	$(BIN)/ruff check .
	@echo "$(SERIAL)  > .pytest-serial.log &"; echo "$(PARALLEL)"
	@( $(SERIAL) ) > .pytest-serial.log 2>&1 & serial=$$!; \
	$(PARALLEL); parallel=$$?; \
	wait $$serial; serial=$$?; \
	echo "--- the serial fault tests and the tansu subset (.pytest-serial.log):"; \
	cat .pytest-serial.log; \
	test $$parallel -eq 0 && test $$serial -eq 0

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
