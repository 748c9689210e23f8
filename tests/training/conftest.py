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


def write_random_shards(path, examples, seed):
    """`examples` random examples of 2x2 tokens (codebook 16, 10 classes) in token shards."""
    rng = np.random.default_rng(seed)
    tokenized.write_token_shards(
        str(path), [(rng.integers(0, 16, (examples, 2, 2)), rng.integers(0, 10, examples))],
        dict(codebook_size=16, grid=[2, 2], num_classes=10, tokenizer=""), num_shards=2)
    return str(path)


@pytest.fixture
def tokens_dir(tmp_path):
    """64 random examples of 2x2 tokens (codebook 16, 10 classes) in 2 token shards."""
    return write_random_shards(tmp_path / "tokens", 64, seed=0)


@pytest.fixture
def held_out_dir(tmp_path):
    """32 other random examples in the layout of `tokens_dir`: held-out shards."""
    return write_random_shards(tmp_path / "held_out", 32, seed=1)
