"""`pytest_test`: a py_test that runs one pytest-style test file through //bazel:pytest_runner.py.

The repository's tests are plain pytest modules (fixtures, conftest.py, pytest.ini markers), so
every test target shares one runner as `main` instead of carrying Bazel boilerplate.
"""

_RUNNER = "//bazel:pytest_runner.py"
_PYTEST_INI = "//:pytest.ini"

def pytest_test(name, srcs, deps = [], data = [], args = [], size = "medium", timeout = None,
                **kwargs):
    """A py_test running `srcs[0]` under pytest with the repository's pytest.ini.

    Args:
      name: target name.
      srcs: the test file (first) and any extra sources.
      deps: py_library targets imported by the test (conftest.py libraries included).
      data: files the test reads at run time.
      args: extra pytest arguments, after the test file.
      size: "medium", or "large" for tests that start subprocesses (tools, trainings).
      timeout: unless given, "long" (900 s), "eternal" (3600 s) for large tests: TensorFlow
        tests on two shared, loaded cores measured up to 320 s (medium) and 680 s (large).
      **kwargs: passed to py_test (tags, ...).
    """
    if not srcs:
        fail("pytest_test %s: srcs must name the test file" % name)
    test_file = "%s/%s" % (native.package_name(), srcs[0]) if native.package_name() else srcs[0]
    native.py_test(
        name = name,
        srcs = srcs + [_RUNNER],
        main = _RUNNER,
        args = [test_file] + args,
        deps = deps,
        data = data + ([] if _PYTEST_INI in data else [_PYTEST_INI]),
        size = size,
        timeout = timeout or ("eternal" if size == "large" else "long"),
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )
