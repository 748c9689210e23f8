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
    with pytest.raises(ValueError, match="condition_drop_rate"):
        _mask(tokens, labels, num_condition_tokens=4, condition_drop_rate=1.5)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_condition_drop_rate_matches_config(rate):
    """Seeded statistical check: 4000 examples, binomial sd <= 0.0073, tolerance 0.025."""
    tokens, labels = _batch(batch=4000, num_tokens=20)
    masked, mask, classes = _mask(tokens, labels, step=11, num_condition_tokens=4,
                                  class_drop_rate=0.0, condition_drop_rate=rate)
    hidden = np.all(masked[:, :4] == MASK_ID, axis=1)
    assert abs(hidden.mean() - rate) < 0.025, hidden.mean()
    # Whole condition or nothing; kept conditions unchanged; the loss never on them.
    np.testing.assert_array_equal(masked[~hidden, :4], tokens[~hidden, :4])
    assert not np.any(masked[~hidden, :4] == MASK_ID)
    assert not mask[:, :4].any() and np.all(mask[:, 4:].sum(1) >= 1)
    # A dropped condition drops the class too (MAGVIT's unconditional input) by default.
    np.testing.assert_array_equal(classes == NULL_ID, hidden)
    np.testing.assert_array_equal(classes[~hidden], labels[~hidden])
    # The generated tokens' masks do not depend on the condition dropout.
    plain_masked, plain_mask, _ = _mask(tokens, labels, step=11, num_condition_tokens=4,
                                        class_drop_rate=0.0, condition_drop_rate=0.0)
    np.testing.assert_array_equal(plain_mask, mask)
    np.testing.assert_array_equal(plain_masked[:, 4:], masked[:, 4:])
    np.testing.assert_array_equal(plain_masked[:, :4], tokens[:, :4])


def test_condition_drop_is_seeded_and_replica_independent():
    tokens, labels = _batch(batch=8, num_tokens=20)
    kw = dict(num_condition_tokens=4, condition_drop_rate=0.5, condition_drop_keeps_class=True,
              class_drop_rate=0.0)
    full = _mask(tokens, labels, step=5, **kw)
    assert 0 < np.all(full[0][:, :4] == MASK_ID, axis=1).sum() < 8
    np.testing.assert_array_equal(full[2], labels)  # condition_drop_keeps_class
    for x, y in zip(full, _mask(tokens, labels, step=5, **kw)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(full[0], _mask(tokens, labels, step=6, **kw)[0])
    for offset in (0, 4):
        part = _mask(tokens[offset:offset + 4], labels[offset:offset + 4], step=5,
                     global_batch_size=8, replica_offset=offset, **kw)
        for x, y in zip(full, part):
            np.testing.assert_array_equal(x[offset:offset + 4], y)
