r"""Table of the architecture pilots of scripts/pilot_runs.sh: OUT/pilots.md, OUT/pilots.json.

python scripts/pilot_summary.py --pilots_dir=runs/pilots --minutes=25 6x128 8x192 6x256

Per pilot: shape, parameters, the idle steps/s it was given, its steps, the held-out
cross-entropy / accuracy of every sub-model at its last step (the `eval` TensorBoard run),
and FID / class accuracy / exact GFLOPs of MaskGIT++ and MaGNeTS (tools/evaluate.py).
"""
import json
import sys
from pathlib import Path

import h5py
from absl import app, flags

from magnets_tf.utils import event_files, files

flags.DEFINE_string("pilots_dir", None, "Output directory of scripts/pilot_runs.sh.")
flags.DEFINE_float("minutes", None, "Training wall-time budget each pilot was given.")
flags.DEFINE_string("throughput_dir", "results/benchmarks", "Where the pilots' idle "
                    "throughput reports pilot_throughput_<pilot>.json are.")
flags.mark_flags_as_required(["pilots_dir", "minutes"])
FLAGS = flags.FLAGS
PLANS = ("maskgit_pp", "magnets")


def parameter_count(weights_h5):
    """Number of weights in a Keras .weights.h5 file."""
    total = 0
    with h5py.File(weights_h5, "r") as f:
        def visit(_, item):
            nonlocal total
            if isinstance(item, h5py.Dataset):
                total += item.size
        f.visititems(visit)
    return total


def throughput_file(throughput_dir, name):
    """The idle throughput report of the pilot's shape (6x128-nodropout: that of 6x128)."""
    return Path(throughput_dir) / f"pilot_throughput_{name.split('-')[0]}.json"


def required_files(root, name, throughput_dir):
    """What a pilot's row is read from."""
    model_dir = root / name
    return [model_dir / "transformer_config.json", model_dir / "training_status.json",
            model_dir / "transformer.weights.h5", model_dir / "eval",
            throughput_file(throughput_dir, name),
            *(root / "eval" / f"{name}_{plan}" / "metrics.json" for plan in PLANS)]


def pilot_row(root, name, throughput_dir):
    model_dir = root / name
    config = json.loads((model_dir / "transformer_config.json").read_text())
    status = json.loads((model_dir / "training_status.json").read_text())
    throughput = json.loads(throughput_file(throughput_dir, name).read_text())
    held_out = event_files.scalar_values(model_dir / "eval")
    row = {"pilot": name, "config": config,
           "parameters": parameter_count(model_dir / "transformer.weights.h5"),
           "idle_steps_per_second": throughput["steps_per_second"]["1"]["median"],
           "steps": status.get("step"), "held_out": {}}
    for tag, values in held_out.items():
        row["held_out"][tag.split("/")[-1]] = values[-1][1]
    for plan in PLANS:
        metrics = json.loads((root / "eval" / f"{name}_{plan}" / "metrics.json").read_text())
        row[plan] = {key: metrics[key] for key in
                     ("fid", "class_accuracy", "precision", "recall", "gflops_exact", "n")}
    row["fid_ratio"] = row["magnets"]["fid"] / row["maskgit_pp"]["fid"]
    row["gflops_ratio"] = row["maskgit_pp"]["gflops_exact"] / row["magnets"]["gflops_exact"]
    return row


def markdown(rows, minutes):
    factors = sorted({int(tag.split("_p")[-1]) for row in rows for tag in row["held_out"]
                      if tag.startswith("gt_loss_p")})
    head = ["pilot", "params", "steps", *(f"held-out CE p={p}" for p in factors),
            "MaskGIT++ FID", "MaGNeTS FID", "FID ratio", "GFLOPs ratio",
            "class acc. MaskGIT++ / MaGNeTS"]
    lines = [f"Pilots at {minutes:g} minutes of idle 2-core training each "
             f"(n = {rows[0]['magnets']['n']}, guidance 2 on the last 4 of 12 steps).", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        cells = [row["pilot"], f"{row['parameters'] / 1e6:.2f}M", str(row["steps"]),
                 *(f"{row['held_out'].get(f'gt_loss_p{p}', float('nan')):.3f}" for p in factors),
                 f"{row['maskgit_pp']['fid']:.2f}", f"{row['magnets']['fid']:.2f}",
                 f"{row['fid_ratio']:.3f}", f"{row['gflops_ratio']:.2f}x",
                 f"{row['maskgit_pp']['class_accuracy']:.1%} / "
                 f"{row['magnets']['class_accuracy']:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    names = argv[1:]
    if not names:
        raise app.UsageError("name the pilots, e.g. 6x128 8x192 6x256")
    root = Path(FLAGS.pilots_dir)
    missing = [str(path) for name in names
               for path in required_files(root, name, FLAGS.throughput_dir) if not path.exists()]
    if missing:
        raise app.UsageError("pilots not trained and evaluated yet (missing: "
                             + ", ".join(missing) + ")")
    rows = [pilot_row(root, name, FLAGS.throughput_dir) for name in names]
    files.write_json(root / "pilots.json", {"minutes": FLAGS.minutes, "pilots": rows})
    (root / "pilots.md").write_text(markdown(rows, FLAGS.minutes))
    sys.stdout.write(markdown(rows, FLAGS.minutes))


if __name__ == "__main__":
    app.run(main)
