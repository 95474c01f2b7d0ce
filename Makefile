# tessel: two commands on a fresh machine, `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
DATA_DIR ?= ./tessel-data

.PHONY: install dev test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP) $@

install: $(STAMP)

dev: $(DEVSTAMP)

test: $(DEVSTAMP)
	bash scripts/test-setup.sh
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/tessel demo --data-dir $(DATA_DIR)

# tessel beside Orthanc (installed from Debian's packages); see benchmarks/README.md.
bench: $(DEVSTAMP)
	bash scripts/orthanc-setup.sh
	$(PY) -m benchmarks.compare $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
