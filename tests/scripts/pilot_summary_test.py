"""scripts/pilot_summary.py: the pilots' table from what training and evaluation wrote
(parameters from the weights file, held-out CE at the last eval step, the plans' metrics)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pilot_summary.py"


def _write_pilot(root, name, fid_maskgit, fid_magnets):
    model_dir = root / name
    model_dir.mkdir(parents=True)
    (model_dir / "transformer_config.json").write_text(json.dumps({"num_layers": 2}))
    (model_dir / "training_status.json").write_text(
        json.dumps({"step": 10, "train_steps": 10, "complete": True}))
    with h5py.File(model_dir / "transformer.weights.h5", "w") as f:
        f.create_dataset("layers/dense/kernel", data=np.zeros([2, 3]))
        f.create_dataset("layers/dense/bias", data=np.zeros([4]))
    writer = tf.summary.create_file_writer(str(model_dir / "eval"))
    with writer.as_default():
        for step, loss in ((5, 6.0), (10, 4.5)):
            tf.summary.scalar("gt_loss/gt_loss_p1", loss, step=step)
            tf.summary.scalar("gt_loss/gt_loss_p2", loss + 0.5, step=step)
    writer.close()
    for plan, fid, gflops in (("maskgit_pp", fid_maskgit, 3.0), ("magnets", fid_magnets, 1.0)):
        out = root / "eval" / f"{name}_{plan}"
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps(dict(
            fid=fid, class_accuracy=0.5, precision=0.1, recall=0.2, gflops_exact=gflops,
            n=100)))
    (root / "throughput").mkdir(exist_ok=True)
    (root / "throughput" / f"pilot_throughput_{name}.json").write_text(
        json.dumps({"steps_per_second": {"1": {"median": 0.25}}}))


def _run(root, *names):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(SCRIPT), f"--pilots_dir={root}", "--minutes=2",
                           f"--throughput_dir={root / 'throughput'}", *names],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_table_reads_last_held_out_step_parameters_and_both_plans(tmp_path):
    _write_pilot(tmp_path, "2x32", fid_maskgit=50.0, fid_magnets=55.0)
    _write_pilot(tmp_path, "4x32", fid_maskgit=40.0, fid_magnets=42.0)
    _write_pilot(tmp_path, "2x32-nodropout", fid_maskgit=45.0, fid_magnets=50.0)
    # A variant is timed by its shape's throughput report.
    (tmp_path / "throughput" / "pilot_throughput_2x32-nodropout.json").unlink()
    out = _run(tmp_path, "2x32", "4x32", "2x32-nodropout")
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "pilots.json").read_text())
    first, second, variant = report["pilots"]
    assert variant["idle_steps_per_second"] == 0.25 and variant["maskgit_pp"]["fid"] == 45.0
    assert first["parameters"] == 10 and first["steps"] == 10
    assert first["held_out"] == {"gt_loss_p1": 4.5, "gt_loss_p2": 5.0}
    assert first["fid_ratio"] == 1.1 and first["gflops_ratio"] == 3.0
    assert second["maskgit_pp"]["fid"] == 40.0
    table = (tmp_path / "pilots.md").read_text()
    assert "| 2x32 | 0.00M | 10 | 4.500 | 5.000 | 50.00 | 55.00 | 1.100 | 3.00x |" in table


def test_a_pilot_without_its_evaluation_is_named(tmp_path):
    _write_pilot(tmp_path, "2x32", fid_maskgit=50.0, fid_magnets=55.0)
    out = _run(tmp_path, "2x32", "8x64")
    assert out.returncode != 0
    assert "8x64" in out.stderr
    assert not (tmp_path / "pilots.json").exists()
