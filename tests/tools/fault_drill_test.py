"""tools/fault_drill.py as a subprocess: the quick output-path faults, table + last line."""
from tests.tool_runner import run_tool


def test_drill_of_the_output_path_faults(tmp_path):
    out = run_tool("fault_drill", f"--work_dir={tmp_path}", "--only=is a file",
                   f"--output={tmp_path / 'table.txt'}", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "faults=2 survived=2 data_lost=0"
    assert any(line.startswith("model_dir is a file") for line in lines)
    assert any(line.startswith("export base is a file") for line in lines)
    assert (tmp_path / "table.txt").read_text().strip().splitlines()[-1] == lines[-1]
