# The two commands a newcomer needs: `make book` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BUILD := _build
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Keep Matplotlib, IPython and Jupyter state inside the build folder, never in $HOME.
export MPLCONFIGDIR := $(CURDIR)/$(BUILD)/home/matplotlib
export IPYTHONDIR := $(CURDIR)/$(BUILD)/home/ipython
export JUPYTER_CONFIG_DIR := $(CURDIR)/$(BUILD)/home/jupyter-config
export JUPYTER_DATA_DIR := $(CURDIR)/$(BUILD)/home/jupyter-data
export JUPYTER_PLATFORM_DIRS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export OMP_NUM_THREADS ?= 2

.PHONY: setup test test-lib bench clean vendor execute book
CHAPTERS := $(sort $(wildcard chapters/*.ipynb))
CHAPTER ?= $(CHAPTERS)
VENDOR := $(BUILD)/vendor/.stamp
PYTEST_NB := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=600

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@# A CPU machine without torch gets the CPU wheel first; otherwise pip would pull a CUDA build.
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q torch; \
	  else $(PIP) install -q torch==2.13.0; fi; fi
	$(PIP) install -q -e '.[test,book]'
	@rm -f $(VENV)/.installed-*; touch $@

# MathJax and the ipywidgets manager, served by the book itself (no CDN), from the
# npm packages pinned in book/package-lock.json.
vendor: $(VENDOR)

$(VENDOR): book/package.json book/package-lock.json
	cd book && npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(BUILD)/vendor && mkdir -p $(BUILD)/vendor/html-manager
	cp -r book/node_modules/mathjax/es5 $(BUILD)/vendor/mathjax && rm -rf $(BUILD)/vendor/mathjax/sre
	cp book/node_modules/requirejs/require.js $(BUILD)/vendor/require.js
	cd book/node_modules/@jupyter-widgets/html-manager/dist && \
	  cp embed-amd.js *.woff2 *.woff *.ttf *.eot *.svg $(CURDIR)/$(BUILD)/vendor/html-manager/
	touch $@

# Refresh committed chapter outputs (demo profile unless MSA_PROFILE says otherwise):
#   make execute                         every chapter
#   make execute CHAPTER=chapters/02_fusion_baselines.ipynb
execute: setup
	@mkdir -p $(BUILD)/home
	@for nb in $(CHAPTER); do echo "== $$nb"; \
	  $(PY) -m papermill "$$nb" "$$nb" --cwd chapters --no-progress-bar --log-level WARNING || exit 1; done

# Fresh clone -> set-up -> every chapter executed -> HTML book.
book: setup vendor execute
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is at $(CURDIR)/$(BUILD)/html/index.html"

test-lib: setup
	$(PY) -m pytest tests -m "not notebooks and not book"

# Library tests, chapters on the smoke profile (SynthMSA and a real-shape fixture),
# claims, the book build with a browser check, and nbval of every committed chapter.
test: setup vendor
	@mkdir -p $(BUILD)/home
	MSA_CLAIMS_DIR=$(CURDIR)/$(BUILD)/claims-nbval $(PY) -m pytest tests chapters $(PYTEST_NB)

bench: setup
	$(PY) -m msa_lib bench --out $(BUILD)/bench.csv

clean:
	rm -rf $(BUILD) book/node_modules
