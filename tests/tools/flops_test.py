import pytest

from tests.tool_runner import run_tool


def _run(*args):
    return run_tool("flops", *args, timeout=300)


@pytest.mark.parametrize("args, last", [
    (["--steps=12", "--cfg_last=4", "--schedule=8:3,4:3,2:3,1:3"],
     "baseline_gflops=1294 magnets_gflops=490 ratio=2.64"),
    (["--steps=16", "--cfg_last=6", "--schedule=8:4,4:4,2:4,1:4"],
     "baseline_gflops=1779 magnets_gflops=608 ratio=2.93"),
])
def test_table_1_from_the_command_line(args, last):
    out = _run("--preset=L", "--model=paper", *args)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == last
    assert any("sub-model p=8" in line for line in lines)


def test_bad_schedule_is_a_usage_error():
    out = _run("--preset=L", "--steps=12", "--schedule=8:3,4:3")
    assert out.returncode != 0
    assert "covers 6 steps, but num_steps=12" in out.stderr
