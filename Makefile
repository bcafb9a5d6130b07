# khabar — Persian news topics and summaries.
# `make demo` runs the main job, `make test` runs the tests; both set up .venv when missing.

PYTHON ?= python3
VENV   ?= .venv
# The torch build to install. The default is the CPU build; for CUDA choose yours, e.g.
#   make install TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126'
TORCH  ?= torch==2.13.0
EXTRAS ?= dev
# Test processes: one per core (each runs torch on one thread), at most 4 so that each one's
# tiny models and fitted fixtures, built per process, don't cost more than the split saves.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
BIN    := $(VENV)/bin
# One stamp per set of extras, so `make install EXTRAS=dev,serve` on an existing .venv installs them.
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.DEFAULT_GOAL := help
.PHONY: help install install-fast test test-all lint tiny-models train-classifier train-summarizer demo bench serve browser-deps clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(STAMP)  ## create .venv and install khabar with its dev tools

install-fast: $(STAMP)  ## add the fast CPU engines (ONNX Runtime, CTranslate2)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS),fast]'

test: $(STAMP)  ## run the fast offline test suite
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test-all: $(STAMP)  ## run every test, slow ones included
	$(BIN)/python -m pytest -q -m 'slow or not slow'

lint: $(STAMP)  ## check style with ruff
	$(BIN)/ruff check inference training tests

models/tiny/classifier/config.json models/tiny/summarizer/config.json: | $(STAMP)
	$(BIN)/khabar-train tiny-models --out models/tiny

tiny-models: models/tiny/classifier/config.json  ## build the tiny offline starting models in models/tiny/

train-classifier: tiny-models  ## train the tiny topic classifier on the bundled sample
	$(BIN)/khabar-train configs/classifier/tiny.yaml

train-summarizer: tiny-models  ## train the tiny summarizer on the bundled sample
	$(BIN)/khabar-train configs/summarizer/tiny.yaml

demo: $(STAMP)  ## the main job: train the tiny models if missing, then read the demo articles
	$(BIN)/python scripts/demo.py

bench: install-fast  ## inference speed: naive transformers vs khabar's default and fast CPU paths
	$(BIN)/python -m bench.run

serve: $(STAMP)  ## serve the demo's models (after make demo) at http://127.0.0.1:8000
	@test -f models/classifier/config.json -a -f models/summarizer/config.json || \
		{ echo "make serve: no trained models in models/; run make demo first"; exit 2; }
	@# Installed once: reinstalling on every start would reach for the package index each time.
	@$(BIN)/python -c "import fastapi, uvicorn" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[$(EXTRAS),serve]'
	$(BIN)/khabar serve --classifier models/classifier --summarizer models/summarizer

browser-deps: $(STAMP)  ## Chromium, its driver, Persian fonts and selenium, for the browser test (Debian, as root)
	apt-get install -y chromium chromium-driver fonts-noto-core
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS),serve,browser]'

clean:  ## remove the environment, models and caches
	rm -rf $(VENV) models .pytest_cache .hypothesis *.egg-info
