# Set-up, tests and the main job. Works as root (installs Debian data sets and Bazel too) or in a venv.
PYTHON ?= python3
PIP = $(PYTHON) -m pip
BAZEL ?= bazel
export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: setup test pytest bazel-ci bazel-test test-all quickstart quickstart-smoke check-tensorboard

setup:
	bash scripts/setup.sh

# CI (.ci/run): the pytest suite except the packages Bazel tests, then the Bazel build and
# the layers and decoding tests under Bazel (each test runs once).
BAZEL_CI_TESTS = tests/layers tests/decoding
test: setup
	$(PYTHON) -m pytest -q -n 2 $(addprefix --ignore=,$(BAZEL_CI_TESTS)) tests
	$(MAKE) -o setup bazel-ci

pytest: setup
	$(PYTHON) -m pytest -q -n 2 tests

# Every target builds, and the layers and decoding tests pass under Bazel (a few minutes).
bazel-ci: setup
	@command -v $(BAZEL) >/dev/null || { echo "bazel not found: run 'make setup' as root" \
	  "(Debian bazel-bootstrap), or 'make pytest' for the pytest suite only" >&2; exit 1; }
	$(BAZEL) build //... && $(BAZEL) test $(addsuffix /...,$(addprefix //,$(BAZEL_CI_TESTS))); \
	  status=$$?; $(BAZEL) shutdown; exit $$status

# Every test file under Bazel, each in its own sandbox (much slower than `make pytest`).
bazel-test: setup
	@command -v $(BAZEL) >/dev/null || { echo "bazel not found: run 'make setup' as root" \
	  "(Debian bazel-bootstrap)" >&2; exit 1; }
	$(BAZEL) test //...

test-all: setup
	$(PYTHON) -m pytest -q -n 2 -m "" tests

quickstart: setup
	$(PYTHON) tools/quickstart.py --output_dir=runs/quickstart

quickstart-smoke: setup
	$(PYTHON) tools/quickstart.py --output_dir=runs/quickstart_smoke --quick

# TensorBoard in a real browser: tiny runs (or LOGDIR=runs/...), TensorBoard's data API
# asserted tag by tag, headless Chromium screenshots of four tabs (installs chromium as root).
check-tensorboard: setup
	PYTHON=$(PYTHON) bash scripts/check_tensorboard.sh $(LOGDIR)
