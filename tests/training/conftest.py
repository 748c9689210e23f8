"""Shared fixtures of the training tests: one MirroredStrategy over the two logical CPUs
for every test of a process, and a small token shard directory.

Every MirroredStrategy of a process starts its collective group and instance keys at the
same values (TF's class-level `_collective_key_base`), so two strategies that run
different all-reduces in one process collide ("Shape mismatch in the collective
instance"). Tests share this one.
"""
import numpy as np
import pytest

from magnets_tf.data import tokenized

from magnets_tf.training import distribute


@pytest.fixture(scope="session")
def mirrored():
    return distribute.create_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])


@pytest.fixture
def tokens_dir(tmp_path):
    """64 random examples of 2x2 tokens (codebook 16, 10 classes) in 2 token shards."""
    rng = np.random.default_rng(0)
    tokenized.write_token_shards(
        str(tmp_path / "tokens"), [(rng.integers(0, 16, (64, 2, 2)), rng.integers(0, 10, 64))],
        dict(codebook_size=16, grid=[2, 2], num_classes=10, tokenizer=""), num_shards=2)
    return str(tmp_path / "tokens")
