"""Every module and test file has its Bazel target, so BUILD files cannot rot."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build_srcs(directory):
    build = directory / "BUILD"
    if not build.exists():
        return None
    return set(re.findall(r'srcs\s*=\s*\["([^"]+)"\]', build.read_text()))


def _python_files():
    for top in ("magnets_tf", "tools", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            if top == "tests" and not (path.name.endswith("_test.py") or path.name == "conftest.py"):
                continue
            yield path


def test_every_python_file_has_a_build_target():
    missing = []
    for path in _python_files():
        srcs = _build_srcs(path.parent)
        if srcs is None or path.name not in srcs:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"add py_library/py_test/py_binary targets for: {missing}"


def test_build_targets_point_at_existing_files():
    stale = []
    for build in ROOT.rglob("BUILD"):
        for src in _build_srcs(build.parent) or ():
            if not (build.parent / src).exists():
                stale.append(str((build.parent / src).relative_to(ROOT)))
    assert not stale, f"BUILD targets name missing files: {stale}"
