"""The run wrapper: one `error:` line, exit 2 for usage errors, 1 for expected failures."""
import subprocess
import sys

import pytest

from tests.tool_runner import tool_env

_TOOL = '''
import sys
from absl import flags
from magnets_tf.cli import app
flags.DEFINE_string("fail", None, "How main fails.")

def main():
    """A tool."""
    kind = flags.FLAGS.fail
    if kind == "usage":
        raise app.UsageError("--fail says so")
    if kind == "value":
        from magnets_tf.decoding.schedule import make_plan
        make_plan(4, 4, "3:4")  # gin adds "In call to configurable" lines
    if kind == "run":
        raise app.RunFailure("stage x failed")
    if kind == "full":
        import errno
        raise OSError(errno.ENOSPC, "No space left on device", "/data/model/ckpt-3.index")
    if kind == "gin_full":
        import errno, gin
        @gin.configurable
        def write():
            raise OSError(errno.ENOSPC, "No space left on device", "/data/w.h5")
        write()
    if kind == "dataloss":
        import tensorflow as tf
        raise tf.errors.DataLossError(None, None, "corrupted record at 40\\n\\t [[{{node x}}]]")
    if kind == "tf_full":
        import tensorflow as tf
        raise tf.errors.ResourceExhaustedError(
            None, None, "/data/m/ckpt-3_temp/part-00000; No space left on device")
    if kind == "signal":
        import gin, signal
        from magnets_tf.training.stopping import TrainingInterrupted
        @gin.configurable
        def train():
            raise TrainingInterrupted("stopped at step 7 of 9 (on SIGTERM); re-run", 7,
                                      signal.SIGTERM)
        train()
    if kind == "bug":
        raise KeyError("a bug keeps its traceback")
    print("ok")

app.run(main)
'''


@pytest.fixture(scope="module")
def tool(tmp_path_factory):
    path = tmp_path_factory.mktemp("tool") / "tool.py"
    path.write_text(_TOOL)
    return path


def _run(tool, *args):
    return subprocess.run([sys.executable, str(tool), *args], env=tool_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, code, line", [
    ([], 0, None),
    (["--fail=usage"], 2, "error: --fail says so"),
    (["--no_such_flag"], 2, "error: Unknown command line flag 'no_such_flag'"),
    (["extra"], 2, "error: unexpected arguments: ['extra']"),
    (["--fail=value"], 1, "error: model schedule factor 3 is not one of the model's factors "
                          "(1, 2, 4, 8)"),
    (["--fail=run"], 1, "error: stage x failed"),
    (["--fail=full"], 1, "error: no space left on the device of /data/model/ckpt-3.index "
                         "(disk or quota full): free space or write elsewhere, then run "
                         "again; files completed earlier are intact"),
    (["--fail=gin_full"], 1, "error: no space left on the device of /data/w.h5 (disk or "
                             "quota full): free space or write elsewhere, then run again; "
                             "files completed earlier are intact"),
    (["--fail=dataloss"], 1, "error: corrupt or truncated data: corrupted record at 40"),
    (["--fail=tf_full"], 1, "error: no space left on the device of /data/m/ckpt-3_temp/"
                            "part-00000 (disk or quota full): free space or write elsewhere, "
                            "then run again; files completed earlier are intact"),
])
def test_exit_codes_and_one_error_line(tool, args, code, line):
    out = _run(tool, *args)
    assert out.returncode == code, out.stderr
    errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert errors == ([line] if line else [])
    if line:
        assert "Traceback" not in out.stderr and "In call to configurable" not in out.stderr


def test_a_training_stopped_by_a_signal_exits_with_128_plus_its_number(tool):
    out = _run(tool, "--fail=signal")
    assert out.returncode == 143, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1] == "stopped at step 7 of 9 (on SIGTERM); re-run"
    assert "error:" not in out.stderr and "Traceback" not in out.stderr


def test_unexpected_errors_keep_their_traceback(tool):
    out = _run(tool, "--fail=bug")
    assert out.returncode == 1 and "Traceback" in out.stderr and "KeyError" in out.stderr
    assert "error:" not in out.stderr


def test_int_list_reads_ints_and_names_a_bad_flag():
    from absl import flags
    from magnets_tf.cli import app
    values = flags.FlagValues()
    flags.DEFINE_list("sizes", ["1", "2"], "Sizes.", flag_values=values)
    values(["prog"])
    assert app.int_list("sizes", values) == (1, 2)
    values.sizes = ["1", "x"]
    with pytest.raises(app.UsageError, match=r"--sizes must be integers, got \['1', 'x'\]"):
        app.int_list("sizes", values)


def test_debug_adds_the_traceback_and_tensorflow_noise_stays_out(tool):
    out = _run(tool, "--fail=dataloss", "--debug")
    assert out.returncode == 1 and "Traceback" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: corrupt or truncated data")
    quiet = _run(tool, "--fail=dataloss")
    assert quiet.stderr.strip().splitlines() == [
        "error: corrupt or truncated data: corrupted record at 40"]


def test_argv_without_drops_every_form_of_the_named_flags():
    from magnets_tf.cli import app
    argv = ["--a=1", "--max_evaluations=3", "--b", "2", "--max_evaluations", "4",
            "--nojit", "--jit", "--keep", "--", "--max_evaluations=9"]
    assert app.argv_without(argv, ("max_evaluations", "jit")) == [
        "--a=1", "--b", "2", "--keep", "--", "--max_evaluations=9"]
    assert app.argv_without(["--x=1"], ("y",)) == ["--x=1"]
