# `make run` (the main job), `make test` (the whole suite, what CI runs) and `make test-fast`. Each creates .venv when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/digits-brightness.toml

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# PYTHONWARNINGS: setuptools' notice about editable installs with a package_dir mapping (plugins/ -> ddrl_plugins)
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e ".[dev]"
	touch $@

.PHONY: run test test-fast setup
setup: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/ddrl compare $(CONFIG)

test: $(VENV)/.installed
	$(PY) -m pytest -q --durations=25

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"
