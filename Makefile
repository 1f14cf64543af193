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
# Pinned CPU numerics (msa_lib/numerics.py explains each; tests/test_numerics.py checks that
# these equal numerics.PINNED_ENV). Set before any Python starts, so before torch loads.
# MSA_NUMERICS=native keeps the machine's defaults, on purpose; non-x86-64 machines cannot pin.
ifneq ($(MSA_NUMERICS),native)
ifeq ($(shell uname -m),x86_64)
export ATEN_CPU_CAPABILITY := avx2
export MKL_CBWR := COMPATIBLE
export MKL_DYNAMIC := FALSE
export ONEDNN_MAX_CPU_ISA := AVX2
export OMP_NUM_THREADS := 2
export MKL_NUM_THREADS := 2
endif
endif

.PHONY: setup test test-lib bench clean vendor execute book lab student browser pdf
CHAPTERS := $(sort $(wildcard chapters/*.ipynb))
CHAPTER ?= $(CHAPTERS)
VENDOR := $(BUILD)/vendor/.stamp
PYTEST_NB := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=600

setup: $(STAMP)
	@$(PY) -m msa_lib kernel >/dev/null   # the chapters' Jupyter kernel 'msa-book' (pinned numerics)

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
	rm -rf $(BUILD)/vendor && mkdir -p $(BUILD)/vendor/html-manager $(BUILD)/vendor/mathjax/input $(BUILD)/vendor/mathjax/output
	@# only what the book loads: the TeX-to-CHTML bundle, TeX extensions it may autoload, the CHTML
	@# fonts, and the menu / accessibility components (not the SVG, MathML or speech builds)
	cd book/node_modules/mathjax/es5 && cp tex-chtml.js $(CURDIR)/$(BUILD)/vendor/mathjax/ && \
	  cp -r ui a11y $(CURDIR)/$(BUILD)/vendor/mathjax/ && cp -r input/tex $(CURDIR)/$(BUILD)/vendor/mathjax/input/ && \
	  cp -r output/chtml $(CURDIR)/$(BUILD)/vendor/mathjax/output/
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
	  $(PY) -m papermill "$$nb" "$$nb" -k msa-book --cwd chapters --no-progress-bar --log-level WARNING || exit 1; done

# The HTML book from the committed chapter outputs (which `make test` re-runs and checks
# with nbval); nothing tracked is touched. EXECUTE=1 first re-executes every chapter into
# $(BUILD)/executed (a copy of the book) and builds that instead.
EXECUTE ?= 0
book: setup vendor
ifeq ($(EXECUTE),1)
	@mkdir -p $(BUILD)/home
	$(PY) -m msa_lib student --teacher --out $(BUILD)/executed
	@for nb in $(BUILD)/executed/chapters/*.ipynb; do echo "== $$nb"; \
	  $(PY) -m papermill "$$nb" "$$nb" -k msa-book --cwd $(BUILD)/executed/chapters --no-progress-bar \
	    --log-level WARNING || exit 1; done
	$(VENV)/bin/jupyter-book build $(BUILD)/executed -W -n --keep-going
	@echo "The book is at $(CURDIR)/$(BUILD)/executed/_build/html/index.html"
else
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is at $(CURDIR)/$(BUILD)/html/index.html"
endif

# The whole book as one PDF, printed from its single-page HTML by headless Chromium (no TeX).
pdf: setup vendor browser
	@mkdir -p $(BUILD)/home
	$(PY) -c "from msa_lib.publish import build_pdf; print('The PDF is at', build_pdf())"

# The browser check of `make test` needs headless Chromium and its driver: installed here
# where this user may install Debian packages, otherwise one message says what to install.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver for the browser check"; \
	    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; \
	  fi; \
	  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	    echo "make test needs headless Chromium for its browser check. Install the Debian/Ubuntu packages" \
	         "'chromium' and 'chromium-driver' (sudo apt-get install chromium chromium-driver), or run" \
	         "'make test-lib' for the library tests alone."; exit 2; fi; fi

# The student edition: every chapter without its solutions (answer cells for the
# self-checks instead) and its HTML book, in $(BUILD)/student.
student: setup vendor
	@mkdir -p $(BUILD)/home
	$(PY) -m msa_lib student --build

test-lib: setup
	$(PY) -m pytest tests -m "not notebooks and not book"

# Library tests, chapters on the smoke profile (SynthMSA and a real-shape fixture),
# claims, the book build with a browser check, and nbval of every chapter. nbval re-runs
# the chapters as committed (from git HEAD, copied to $(NBVAL_DIR)), never the working
# tree, which `make execute` may have rewritten: NBVAL_SOURCE=worktree checks the latter.
# On a machine that cannot pin the numerics, nbval only checks that each chapter runs
# (--nbval-lax); the demo claims of that run are still checked against their ranges.
NBVAL_DIR := $(BUILD)/nbval
NBVAL_SOURCE ?= git
NBVAL_MODE = $(shell $(PY) -m msa_lib numerics --supported >/dev/null 2>&1 && [ "$(MSA_NUMERICS)" != native ] \
               && echo strict || echo lax)
test: setup vendor browser
	@mkdir -p $(BUILD)/home
	@rm -rf $(NBVAL_DIR) && mkdir -p $(NBVAL_DIR)
	@if [ "$(NBVAL_SOURCE)" = git ] && git rev-parse --verify -q HEAD >/dev/null 2>&1; then \
	  git archive HEAD chapters | tar -x -C $(NBVAL_DIR); \
	else echo "nbval checks the working tree's chapters (NBVAL_SOURCE=$(NBVAL_SOURCE), or not a git checkout)"; \
	  cp -r chapters $(NBVAL_DIR)/; fi
	@[ "$(NBVAL_MODE)" = strict ] && echo "nbval: bit for bit against the committed outputs (pinned numerics)" || \
	  echo "nbval: no pinned numerics here ($$($(PY) -m msa_lib numerics --supported), MSA_NUMERICS=$(MSA_NUMERICS));" \
	       "the chapters must run and their claims hold, outputs are not compared (see README)"
	MSA_DEVICE=cpu MSA_CLAIMS_DIR=$(CURDIR)/$(NBVAL_DIR)/claims MSA_NBVAL_CLAIMS=$(CURDIR)/$(NBVAL_DIR)/claims \
	  $(PY) -m pytest $(NBVAL_DIR)/chapters tests $(PYTEST_NB) --durations=40 $(if $(filter lax,$(NBVAL_MODE)),--nbval-lax)

# Jupyter Lab on the chapters, with the pinned kernel and its state inside $(BUILD).
lab: setup
	@mkdir -p $(BUILD)/home
	$(VENV)/bin/jupyter lab chapters/

bench: setup
	$(PY) -m msa_lib bench --out $(BUILD)/bench.csv

clean:
	rm -rf $(BUILD) book/node_modules
