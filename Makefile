# make run   - create .venv, install rpm, serve on 127.0.0.1:5002 (PORT=N for another port;
#              Ctrl-C stops it)
# make test  - create .venv, install rpm with its test extras, run the whole suite
PYTHON ?= python3
PORT ?= 5002
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.installed-test
SOURCES := setup.cfg pyproject.toml

.PHONY: run test tui lint bench plugin-cache clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(BIN)/python $(SOURCES)
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_INSTALLED): $(BIN)/python $(SOURCES)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(INSTALLED)

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

# For system-wide installs: rebuild twistd's plugin cache after installing or removing rpm.
plugin-cache: $(INSTALLED)
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"

clean:
	rm -rf $(VENV) build *.egg-info twisted/plugins/dropin.cache
