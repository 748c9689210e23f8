"""Masks are a pure function of (seed, step) and independent of the replica split."""
import math

import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.training import masking

MASK_ID, NULL_ID = 99, 98


def _mask(tokens, labels, seed=0, step=0, **kwargs):
    return [t.numpy() for t in masking.mask_batch(tokens, labels, seed=seed, step=step,
                                                  mask_token_id=MASK_ID,
                                                  null_class_id=NULL_ID, **kwargs)]


def _batch(batch=64, num_tokens=16):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 50, (batch, num_tokens)).astype(np.int32),
            rng.integers(0, 10, batch).astype(np.int32))


def test_deterministic_in_seed_and_step():
    tokens, labels = _batch()
    a, b = _mask(tokens, labels, step=3), _mask(tokens, labels, step=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], _mask(tokens, labels, step=4)[1])
    assert not np.array_equal(a[1], _mask(tokens, labels, seed=1, step=3)[1])


def test_replica_slices_equal_global_batch():
    tokens, labels = _batch(batch=8)
    full = _mask(tokens, labels, step=7)
    for offset in (0, 4):
        part = _mask(tokens[offset:offset + 4], labels[offset:offset + 4], step=7,
                     global_batch_size=8, replica_offset=offset)
        for x, y in zip(full, part):
            np.testing.assert_array_equal(x[offset:offset + 4], y)


def test_masked_positions_hold_mask_token_and_others_keep_tokens():
    tokens, labels = _batch()
    masked, mask, _ = _mask(tokens, labels)
    assert np.all(masked[mask] == MASK_ID)
    np.testing.assert_array_equal(masked[~mask], tokens[~mask])
    assert np.all(mask.sum(1) >= 1)


def test_cosine_ratio_statistics_and_class_drop():
    tokens, labels = _batch(batch=4000, num_tokens=64)
    _, mask, classes = _mask(tokens, labels, class_drop_rate=0.1)
    # E[ceil(64 cos(pi/2 u))]/64 ~= 2/pi + 1/128.
    assert abs(mask.mean() - (2 / math.pi + 0.5 / 64)) < 0.02
    dropped = classes == NULL_ID
    assert abs(dropped.mean() - 0.1) < 0.02
    np.testing.assert_array_equal(classes[~dropped], labels[~dropped])


def test_min_ratio_and_condition_tokens():
    tokens, labels = _batch(num_tokens=20)
    _, mask, _ = _mask(tokens, labels, min_mask_ratio=0.5, num_condition_tokens=4)
    assert not mask[:, :4].any()
    assert np.all(mask[:, 4:].sum(1) >= 8)  # >= ceil(0.5 * 16)
    _, mask, classes = _mask(tokens, labels, min_mask_ratio=1.0, class_drop_rate=0.0)
    assert mask.all() and np.array_equal(classes, labels)


def test_bad_arguments():
    tokens, labels = _batch()
    with pytest.raises(ValueError, match="num_condition_tokens"):
        _mask(tokens, labels, num_condition_tokens=16)
    with pytest.raises(ValueError, match="min_mask_ratio"):
        _mask(tokens, labels, min_mask_ratio=1.5)
    with pytest.raises(ValueError, match="class_drop_rate"):
        _mask(tokens, labels, class_drop_rate=-0.1)
