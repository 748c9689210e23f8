"""Runs one pytest file inside a Bazel test: the `main` of every `pytest_test` target.

Usage (Bazel passes the first argument): pytest_runner.py TEST_FILE [PYTEST_ARGS...]
The repository's pytest.ini applies (so `slow` tests are skipped as under plain pytest; run
them with `bazel test --test_arg=-m --test_arg=slow ...`); `--test_filter` becomes `-k`, and
the JUnit report goes where Bazel expects it. A test whose imports of this repository did not
all come from the runfiles (a dep missing from its BUILD file) fails.
"""
import os
import sys

import pytest

# pytest exit code when nothing ran; fine only if tests were deselected (e.g. all `slow`).
_NO_TESTS_COLLECTED = 5


class _DeselectionCounter:
    """pytest plugin counting deselected tests, to tell "all slow" from "found nothing"."""

    def __init__(self):
        self.deselected = 0

    def pytest_deselected(self, items):
        self.deselected += len(items)


def workspace_root(environ):
    """The runfiles directory of this repository (Bazel runs tests from there)."""
    try:
        return os.path.join(environ["TEST_SRCDIR"], environ["TEST_WORKSPACE"])
    except KeyError as missing:
        sys.exit(f"pytest_runner: {missing} is not set; run this through `bazel test`")


def pytest_args(test_file, extra_args, environ):
    """The pytest command line for `test_file` under Bazel's test environment `environ`."""
    root = workspace_root(environ)
    path = os.path.join(root, test_file)
    if not os.path.isfile(path):
        sys.exit(f"pytest_runner: test file {test_file!r} is not in the runfiles ({root})")
    args = [path, "-c", os.path.join(root, "pytest.ini"), "--rootdir", root, "-q"]
    if "TEST_TMPDIR" in environ:
        args += ["--basetemp", os.path.join(environ["TEST_TMPDIR"], "pytest")]
    if "XML_OUTPUT_FILE" in environ:
        args += ["--junitxml", environ["XML_OUTPUT_FILE"]]
    if environ.get("TESTBRIDGE_TEST_ONLY"):
        args += ["-k", environ["TESTBRIDGE_TEST_ONLY"]]
    return args + list(extra_args)


def misplaced_modules(root, source_root, modules):
    """Loaded modules of the repository's packages that did not come from the runfiles.

    A dep missing from a BUILD file does not always fail the import: the module may come from
    the pip-installed copy, or its package become a namespace package without `__init__.py`.
    `root` is the runfiles workspace, `source_root` the checkout it mirrors.
    """
    tops = {name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name))}
    misplaced = []
    for name, module in sorted(modules.items()):
        parts = name.split(".")
        if parts[0] not in tops:
            continue
        path = getattr(module, "__file__", None)
        if path is None:
            if os.path.isfile(os.path.join(source_root, *parts, "__init__.py")):
                misplaced.append(f"{name}: its __init__.py is not in the runfiles")
        elif not os.path.abspath(path).startswith(os.path.join(root, "")):
            if os.path.isfile(os.path.join(source_root, parts[0], "__init__.py")):
                misplaced.append(f"{name}: loaded from {path}")
    return misplaced


def main(argv):
    if len(argv) < 2:
        sys.exit("usage: pytest_runner.py TEST_FILE [PYTEST_ARGS...]")
    counter = _DeselectionCounter()
    code = pytest.main(pytest_args(argv[1], argv[2:], os.environ), plugins=[counter])
    root = workspace_root(os.environ)
    source_root = os.path.dirname(os.path.realpath(os.path.join(root, "pytest.ini")))
    misplaced = misplaced_modules(root, source_root, sys.modules)
    if misplaced:
        print("pytest_runner: repository modules not taken from the runfiles (a dep missing "
              "from a BUILD file? run `python scripts/gen_build.py`):\n  " + "\n  ".join(misplaced))
        return 1
    if code == _NO_TESTS_COLLECTED and counter.deselected:
        print(f"pytest_runner: all {counter.deselected} tests deselected (e.g. marked slow)")
        return 0
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
