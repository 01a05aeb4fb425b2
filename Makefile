# The two commands of the README: `make demo` (the main job) and `make test`. Each creates or updates
# the venv and installs exactly the versions of requirements.lock (every package pinned, with hashes;
# regenerated from pyproject.toml by `make lock`). Upstream LLaVA-NeXT is installed from a local source
# directory when one exists (LLAVA_NEXT_SRC), so that the tests marked `upstream` run.
PYTHON ?= python3
VENV ?= .venv
LOCK := requirements.lock
LLAVA_NEXT_SRC ?= $(HOME)/LLaVA-NeXT
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
# `make lock UPGRADE="--upgrade-package NAME"` (or UPGRADE=--upgrade) moves pins; without it, pip-compile
# keeps every existing pin that still satisfies pyproject.toml.
UPGRADE ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install upstream lock lint test demo demo-train base bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The lock is complete, so --no-deps: nothing outside it can be installed. torch 2.14.1 + torchvision
# 0.29.1 come from this machine's disk when they lie there (pip's find-links), else from the registry.
$(STAMP): $(PY) pyproject.toml $(LOCK)
	@echo "[make] installing $(LOCK) (exact versions, hashes checked) and llava_st into $(VENV) (first time: a few minutes)"
	$(PIP) install --require-hashes --no-deps -r $(LOCK)
	$(PIP) install --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP) upstream

upstream: $(STAMP)
	@if [ -f "$(LLAVA_NEXT_SRC)/llava/__init__.py" ]; then \
		if ! $(PY) -c "import llava, os, sys; sys.exit(0 if os.path.realpath(os.path.dirname(llava.__file__)).startswith(os.path.realpath('$(LLAVA_NEXT_SRC)')) else 1)" 2>/dev/null; then \
			echo "[make] installing upstream LLaVA-NeXT from $(LLAVA_NEXT_SRC) (--no-deps, editable)"; \
			$(PIP) install --no-deps --no-build-isolation -e "$(LLAVA_NEXT_SRC)"; \
		fi; \
	else \
		echo "[make] upstream LLaVA-NeXT not found at LLAVA_NEXT_SRC=$(LLAVA_NEXT_SRC): tests marked 'upstream' will be SKIPPED (see README, 'Upstream LLaVA-NeXT')"; \
	fi

# Regenerate the lock from pyproject.toml's declarations (the `dev` extra: what make test/demo install).
lock: $(PY)
	@$(PY) -c "import piptools" 2>/dev/null || $(PIP) install pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --extra dev --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links $(UPGRADE) -o $(LOCK) pyproject.toml

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: install
	$(PY) -m llava_st.cli demo

demo-train: install
	$(PY) -m llava_st.cli demo --train-checkpoint

# Retrain the base model (llava_st/recipes/base_model.py) on one core: writes llava_st/checkpoints/llava-st-base
# (weights + recipe.json with the held-out QA accuracies) and bench/results/base_model.json.
base: install
	OMP_NUM_THREADS=1 $(PY) -m llava_st.recipes.base_model
	$(PY) -m bench.readme_table

bench: install
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .cache build dist
