r"""States the paper's five findings as reproduced or not, from schedule-sweep CSVs.

python tools/findings_report.py --sweep_csv=/tmp/fmnist/sweep/sweep.csv \
  --gt_only_csv=/tmp/fmnist/sweep_gt_only/sweep.csv --output=/tmp/fmnist/findings.md

The main sweep needs the families baseline, nested, cache and scale_down of
tools/sweep_schedules.py; --gt_only_csv is the `nested` sweep of a model trained with
NestedMaskGitTrainer.loss_mode='gt_only' (finding 5). Prints a markdown table and, last,
`reproduced=.. not_reproduced=.. not_measured=..`.
"""
from pathlib import Path

from absl import flags

from magnets_tf.cli import app
from magnets_tf.decoding.schedule import DEFAULT_MODEL_SCHEDULE
from magnets_tf.utils import files

flags.DEFINE_string("sweep_csv", None, "sweep.csv of the MaGNeTS model.", required=True)
flags.DEFINE_string("gt_only_csv", None, "sweep.csv of the ground-truth-only model.")
flags.DEFINE_integer("total_steps", 12, "Decoding steps K of the sweep.")
flags.DEFINE_string("schedule", DEFAULT_MODEL_SCHEDULE, "The MaGNeTS schedule of findings 2, 3.")
flags.DEFINE_string("output", None, "Also write the markdown table here.")
FLAGS = flags.FLAGS


def main():
    if FLAGS.output:
        files.check_output_file(FLAGS.output, "--output")
    from magnets_tf.evaluation import findings, sweep

    tables = {}
    for name in ("sweep_csv", "gt_only_csv"):
        path = getattr(FLAGS, name)
        if path is None:
            continue
        if not Path(path).is_file():
            raise app.UsageError(f"--{name}: no file {path}")
        try:
            tables[name] = sweep.read_rows(path)
        except ValueError as e:
            raise app.UsageError(f"--{name}: {e}") from None
    rows = tables["sweep_csv"]
    result = findings.all_findings(rows, tables.get("gt_only_csv"), FLAGS.total_steps,
                                   FLAGS.schedule)
    sizes = sorted({row.get("n") for row in rows if row.get("n")})
    table = findings.markdown_table(result, n="/".join(sizes) if sizes else None)
    print(table)
    if FLAGS.output:
        files.write_text(FLAGS.output, table)
    counts = [sum(f.reproduced is v for f in result) for v in (True, False, None)]
    print("reproduced={} not_reproduced={} not_measured={}".format(*counts))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
