"""tools/train_tokenizer.py end to end on real MNIST-5k digits (a few steps)."""
import json
from pathlib import Path

import pytest

from tests.tool_runner import run_tool

ROOT = Path(__file__).resolve().parents[2]

_TINY = ["--gin_bindings=build_vqgan.filters=8",
         "--gin_bindings=build_vqgan.norm_groups=4",
         "--gin_bindings=build_vqgan.embedding_dim=4",
         "--gin_bindings=build_vqgan.codebook_size=16",
         "--gin_bindings=train_tokenizer_experiment.dataset='mnist5k'",
         "--gin_bindings=TokenizerTrainer.num_steps=3",
         "--gin_bindings=TokenizerTrainer.warmup_steps=0"]


def _run(*args):
    return run_tool("train_tokenizer", "--noprogress", *args, timeout=300)


@pytest.mark.slow  # Two tool runs with training and a 1000-image evaluation.
def test_trains_saves_and_reports_metrics(tmp_path):
    model_dir = tmp_path / "tok"
    out = _run(f"--gin_file={ROOT / 'gin/fashion_mnist/tokenizer.gin'}",
               f"--model_dir={model_dir}", "--steps_per_loop=2", *_TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("psnr_db=") and " codebook_usage=" in last
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["num_images"] == 1000 and metrics["grid"] == [16, 16]
    assert f"psnr_db={metrics['psnr_db']:.2f}" in last
    assert 0 < metrics["codebook_usage"] <= 1
    for name in ("tokenizer_config.json", "tokenizer.weights.h5", "operative_config.gin"):
        assert (model_dir / name).exists()
    assert "TokenizerTrainer.steps_per_loop = 2" in (model_dir / "operative_config.gin"
                                                      ).read_text()
    from magnets_tf.utils import event_files
    assert event_files.scalar_steps(model_dir / "train")["l2_loss"] == [2, 3]  # Boundaries.
    assert event_files.scalar_steps(model_dir / "eval")["psnr_db"] == [3]
    # Running again resumes at the final step: no further training, same metrics.
    again = _run(f"--gin_file={ROOT / 'gin/fashion_mnist/tokenizer.gin'}",
                 f"--model_dir={model_dir}", "--steps_per_loop=2", *_TINY)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-1] == last


def test_bad_gin_and_missing_files_are_clear_errors(tmp_path):
    out = _run(f"--gin_file={tmp_path / 'nope.gin'}", f"--model_dir={tmp_path}")
    assert out.returncode != 0 and "nope.gin does not exist" in out.stderr
    out = _run(f"--gin_file={ROOT / 'gin/fashion_mnist/tokenizer.gin'}",
               f"--model_dir={tmp_path}", "--gin_bindings=TokenizerTrainer.no_such_arg=1")
    assert out.returncode != 0 and "no_such_arg" in out.stderr


def test_steps_per_loop_below_one_is_a_usage_error(tmp_path):
    out = _run(f"--gin_file={ROOT / 'gin/fashion_mnist/tokenizer.gin'}",
               f"--model_dir={tmp_path / 'tok'}", "--steps_per_loop=0")
    assert out.returncode == 2 and "--steps_per_loop must be >= 1, got 0" in out.stderr
    assert not (tmp_path / "tok").exists()


def test_bad_stop_step_is_a_usage_error(tmp_path):
    out = _run(f"--gin_file={ROOT / 'gin/fashion_mnist/tokenizer.gin'}",
               f"--model_dir={tmp_path / 'tok'}", "--stop_at_step=0")
    assert out.returncode == 2 and "--stop_at_step must be >= 1, got 0" in out.stderr
    assert not (tmp_path / "tok").exists()


@pytest.mark.slow  # Two tool runs with training, one 1000-image evaluation.
def test_a_leg_stopped_early_is_not_evaluated_and_the_next_one_finishes(tmp_path):
    model_dir = tmp_path / "tok"
    args = (f"--gin_file={ROOT / 'gin/fashion_mnist/tokenizer.gin'}",
            f"--model_dir={model_dir}", *_TINY)
    out = _run(*args, "--stop_at_step=2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1].startswith(
        f"stopped at step 2 of 3 (--stop_at_step=2); its checkpoint is "
        f"{model_dir / 'checkpoints' / 'ckpt-2'}; re-run the same command")
    assert not (model_dir / "metrics.json").exists()
    assert json.loads((model_dir / "training_status.json").read_text())["step"] == 2
    out = _run(*args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Resumed from" in out.stdout and (model_dir / "metrics.json").exists()
    assert out.stdout.strip().splitlines()[-1].startswith("psnr_db=")
