"""Token sampling for parallel decoding: temperature, confidence masking, guidance.

All randomness is stateless (an int32 [2] seed per call), so a decode is a pure function
of its seed. Stateless ops draw differently under XLA and without it: compare XLA and
non-XLA decodes with greedy settings (temperature 0, mask noise 0).
"""
import math

import numpy as np
import tensorflow as tf


def step_seeds(seed, step):
    """(sampling seed, masking seed) of decode step `step`, derived from one [2] seed."""
    step_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int32), step)
    return (tf.random.experimental.stateless_fold_in(step_seed, 0),
            tf.random.experimental.stateless_fold_in(step_seed, 1))


def gumbel_noise(shape, seed):
    """Standard Gumbel noise -log(-log(u)), u uniform in (0, 1)."""
    tiny = 1e-20
    u = tf.random.stateless_uniform(shape, seed, minval=0.0, maxval=1.0)
    return -tf.math.log(-tf.math.log(u + tiny) + tiny)


def guided_logits(cond_logits, uncond_logits, weight):
    """Classifier-free guidance, paper eq. 4: cond + weight * (cond - uncond).

    `weight` is lambda * gs of the step (see `DecodePlan.guidance_weight`)."""
    return cond_logits + weight * (cond_logits - uncond_logits)


def sample_tokens(logits, temperature, seed):
    """Samples ids from softmax(logits / temperature) by a two-level inverse CDF.

    Returns (ids int32 [...], log p(id) [...]) with p the untempered softmax of `logits`
    (MaskGIT's confidence). temperature == 0 (a Python number) means argmax.

    One uniform per token instead of one Gumbel per logit: the vocabulary is cut into
    blocks, a block is picked from the block sums' CDF, then a token from that block's
    CDF (both CDFs are small triangular matmuls). Exact sampling, ~15x faster than
    Gumbel-max on CPU, where per-logit random numbers dominated a decode step.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    log_norm = tf.reduce_logsumexp(logits, axis=-1)
    if temperature == 0:
        ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
    else:
        ids = _inverse_cdf_sample(logits * (1.0 / temperature), seed)
    picked = tf.gather(logits, ids, batch_dims=len(logits.shape) - 1)
    return ids, picked - log_norm


def _block_size(vocab):
    """A power of two near sqrt(vocab): both CDF levels stay short."""
    return 2 ** max(0, round(math.log2(max(vocab, 1)) / 2))


def _inverse_cdf_sample(logits, seed):
    """ids int32 [...] drawn from softmax(logits [..., V]) with one uniform per id."""
    vocab = logits.shape[-1]
    rank = len(logits.shape) - 1
    block = _block_size(vocab)
    num_blocks = -(-vocab // block)
    probs = tf.nn.softmax(logits, axis=-1)
    if num_blocks * block != vocab:
        pad = [[0, 0]] * rank + [[0, num_blocks * block - vocab]]
        probs = tf.pad(probs, pad)
    lead = tf.shape(logits)[:-1]
    blocks = tf.reshape(probs, tf.concat([lead, [num_blocks, block]], axis=0))
    block_mass = tf.reduce_sum(blocks, axis=-1)
    block_cdf = tf.matmul(block_mass[..., None, :],
                          _upper_triangle(num_blocks, probs.dtype))[..., 0, :]
    # 1 - u is in (0, 1]: never lands on a zero-probability id at the CDF's start.
    u = 1.0 - tf.random.stateless_uniform(lead, seed, dtype=probs.dtype)
    target = u * block_cdf[..., -1]
    block_id = tf.minimum(
        tf.reduce_sum(tf.cast(block_cdf < target[..., None], tf.int32), axis=-1),
        num_blocks - 1)
    chosen = tf.gather(blocks, block_id, batch_dims=rank)
    before = tf.gather(block_cdf - block_mass, block_id, batch_dims=rank)
    inner_cdf = tf.matmul(chosen[..., None, :], _upper_triangle(block, probs.dtype))[..., 0, :]
    inner_cdf += before[..., None]
    inner_id = tf.minimum(
        tf.reduce_sum(tf.cast(inner_cdf < target[..., None], tf.int32), axis=-1), block - 1)
    return tf.minimum(block_id * block + inner_id, vocab - 1)


def _upper_triangle(size, dtype):
    """[size, size] ones on and above the diagonal: x @ it is the cumulative sum of x."""
    return tf.constant(np.triu(np.ones([size, size])), dtype)


def confidence_ranking(log_probs, noise_scale, seed):
    """Indices [B, M] sorting M candidates by log p + noise_scale * Gumbel, best first.

    The decoder unmasks the first `M_k - M_{k+1}` of them; the rest stay masked (the
    lowest perturbed confidences)."""
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
    scores = log_probs
    if noise_scale:
        scores = scores + noise_scale * gumbel_noise(tf.shape(log_probs), seed)
    # A descending argsort (XLA compiles a full-length top_k several times slower).
    return tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)


def still_masked(log_probs, is_masked, num_masked_out, noise_scale, seed):
    """Natural-order form: bool [B, N], True for the `num_masked_out` masked tokens with
    the lowest perturbed confidence. Tokens not masked now are never re-masked."""
    scores = log_probs
    if noise_scale:
        scores = scores + noise_scale * gumbel_noise(tf.shape(log_probs), seed)
    scores = tf.where(is_masked, scores, tf.constant(float("inf"), scores.dtype))
    if num_masked_out == 0:
        return tf.zeros_like(is_masked)
    lowest = tf.math.top_k(-scores, k=num_masked_out).indices
    hits = tf.reduce_sum(tf.one_hot(lowest, tf.shape(scores)[-1], dtype=tf.int32), axis=-2)
    return tf.logical_and(hits > 0, is_masked)
