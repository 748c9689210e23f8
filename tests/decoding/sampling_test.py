import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.decoding import sampling


def test_argmax_at_zero_temperature_and_log_prob():
    logits = tf.constant([[[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]])
    ids, log_p = sampling.sample_tokens(logits, 0.0, tf.constant([1, 2]))
    np.testing.assert_array_equal(ids, [[1, 0]])
    want = tf.nn.log_softmax(logits).numpy()[0, [0, 1], [1, 0]]
    np.testing.assert_allclose(log_p[0], want, rtol=1e-5)


def test_temperature_sampling_follows_softmax_and_is_deterministic():
    logits = tf.math.log(tf.constant([[0.1, 0.2, 0.7]]))
    logits = tf.tile(logits, [20000, 1])
    ids, _ = sampling.sample_tokens(logits, 1.0, tf.constant([3, 4]))
    freq = np.bincount(ids.numpy(), minlength=3) / 20000
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.7], atol=0.015)
    again, _ = sampling.sample_tokens(logits, 1.0, tf.constant([3, 4]))
    np.testing.assert_array_equal(ids, again)
    # A high temperature flattens the distribution.
    hot, _ = sampling.sample_tokens(logits, 50.0, tf.constant([3, 4]))
    assert np.bincount(hot.numpy(), minlength=3).min() / 20000 > 0.3
    with pytest.raises(ValueError, match="temperature"):
        sampling.sample_tokens(logits, -1.0, tf.constant([3, 4]))


@pytest.mark.parametrize("vocab", [7, 64, 1000])
@pytest.mark.parametrize("jit", [False, True])
def test_inverse_cdf_sampling_matches_softmax_for_any_vocab(vocab, jit):
    """Block-padded vocabularies, zero-probability ids and XLA all sample the softmax."""
    rng = np.random.default_rng(vocab)
    probs = rng.dirichlet(np.ones(vocab) * 0.5)
    probs[::3] = 0.0  # impossible ids must never be drawn
    probs /= probs.sum()
    with np.errstate(divide="ignore"):
        logits = tf.constant(np.log(probs)[None].repeat(40000, 0), tf.float32)
    fn = tf.function(lambda x: sampling.sample_tokens(x, 1.0, tf.constant([5, 6]))[0],
                     jit_compile=jit)
    ids = fn(logits).numpy()
    assert ids.min() >= 0 and ids.max() < vocab
    freq = np.bincount(ids, minlength=vocab) / len(ids)
    assert freq[::3].sum() == 0
    np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(probs.max() / len(ids)) + 1e-3)


def test_guided_logits_is_equation_4():
    cond, uncond = tf.constant([1.0, 3.0]), tf.constant([2.0, 1.0])
    np.testing.assert_allclose(sampling.guided_logits(cond, uncond, 0.5), [0.5, 4.0])
    np.testing.assert_allclose(sampling.guided_logits(cond, uncond, 0.0), cond)


def test_confidence_ranking_orders_best_first_and_noise_changes_it():
    log_p = tf.constant([[-3.0, -0.5, -2.0, -1.0]])
    rank = sampling.confidence_ranking(log_p, 0.0, tf.constant([0, 0]))
    np.testing.assert_array_equal(rank, [[1, 3, 2, 0]])
    log_p = tf.zeros([1, 64])
    a = sampling.confidence_ranking(log_p, 1.0, tf.constant([0, 1]))
    b = sampling.confidence_ranking(log_p, 1.0, tf.constant([0, 2]))
    assert sorted(a.numpy()[0]) == list(range(64))
    assert not np.array_equal(a, b)


def test_still_masked_never_remasks_unmasked_tokens():
    log_p = tf.constant([[-5.0, -0.1, -4.0, -0.2, -3.0]])
    is_masked = tf.constant([[False, True, True, True, True]])
    keep = sampling.still_masked(log_p, is_masked, 2, 0.0, tf.constant([0, 0]))
    # Token 0 has the lowest confidence but is already unmasked.
    np.testing.assert_array_equal(keep, [[False, False, True, False, True]])
    none = sampling.still_masked(log_p, is_masked, 0, 1.0, tf.constant([0, 0]))
    assert not np.any(none)


def test_step_seeds_differ_per_step():
    s0, m0 = sampling.step_seeds(tf.constant([7, 8]), 0)
    s1, _ = sampling.step_seeds(tf.constant([7, 8]), 1)
    assert not np.array_equal(s0, s1) and not np.array_equal(s0, m0)
