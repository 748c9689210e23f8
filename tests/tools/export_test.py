"""tools/export.py end to end, run from outside the repository."""
import json
import os

import pytest

from tests.tool_runner import run_tool


def _run(tmp_path, *args):
    return run_tool("export", *args, cwd=str(tmp_path), timeout=1200)


def test_bad_flags_fail_clearly(tmp_path):
    proc = _run(tmp_path, "--random_init", f"--export_base={tmp_path}", "--batch_sizes=1,x")
    assert proc.returncode != 0
    assert "--batch_sizes must be integers" in proc.stderr
    assert not os.listdir(tmp_path)


def test_an_unfinished_training_run_is_not_exported_unless_asked(tmp_path):
    """A leg that stopped early left a preview (training_status.json): refused before
    anything is written; --allow_unfinished goes on with a warning (here to a clear
    error: the directory holds no model)."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "training_status.json").write_text(
        json.dumps(dict(step=3, train_steps=10, complete=False)))
    args = [f"--transformer_dir={model_dir}", f"--tokenizer_dir={model_dir}",
            f"--export_base={tmp_path / 'serving'}"]
    proc = _run(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert (f"error: --transformer_dir: {model_dir} holds the model after step 3 of 10: "
            f"its training is unfinished") in proc.stderr
    assert "--allow_unfinished to export this preview" in proc.stderr
    assert not (tmp_path / "serving").exists()
    proc = _run(tmp_path, *args, "--allow_unfinished")
    assert "warning: exporting a preview: " in proc.stdout
    assert proc.returncode == 1 and "tokenizer_config.json not found" in proc.stderr


@pytest.mark.slow
def test_random_init_export_prints_version_dir(tmp_path):
    base = tmp_path / "base"
    (base / "1").mkdir(parents=True)
    (base / "1" / "keep.txt").write_text("existing version")
    proc = _run(tmp_path, "--preset=tiny", "--random_init", f"--export_base={base}",
                "--batch_sizes=1,4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == str(base / "2")
    assert "RANDOM-INIT VQGAN" in proc.stdout
    assert (base / "1" / "keep.txt").read_text() == "existing version"
    assert sorted(os.listdir(base)) == ["1", "2"]
    names = os.listdir(base / "2")
    assert {"saved_model.pb", "assets", "assets.extra", "batching_parameters.txt"} <= set(names)


@pytest.mark.slow
def test_checkpoint_export_uses_saved_weights(tmp_path):
    """--transformer_dir/--tokenizer_dir: the export holds the saved weights."""
    import keras
    import numpy as np
    import tensorflow as tf

    from magnets_tf.models.presets import build_transformer
    from magnets_tf.models.vqgan import build_vqgan
    from magnets_tf.models.saving import save_tokenizer
    from magnets_tf.models.saving import save_transformer

    keras.utils.set_random_seed(5)
    tokenizer = build_vqgan("tiny_test", image_shape=(8, 8, 1))
    h, w = tokenizer.grid_shape
    transformer = build_transformer("tiny", codebook_size=tokenizer.codebook_size,
                                    num_classes=4, num_tokens=h * w)
    save_tokenizer(tokenizer, str(tmp_path / "tok"))
    save_transformer(transformer, str(tmp_path / "tr"))
    base = tmp_path / "base"
    proc = _run(tmp_path, f"--transformer_dir={tmp_path / 'tr'}",
                f"--tokenizer_dir={tmp_path / 'tok'}", f"--export_base={base}",
                "--batch_sizes=2", "--steps=4", "--schedule=2:2,1:2", "--nojit_compile",
                "--nowarmup")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(base / "1")
    loaded = tf.saved_model.load(str(base / "1"))
    codes = np.arange(2 * h * w, dtype=np.int32).reshape(2, h, w) % tokenizer.codebook_size
    images = loaded.signatures["decode_tokens"](tokens=tf.constant(codes))["images"].numpy()
    want = np.round(tokenizer.decode(codes).numpy() * 255)
    np.testing.assert_allclose(images, want, atol=1)
    assert not os.path.exists(base / "1" / "assets.extra")
