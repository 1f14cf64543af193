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

.PHONY: setup test test-lib bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@# A CPU machine without torch gets the CPU wheel first; otherwise pip would pull a CUDA build.
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q torch; \
	  else $(PIP) install -q torch==2.13.0; fi; fi
	$(PIP) install -q -e '.[test,book]'
	@rm -f $(VENV)/.installed-*; touch $@

test-lib: setup
	$(PY) -m pytest tests -m "not notebooks and not book"

test: setup
	$(PY) -m pytest tests

bench: setup
	$(PY) -m msa_lib bench --out $(BUILD)/bench.csv

clean:
	rm -rf $(BUILD)
