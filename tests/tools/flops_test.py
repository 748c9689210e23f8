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


def test_default_output_has_the_papers_video_rows_next_to_ours():
    out = _run()  # `python tools/flops.py`
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    rows = {" ".join(line.split()[1:-5]): line.split()[-2:] for line in lines
            if line.split()[:1] in (["1"], ["2"])}
    assert rows["UCF101 MAGVIT-L"] == ["4334", "~4.3k"]
    assert rows["UCF101 MaGNeTS"] == ["1701", "~1.7k"]
    assert rows["K600 MAGVIT-L g2"] == ["5057", "~5.1k"]
    assert rows["K600 MaGNeTS g2"] == ["1360", "~1.4k"]
    assert "K600 g2 MAGVIT-L / MaGNeTS = 3.72 (paper: ~3.7x)" in lines
    assert lines[-1].startswith("baseline_gflops=")  # the requested plan's line stays last
    quiet = _run("--nopaper_rows").stdout
    assert "K600" not in quiet and quiet.splitlines()[-1] == lines[-1]


def test_bad_schedule_is_a_usage_error():
    out = _run("--preset=L", "--steps=12", "--schedule=8:3,4:3")
    assert out.returncode != 0
    assert "covers 6 steps, but num_steps=12" in out.stderr
