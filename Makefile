# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv (Python >= 3.11) when missing and installs the project with its extras.

PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.11 not found; run: make PYTHON=/path/to/python3.11 ..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/llava-lf demo --out $(DEMO_DIR)

# Lint, the package's layering contracts (pyproject.toml [tool.importlinter]), then the whole suite.
test: $(STAMP)
	$(BIN)/ruff check plugin tests $(wildcard benchmarks)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

clean-demo:
	rm -rf $(DEMO_DIR)
