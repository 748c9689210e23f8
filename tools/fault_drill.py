r"""Fault drill: injects each fault of issue #24 into real tiny runs of the tools.

python tools/fault_drill.py --work_dir=/tmp/fault_drill

Trains a tiny base model (about a minute), then per fault: a copy of it, the fault
(exploding learning rate, a second run on one model_dir, SIGKILL debris and a stale lock,
a changed model config, a truncated checkpoint, a corrupt shard, a bad gin value, output
paths that are files, a full or read-only disk, wrong serving dtypes) and a check of what
the tool did: the expected exit code and one `error:` line (or the recovery), and that
nothing written before the fault was lost. Prints the table, then the last line
`faults=N survived=N data_lost=0`; exits 1 if a fault was not survived. Disk-full and
read-only faults mount a small tmpfs: they need root and are skipped (with the reason)
elsewhere. docs/reliability.md explains each row.
"""
import shutil
import tempfile

from absl import flags

from magnets_tf.cli import app
from magnets_tf.utils import files

flags.DEFINE_string("work_dir", None, "Scratch directory of the drill (default: a new "
                    "temporary directory, removed afterwards unless --keep).")
flags.DEFINE_list("only", [], "Run only the faults whose name contains one of these words.")
flags.DEFINE_bool("keep", False, "Keep a temporary --work_dir for inspection.")
flags.DEFINE_string("output", None, "Also write the table here (text).")
FLAGS = flags.FLAGS


def main():
    if FLAGS.output:
        files.check_output_file(FLAGS.output, "--output")
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="fault_drill-")
    files.check_writable_dir(work_dir, "--work_dir")
    from magnets_tf.evaluation import fault_drill

    drill = fault_drill.Drill(work_dir)
    try:
        outcomes = drill.run_all(FLAGS.only)
    finally:
        if not FLAGS.work_dir and not FLAGS.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    report = fault_drill.format_report(outcomes)
    if FLAGS.output:
        files.write_text(FLAGS.output, report + "\n")
    print(report, flush=True)
    if not fault_drill.passed(outcomes):
        raise app.RunFailure("a fault was not survived or lost data (see the table)")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
