"""tools/convert_maskgit.py on flax-format checkpoints built by the checkpoint tests."""
import json

import numpy as np

from magnets_tf.checkpoints import maskgit
from magnets_tf.models.saving import load_tokenizer
from tests.checkpoints.maskgit_test import (CB, official_tokenizer_params,
                                            official_transformer_params, pack_flax)
from tests.tool_runner import run_tool


def _run(*args):
    return run_tool("convert_maskgit", *args, timeout=300)


def test_converts_both_checkpoints(tmp_path):
    tok_tree, bert_tree = official_tokenizer_params(), official_transformer_params()
    (tmp_path / "tok.msgpack").write_bytes(pack_flax(tok_tree))
    (tmp_path / "bert.msgpack").write_bytes(pack_flax(bert_tree))
    out = _run(f"--tokenizer_checkpoint={tmp_path / 'tok.msgpack'}",
               f"--transformer_checkpoint={tmp_path / 'bert.msgpack'}", "--image_size=8",
               f"--codebook_size={CB}", f"--output_dir={tmp_path / 'out'}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fine-tune" in out.stdout
    tokenizer = load_tokenizer(str(tmp_path / "out" / "tokenizer"))
    reference = maskgit.vqgan_from_checkpoint(tok_tree, image_size=8)
    images = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(tokenizer.encode(images), reference.encode(images))
    config = json.loads((tmp_path / "out" / "transformer" / "transformer_config.json").read_text())
    assert config["codebook_size"] == CB
    # Refuses to overwrite without --overwrite; a bad file is a clear error.
    again = _run(f"--tokenizer_checkpoint={tmp_path / 'tok.msgpack'}", "--image_size=8",
                 f"--output_dir={tmp_path / 'out'}")
    assert again.returncode != 0 and "--overwrite" in again.stderr
    (tmp_path / "bad.msgpack").write_bytes(b"\xc1")
    bad = _run(f"--tokenizer_checkpoint={tmp_path / 'bad.msgpack'}",
               f"--output_dir={tmp_path / 'out2'}")
    assert bad.returncode != 0 and "not a flax msgpack checkpoint" in bad.stderr
