"""tools/tokenize_dataset.py: shards readable by token_dataset, equal to model.encode."""
from collections import Counter

import numpy as np

from magnets_tf.data.datasets import load_arrays
from magnets_tf.data.tokenized import read_metadata, token_dataset
from magnets_tf.models.vqgan import build_vqgan
from magnets_tf.models.saving import save_tokenizer
from tests.tool_runner import run_tool


def _run(*args):
    return run_tool("tokenize_dataset", *args, timeout=300)


def test_tokenizes_a_split_into_valid_shards(tmp_path):
    model = build_vqgan("small_8x8", filters=8, norm_groups=4, embedding_dim=4,
                        codebook_size=16)
    save_tokenizer(model, str(tmp_path / "tok"))
    out = _run(f"--tokenizer_dir={tmp_path / 'tok'}", "--dataset=mnist5k", "--splits=test",
               f"--output_dir={tmp_path / 'tokens'}", "--num_shards=2")
    assert out.returncode == 0, out.stderr[-3000:]
    path = str(tmp_path / "tokens" / "test")
    meta = read_metadata(path, expected_codebook_size=16, expected_grid=[8, 8])
    assert meta["num_examples"] == 1000 and meta["num_classes"] == 10
    ds = token_dataset(path, 1000, shuffle=False, repeat=False, expected_codebook_size=16,
                       expected_grid=[8, 8], drop_remainder=False)
    batch = next(iter(ds))
    images, labels = load_arrays("mnist5k", "test")
    expected = model.encode(images.astype(np.float32) / 255.0).numpy()
    # Shards are filled round-robin: compare as multisets of (label, tokens) rows. A random
    # tokenizer has near-ties between codes that another batch size (another oneDNN
    # blocking) may break the other way, so up to 1% of the rows may differ.
    got = Counter(zip(batch["label"].numpy().tolist(),
                      map(tuple, batch["tokens"].numpy().reshape(1000, -1).tolist())))
    want = Counter(zip(labels.tolist(), map(tuple, expected.reshape(1000, -1).tolist())))
    assert sorted(label for label, _ in got.elements()) == sorted(labels.tolist())
    assert sum((got - want).values()) <= 10, sum((got - want).values())
    # Existing output is not overwritten without --overwrite.
    again = _run(f"--tokenizer_dir={tmp_path / 'tok'}", "--dataset=mnist5k", "--splits=test",
                 f"--output_dir={tmp_path / 'tokens'}")
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    out = _run(f"--tokenizer_dir={tmp_path}", f"--output_dir={tmp_path / 'x'}")
    assert out.returncode != 0 and "not a trained tokenizer" in out.stderr


def test_max_examples_limits_each_split(tmp_path):
    model = build_vqgan("small_8x8", filters=8, norm_groups=4, embedding_dim=4,
                        codebook_size=16)
    save_tokenizer(model, str(tmp_path / "tok"))
    out = _run(f"--tokenizer_dir={tmp_path / 'tok'}", "--dataset=mnist5k", "--splits=test",
               f"--output_dir={tmp_path / 'tokens'}", "--num_shards=1", "--batch_size=50",
               "--max_examples=130")
    assert out.returncode == 0, out.stderr[-3000:]
    assert read_metadata(str(tmp_path / "tokens" / "test"))["num_examples"] == 130
    bad = _run(f"--tokenizer_dir={tmp_path / 'tok'}", f"--output_dir={tmp_path / 'x'}",
               "--max_examples=-1")
    assert bad.returncode != 0 and "--max_examples must be >= 0" in bad.stderr
