"""Bazel BUILD files: every module has a target, and each file is what gen_build.py writes.

Also the rules of scripts/gen_build.py on small trees, and the pytest runner behind every
Bazel test target (bazel/pytest_runner.py).
"""
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_build = _load(ROOT / "scripts" / "gen_build.py", "gen_build")
pytest_runner = _load(ROOT / "bazel" / "pytest_runner.py", "pytest_runner")


def _targets(build_text):
    """{name: attributes} of the rules in a BUILD file (Starlark here is Python syntax)."""
    targets = {}

    def rule(kind):
        def record(name, **attributes):
            targets[name] = dict(attributes, kind=kind)
        return record

    names = {kind: rule(kind) for kind in ("py_library", "py_binary", "pytest_test", "filegroup")}
    names.update(load=lambda *a: None, package=lambda **k: None,
                 exports_files=lambda files: targets.update(
                     exports_files={"kind": "exports_files", "srcs": files}),
                 glob=lambda include, exclude=(): {"glob": include, "exclude": exclude})
    exec(compile(build_text, "BUILD", "exec"), names)  # noqa: S102 - our own generated file
    return targets


def _srcs(target):
    """A target's listed source files (a glob() is not a list of files)."""
    srcs = target.get("srcs", [])
    return srcs if isinstance(srcs, list) else []


def _write(root, files):
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _render(root):
    return {path.relative_to(root).as_posix(): _targets(text)
            for path, text in gen_build.Tree(root).render().items()}


# -- the repository's own BUILD files --------------------------------------------------------


def test_build_files_are_up_to_date():
    stale = sorted(str(path.relative_to(ROOT)) for path in gen_build.stale_files(ROOT))
    assert not stale, f"stale BUILD files, run `python scripts/gen_build.py`: {stale}"


def test_every_python_file_has_a_build_target():
    missing = []
    for top in gen_build.CODE_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            build = path.parent / "BUILD"
            targets = _targets(build.read_text()).values() if build.exists() else ()
            srcs = {src for target in targets for src in _srcs(target)}
            if path.name not in srcs:
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"no Bazel target for: {missing}"


def test_build_targets_point_at_existing_files():
    missing = []
    for build in gen_build.generated_build_files(ROOT):
        for target in _targets(build.read_text()).values():
            for src in _srcs(target):
                if not (build.parent / src).exists():
                    missing.append(str((build.parent / src).relative_to(ROOT)))
    assert not missing, f"BUILD targets name missing files: {missing}"


# -- gen_build rules on small trees ----------------------------------------------------------

PACKAGE_TREE = {
    "magnets_tf/__init__.py": "",
    "magnets_tf/pkg/__init__.py": "from magnets_tf.pkg.a import A\n",
    "magnets_tf/pkg/a.py": "from magnets_tf.pkg import b\nA = 1\n",
    "magnets_tf/pkg/b.py": "import numpy\n",
    "magnets_tf/pkg/c.py": "from . import b\nfrom .. import other\n",
    "magnets_tf/other.py": "",
    "tests/__init__.py": "",
    "tests/conftest.py": "",
    "tests/pkg/__init__.py": "",
    "tests/pkg/a_test.py": "from magnets_tf.pkg import a\n",
}


def test_packages_modules_and_tests(tmp_path):
    _write(tmp_path, PACKAGE_TREE)
    builds = _render(tmp_path)
    pkg = builds["magnets_tf/pkg/BUILD"]
    assert pkg["pkg"] == {"kind": "py_library", "srcs": ["__init__.py"], "deps": [":a"]}
    # A module leaves its own package's __init__ to whoever imports it: no cycle pkg -> a -> pkg.
    assert pkg["a"]["deps"] == [":b"]
    assert "deps" not in pkg["b"]
    assert pkg["c"]["deps"] == [":b", "//magnets_tf:other"]
    test = builds["tests/pkg/BUILD"]["a_test"]
    assert test["kind"] == "pytest_test" and test["size"] == "medium"
    assert test["deps"] == [":pkg", "//magnets_tf", "//magnets_tf/pkg", "//magnets_tf/pkg:a",
                            "//tests", "//tests:conftest"]
    assert builds["BUILD"]["exports_files"]["srcs"] == ["pytest.ini"]


def test_tools_and_files_read_by_path(tmp_path):
    _write(tmp_path, {
        "tools/run.py": "import sys\nif __name__ == '__main__':\n    sys.exit(0)\n",
        "tools/helper.py": "X = 1\n",
        "gin/a.gin": "x = 1\n",
        "tests/__init__.py": "",
        "tests/tools/__init__.py": "",
        "tests/tools/run_test.py": (
            "import subprocess\nfrom pathlib import Path\n"
            "ROOT = Path(__file__).parents[2]\n"
            "TOOL = ROOT / 'tools' / 'run.py'\nGIN = '--gin_file=gin/a.gin'\n"
            "CLIENT = Path(__file__).parent / 'client.py'\n"
            "NOT_PATHS = ['gin', 'tools/helper.py', ROOT / 'gin/missing.gin']\n"),
        "tests/tools/client.py": "",
        "tests/uses_all_tools_test.py": "import os\nTOOLS = os.path.join(__file__, 'tools')\n",
    })
    builds = _render(tmp_path)
    assert builds["tools/BUILD"]["run"]["kind"] == "py_binary"
    assert builds["tools/BUILD"]["helper"]["kind"] == "py_library"
    test = builds["tests/tools/BUILD"]["run_test"]
    assert test["size"] == "large"
    assert test["data"] == [":client", "//gin", "//tools:run"]
    assert builds["gin/BUILD"]["gin"]["srcs"] == {"glob": ["**"], "exclude": ["BUILD"]}
    assert builds["tests/BUILD"]["uses_all_tools_test"]["data"] == ["//tools:helper", "//tools:run"]


def test_tools_as_a_package(tmp_path):
    _write(tmp_path, {
        "tools/__init__.py": "",
        "tools/run.py": "if __name__ == '__main__':\n    pass\n",
        "tests/__init__.py": "",
        "tests/run_test.py": "from tools import run\n",
    })
    builds = _render(tmp_path)
    assert builds["tools/BUILD"]["run"] == {"kind": "py_binary", "srcs": ["run.py"],
                                            "deps": [":tools"]}
    test = builds["tests/BUILD"]["run_test"]
    assert test["data"] == ["//tools:run"] and test["deps"] == [":tests", "//tools"]


def test_stale_and_orphaned_build_files_are_found(tmp_path):
    _write(tmp_path, PACKAGE_TREE)
    _write(tmp_path, {"bazel/BUILD": "# hand-written\n"})
    for path, text in gen_build.Tree(tmp_path).render().items():
        path.write_text(text)
    assert gen_build.stale_files(tmp_path) == {}

    _write(tmp_path, {"magnets_tf/pkg/d.py": ""})
    assert list(gen_build.stale_files(tmp_path)) == [tmp_path / "magnets_tf/pkg/BUILD"]
    (tmp_path / "magnets_tf/pkg/d.py").unlink()

    build = tmp_path / "tests/pkg/BUILD"
    build.write_text(build.read_text().replace('"//tests:conftest",', ""))
    assert list(gen_build.stale_files(tmp_path)) == [build]

    for path in (tmp_path / "tests/pkg").glob("*.py"):
        path.unlink()
    assert gen_build.stale_files(tmp_path) == {build: None}
    assert gen_build.main_for_root(tmp_path, check=False) == 0
    assert not build.exists() and (tmp_path / "bazel/BUILD").read_text() == "# hand-written\n"
    assert gen_build.main_for_root(tmp_path, check=True) == 0


def test_target_name_clash_is_an_error(tmp_path):
    _write(tmp_path, {"magnets_tf/__init__.py": "", "magnets_tf/pkg/__init__.py": "",
                      "magnets_tf/pkg/pkg.py": ""})
    with pytest.raises(SystemExit, match="magnets_tf/pkg/pkg.py.*//magnets_tf/pkg:pkg"):
        gen_build.Tree(tmp_path)


# -- the pytest runner -------------------------------------------------------------------------


def _runfiles(tmp_path):
    root = tmp_path / "runfiles" / "__main__"
    _write(root, {"pytest.ini": "", "tests/a_test.py": "", "magnets_tf/__init__.py": "",
                  "gin/a.gin": ""})
    return root, {"TEST_SRCDIR": str(root.parent), "TEST_WORKSPACE": "__main__"}


def test_runner_passes_bazel_settings_to_pytest(tmp_path):
    root, environ = _runfiles(tmp_path)
    environ.update(TEST_TMPDIR="/tmp/t", XML_OUTPUT_FILE="/tmp/t.xml", TESTBRIDGE_TEST_ONLY="k1")
    args = pytest_runner.pytest_args("tests/a_test.py", ["-m", "slow"], environ)
    assert args[0] == f"{root}/tests/a_test.py"
    assert args[args.index("-c") + 1] == f"{root}/pytest.ini"
    assert args[args.index("--junitxml") + 1] == "/tmp/t.xml"
    assert args[args.index("-k") + 1] == "k1"
    assert args[-2:] == ["-m", "slow"]
    with pytest.raises(SystemExit, match="not in the runfiles"):
        pytest_runner.pytest_args("tests/missing_test.py", [], environ)


def test_runner_flags_repository_modules_from_elsewhere(tmp_path):
    root, _ = _runfiles(tmp_path)
    source = tmp_path / "source"
    _write(source, {"magnets_tf/__init__.py": "", "magnets_tf/sub/__init__.py": "",
                    "gin/a.gin": ""})

    def module(name, path):
        loaded = types.ModuleType(name)
        loaded.__file__ = None if path is None else str(path)
        return loaded

    fine = {"magnets_tf": module("magnets_tf", f"{root}/magnets_tf/__init__.py"),
            "gin": module("gin", "/site-packages/gin/__init__.py"),
            "numpy": module("numpy", "/site-packages/numpy/__init__.py")}
    assert pytest_runner.misplaced_modules(str(root), str(source), fine) == []
    wrong = dict(fine, **{"magnets_tf.sub": module("magnets_tf.sub", None),
                          "magnets_tf.x": module("magnets_tf.x", "/installed/magnets_tf/x.py")})
    assert pytest_runner.misplaced_modules(str(root), str(source), wrong) == [
        "magnets_tf.sub: its __init__.py is not in the runfiles",
        "magnets_tf.x: loaded from /installed/magnets_tf/x.py"]


@pytest.mark.parametrize("test_source, extra_args, exit_code, output", [
    ("def test_ok():\n    pass\n", [], 0, "1 passed"),
    ("def test_bad():\n    assert False\n", [], 1, "1 failed"),
    ("import pytest\n@pytest.mark.slow\ndef test_slow():\n    pass\n", [], 0,
     "all 1 tests deselected"),
    ("import pytest\n@pytest.mark.slow\ndef test_slow():\n    pass\n", ["-m", "slow"], 0,
     "1 passed"),
    ("X = 1\n", [], 5, "no tests ran"),
])
def test_runner_end_to_end(tmp_path, test_source, extra_args, exit_code, output):
    root, environ = _runfiles(tmp_path)
    _write(root, {"pytest.ini": (ROOT / "pytest.ini").read_text(), "tests/a_test.py": test_source})
    runner = ROOT / "bazel" / "pytest_runner.py"
    # Not the outer Bazel test's report file, filter or temporary directory.
    env = {k: v for k, v in os.environ.items()
           if k not in ("XML_OUTPUT_FILE", "TESTBRIDGE_TEST_ONLY", "TEST_TMPDIR")}
    env.update(environ, TEST_TMPDIR=str(tmp_path / "test_tmp"))
    proc = subprocess.run([sys.executable, str(runner), "tests/a_test.py", *extra_args],
                          env=env, cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == exit_code, proc.stdout + proc.stderr
    assert output in proc.stdout


def test_a_program_depending_on_a_module_is_not_its_data(tmp_path):
    """A library that runs every tool by path, and a tool that imports it: Bazel refuses
    the cycle, so the tool is left out of the library's data (other tools stay)."""
    _write(tmp_path, {
        "magnets_tf/__init__.py": "",
        "magnets_tf/drill.py": ("import os\nROOT = os.path.dirname(os.path.dirname(__file__))\n"
                                "def tool(name):\n"
                                "    return os.path.join(ROOT, 'tools', f'{name}.py')\n"),
        "tools/drill.py": ("from magnets_tf import drill\n"
                           "if __name__ == '__main__':\n    pass\n"),
        "tools/train.py": "if __name__ == '__main__':\n    pass\n",
    })
    builds = _render(tmp_path)
    assert builds["magnets_tf/BUILD"]["drill"]["data"] == ["//tools:train"]
    assert "//magnets_tf:drill" in builds["tools/BUILD"]["drill"]["deps"]
