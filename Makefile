# tessel: two commands on a fresh machine, `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
DATA_DIR ?= ./tessel-data

.PHONY: install dev test demo bench clean viewer ohif

# The web viewer (viewer/ -> src/tessel/viewer/static, served at /viewer/), built with the lock file's
# exact packages; rebuilt when its sources change. Needs Node.js 20+ and npm.
VIEWER_OUT := src/tessel/viewer/static/index.html
VIEWER_SRC := $(wildcard viewer/*.html viewer/src/*) viewer/vite.config.js viewer/package.json
VIEWER_DEPS := viewer/node_modules/.package-lock.json

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml Makefile | $(PY)
	$(PIP) install -q -e '.[dev,dist]'
	touch $(STAMP) $@

install: $(STAMP)

dev: $(DEVSTAMP)

$(VIEWER_DEPS): viewer/package-lock.json
	cd viewer && npm ci --no-audit --no-fund
	touch $@

$(VIEWER_OUT): $(VIEWER_DEPS) $(VIEWER_SRC)
	cd viewer && npm run build

viewer: $(VIEWER_OUT)

# The published OHIF Viewer that tests/viewer/test_ohif.py runs against tessel (cached per user).
ohif:
	bash scripts/ohif-fetch.sh

test: $(DEVSTAMP)
	bash scripts/test-setup.sh
	$(MAKE) viewer
	@bash scripts/ohif-fetch.sh || echo "OHIF could not be fetched (is the npm registry reachable?): tests/viewer/test_ohif.py will say it was skipped"
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	@if command -v npm >/dev/null; then $(MAKE) viewer; else \
	  echo "npm not found: the viewer at /viewer/ is not built (install Node.js 20+, then run make viewer)"; fi
	$(VENV)/bin/tessel demo --data-dir $(DATA_DIR)

# tessel beside Orthanc (installed from Debian's packages); see benchmarks/README.md.
bench: $(DEVSTAMP)
	bash scripts/orthanc-setup.sh
	$(PY) -m benchmarks.compare $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info src/tessel/viewer/static viewer/node_modules
