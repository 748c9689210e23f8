# Set-up, tests and the main job. Works as root (installs Debian data sets too) or in a venv.
PYTHON ?= python3
PIP = $(PYTHON) -m pip
export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: setup test test-all quickstart quickstart-smoke

setup:
	bash scripts/setup.sh

test: setup
	$(PYTHON) -m pytest -q -n 2 tests

test-all: setup
	$(PYTHON) -m pytest -q -n 2 -m "" tests

quickstart: setup
	$(PYTHON) tools/quickstart.py --output_dir=runs/quickstart

quickstart-smoke: setup
	$(PYTHON) tools/quickstart.py --output_dir=runs/quickstart_smoke --quick
