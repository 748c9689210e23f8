"""Regenerates the per-directory BUILD files from the tree (run after adding modules).

Library deps are read from each module's `magnets_tf` imports; tests depend on the
module they mirror plus what they import.
"""
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIRD_PARTY = "requirement"


def _imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _label(module_path):
    rel = module_path.relative_to(ROOT).with_suffix("")
    return f"//{rel.parent.as_posix()}:{rel.name}"


def _module_file(dotted):
    path = ROOT.joinpath(*dotted.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return None


def _deps(path):
    deps = set()
    for name in _imports(path):
        if name.split(".")[0] in ("magnets_tf", "tests"):
            target = _module_file(name)
            if target is not None and target != path:
                deps.add(_label(target))
    return sorted(deps)


def main():
    by_dir = defaultdict(list)
    for top in ("magnets_tf", "tools", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                by_dir[path.parent].append(path)
    for directory, files in sorted(by_dir.items()):
        rule_lines = ['package(default_visibility = ["//visibility:public"])', ""]
        for path in files:
            name = path.stem if path.name != "__init__.py" else directory.name
            if directory.parts[-1:] == ("tools",) or "tools" == path.relative_to(ROOT).parts[0]:
                kind = "py_binary"
            elif path.name.endswith("_test.py"):
                kind = "py_test"
            else:
                kind = "py_library"
            deps = "".join(f'        "{d}",\n' for d in _deps(path))
            extra = '    main = "%s",\n' % path.name if kind == "py_binary" else ""
            size = '    size = "medium",\n' if kind == "py_test" else ""
            rule_lines.append(
                f'{kind}(\n    name = "{name}",\n    srcs = ["{path.name}"],\n{extra}{size}'
                f'    deps = [\n{deps}    ],\n)\n')
        (directory / "BUILD").write_text("\n".join(rule_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
