# The two commands of the README: `make demo` (the main job) and `make test`. Each creates or updates
# the venv and installs what it needs. Upstream LLaVA-NeXT is installed from a local source directory
# when one exists (LLAVA_NEXT_SRC), so that the tests marked `upstream` run.
PYTHON ?= python3
VENV ?= .venv
LLAVA_NEXT_SRC ?= $(HOME)/LLaVA-NeXT
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed-$(shell cat setup.py constraints.txt | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install upstream test demo demo-train bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.py constraints.txt
	@echo "[make] installing torch 2.14.1 + torchvision 0.29.1 and llava_st[dev] into $(VENV) (first time: a few minutes)"
	$(PIP) install -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP) upstream

upstream: $(STAMP)
	@if [ -f "$(LLAVA_NEXT_SRC)/llava/__init__.py" ]; then \
		if ! $(PY) -c "import llava, os, sys; sys.exit(0 if os.path.realpath(os.path.dirname(llava.__file__)).startswith(os.path.realpath('$(LLAVA_NEXT_SRC)')) else 1)" 2>/dev/null; then \
			echo "[make] installing upstream LLaVA-NeXT from $(LLAVA_NEXT_SRC) (--no-deps, editable)"; \
			$(PIP) install --no-deps -e "$(LLAVA_NEXT_SRC)"; \
		fi; \
	else \
		echo "[make] upstream LLaVA-NeXT not found at LLAVA_NEXT_SRC=$(LLAVA_NEXT_SRC): tests marked 'upstream' will be SKIPPED (see README, 'Upstream LLaVA-NeXT')"; \
	fi

test: install
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: install
	$(PY) -m llava_st.cli demo

demo-train: install
	$(PY) -m llava_st.cli demo --train-checkpoint

bench: install
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .cache
