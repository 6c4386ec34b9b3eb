# Two set-up commands: `make demo` and `make test`. Both create .venv and install into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser demo demo-clm test test-fast bench bench-quick profile clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU build of torch first, so that nothing below pulls a CUDA build
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test]" "torch==2.13.0"
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser tests (Playwright drives it through executable_path)
browser:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

demo: $(STAMP)
	$(BIN)/python -m nlpfit.demo

# a small GPT-2 trained from scratch on the data-science Python files installed here (~6 minutes)
demo-clm: $(STAMP)
	$(BIN)/nlpfit train clm --vocab-size 8000 --n-layer 2 --n-embd 128 --n-head 4 --context-length 128 \
	    --max-train-samples 400 --max-eval-samples 5 --max-steps 200 --batch-size 16 --lr 2e-3 --eval-before \
	    --output runs/clm-demo --overwrite
	$(BIN)/nlpfit predict runs/clm-demo "import pandas as pd" "def plot_scatter(df):" --max-new-tokens 32

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -x --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# every task against its plain transformers recipe, one table (bench/bench_tasks.py)
bench: $(STAMP)
	$(BIN)/python bench/bench_tasks.py

# the same on small data and few steps (about 10 minutes on 2 cores)
bench-quick: $(STAMP)
	$(BIN)/python bench/bench_tasks.py --quick

# where each task spends its time (torch.profiler)
profile: $(STAMP)
	$(BIN)/python bench/profile_tasks.py

clean:
	rm -rf $(VENV) runs .pytest_cache
