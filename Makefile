# make run   - create .venv, install rpm, serve on 127.0.0.1:5002 (PORT=N for another port;
#              Ctrl-C stops it)
# make test  - create .venv, install rpm with its test extras, run the whole suite
PYTHON ?= python3
PORT ?= 5002
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.installed-test
QA_INSTALLED := $(VENV)/.installed-qa
SOURCES := setup.cfg setup.py pyproject.toml rpm/server/managed/_intocgroup.c

.PHONY: run test tui lint bench mutate test-random plugin-cache clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(BIN)/python $(SOURCES)
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_INSTALLED): $(BIN)/python $(SOURCES)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(INSTALLED)

$(QA_INSTALLED): $(BIN)/python $(SOURCES)
	$(BIN)/pip install --quiet -e '.[test,qa]'
	touch $@ $(TEST_INSTALLED) $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/twistd --nodaemon --pidfile= rpm --port $(PORT)

test: $(TEST_INSTALLED)
	$(BIN)/pytest

tui: $(INSTALLED)
	$(BIN)/rpm-tui

lint: $(TEST_INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(TEST_INSTALLED)
	$(BIN)/python -m bench

# Mutation testing of the safety-critical modules ([mutmut] in setup.cfg); too slow for CI.
mutate: $(QA_INSTALLED)
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/mutmut results

# The whole suite in a random order (pytest-randomly prints the seed to repeat it).
test-random: $(QA_INSTALLED)
	$(BIN)/pytest -p randomly

# For system-wide installs: rebuild twistd's plugin cache after installing or removing rpm.
plugin-cache: $(INSTALLED)
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

clean:
	rm -rf $(VENV) build *.egg-info twisted/plugins/dropin.cache mutants rpm/server/managed/*.so
