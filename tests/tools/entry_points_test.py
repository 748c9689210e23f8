"""Every tool runs as `python tools/<name>.py` and as the console script `magnets-<name>`
(setup.py: package `magnets_tf_tools` = tools/, entry point `<module>:run`)."""
import ast
import subprocess
import sys

import pytest

from tests.tool_runner import ROOT, tool_env

TOOLS = sorted(p.stem for p in (ROOT / "tools").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", TOOLS)
def test_tool_has_main_and_run_and_no_path_edits(name):
    source = (ROOT / "tools" / f"{name}.py").read_text()
    assert "sys.path" not in source, "the package is installed: import it, do not edit sys.path"
    functions = {node.name: node for node in ast.parse(source).body
                 if isinstance(node, ast.FunctionDef)}
    assert not functions["main"].args.args, "main() takes no arguments (magnets_tf.cli.app.run)"
    assert "app.run(main)" in ast.unparse(functions["run"])
    assert source.rstrip().endswith('if __name__ == "__main__":\n    run()')


def test_console_script_way_runs_the_tool_and_its_help():
    # What the generated `magnets-flops` script does: import the module, call run().
    script = ("import importlib.util, sys\n"
              f"spec = importlib.util.spec_from_file_location('magnets_tf_tools.flops', "
              f"{str(ROOT / 'tools' / 'flops.py')!r})\n"
              "module = importlib.util.module_from_spec(spec)\n"
              "sys.modules[spec.name] = module\n"
              "spec.loader.exec_module(module)\n"
              "module.run()\n")

    def run(*args):
        return subprocess.run([sys.executable, "-c", script, *args], env=tool_env(),
                              capture_output=True, text=True, timeout=300)

    out = run("--num_steps=12", "--guidance_steps=4")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "baseline_gflops=1294 magnets_gflops=490 ratio=2.64"
    help_text = run("--help").stdout
    assert "GFLOPs of MaskGIT++" in help_text and "--guidance_steps" in help_text
