import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from magnets_tf.models.presets import build_transformer

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "sample.py"), *args],
                          capture_output=True, text=True, timeout=600)


def test_samples_from_a_saved_transformer(tmp_path):
    model = build_transformer("tiny", codebook_size=32, num_classes=10, num_tokens=16)
    (tmp_path / "transformer_config.json").write_text(json.dumps(model.get_config()))
    model.save_weights(str(tmp_path / "transformer.weights.h5"))
    out = tmp_path / "out" / "grid.png"
    result = _run(f"--model_dir={tmp_path}", "--steps=4", "--schedule=4:2,1:2",
                  "--cfg_last=1", "--guidance_scale=1.5", "--class_ids=0,3,5", "--batch_size=2",
                  "--cell=4", "--nojit", f"--output={out}", f"--output_tokens={tmp_path / 't.npy'}")
    assert result.returncode == 0, result.stderr
    tokens = np.load(tmp_path / "t.npy")
    assert tokens.shape == (3, 4, 4) and tokens.min() >= 0 and tokens.max() < 32
    image = np.asarray(Image.open(out))
    assert image.shape == (2 * (16 + 2), 2 * (16 + 2), 3)
    assert "wrote 3 samples" in result.stdout


def test_bad_inputs_are_clear_errors(tmp_path):
    result = _run(f"--model_dir={tmp_path}", f"--output={tmp_path / 'x.png'}")
    assert result.returncode != 0
    assert "transformer_config.json not found" in result.stderr
    result = _run("--random_init", "--grid=4", "--num_classes=10", "--codebook_size=32",
                  "--steps=4", "--schedule=8:3", f"--output={tmp_path / 'x.png'}")
    assert result.returncode != 0 and "covers 3 steps" in result.stderr
    assert not (tmp_path / "x.png").exists()
