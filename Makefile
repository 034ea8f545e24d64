# embtune: `make demo` runs the whole job on the embedded defaults; `make test` runs the tests.
# The tests run in two processes (pytest-xdist): every test has its own database, queue and
# data dir, and half of a test's time is waiting on a server, a worker or a broker.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint bench-quality services lock clean

$(PY):
	$(shell command -v $(PYTHON) >/dev/null 2>&1 && echo $(PYTHON) || echo python3) -m venv $(VENV)

# torch first, from the pinned CPU wheel, so nothing pulls a multi-GB CUDA build; then the
# project with exactly the versions it was tested with (constraints.txt)
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# after upgrading packages in .venv and passing `make test`: record the tested set
lock: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.new
	mv constraints.new constraints.txt

services:
	bash scripts/ensure-services.sh
	bash scripts/ensure-browser.sh || echo 'ensure-browser: chromium unavailable; e2e tests will skip'

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/embtune demo

test: $(STAMP) services
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2

test-slow: $(STAMP) services
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench-quality: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) bench/finetune_quality.py

clean:
	rm -rf .embtune
