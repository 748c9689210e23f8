"""MaskGIT training masks as a pure function of (seed, step): a resumed run replays exactly.

Per example a mask ratio r = cos(pi/2 * u), u ~ U[0, 1) (clipped below by
`min_mask_ratio`) sets how many of the generated grid tokens are replaced by the mask
token; condition tokens (the leading `num_condition_tokens`, e.g. given video frames) are
never masked. The class label is replaced by the null class for `class_drop_rate` of
the examples (classifier-free guidance training). With condition tokens, a
`condition_drop_rate` share of the examples has them replaced by the mask token, and by
default the class by the null class too: the unconditional input of MAGVIT-style guidance
(`DecodePlan.uncond_input`, 'masked_condition'; `condition_drop_keeps_class=True` trains
'masked_condition_keep_class' instead). Their loss stays on the masked generated tokens.

Randomness is drawn for the whole global batch from a stateless seed (seed, step) and
each replica takes its slice, so the masks of an example do not depend on how the batch
is split over replicas (mirrored == default strategy) or on a restart.
"""
import gin
import tensorflow as tf

from magnets_tf.decoding.schedule import mask_ratio

# Distinct streams of the per-step seed.
_RATIO_STREAM, _POSITION_STREAM, _CLASS_STREAM, _CONDITION_STREAM = 1, 2, 3, 4


def step_seed(seed, step, stream):
    """Stateless seed [2] (int32) for `stream` of training step `step`."""
    seed = tf.cast(seed, tf.int64)
    step = tf.cast(step, tf.int64)
    mixed = tf.stack([seed * 1_000_003 + stream, step])
    # Keep values in int32 range (stateless ops accept int32/int64 seeds of shape [2]).
    return tf.cast(tf.math.floormod(mixed, 2 ** 31 - 1), tf.int32)


def cosine_mask_ratio(u):
    """Fraction of tokens masked for uniform draws u in [0, 1) (MaskGIT cosine schedule)."""
    return mask_ratio("cosine", u, xp=tf.math)


@gin.configurable(denylist=["tokens", "class_ids", "seed", "step", "mask_token_id",
                            "null_class_id", "global_batch_size", "replica_offset"])
def mask_batch(tokens, class_ids, seed, step, mask_token_id, null_class_id,
               global_batch_size=None, replica_offset=0, num_condition_tokens=0,
               min_mask_ratio=0.0, class_drop_rate=0.1, condition_drop_rate=0.1,
               condition_drop_keeps_class=False):
    """Masks a batch of token grids.

    tokens: int [B, N] grid tokens; class_ids: int [B]. `global_batch_size` and
    `replica_offset` place this replica's B examples inside the global batch (defaults:
    the batch is the global batch). Returns (masked tokens [B, N], mask bool [B, N] true
    where the model must predict, class ids [B] with dropped labels set to the null class).
    At least one generated token per example is masked. condition_drop_rate: share of
    the examples whose condition tokens become mask tokens (and whose class becomes the
    null class unless condition_drop_keeps_class); no effect without condition tokens.
    """
    tokens = tf.convert_to_tensor(tokens, tf.int32)
    class_ids = tf.convert_to_tensor(class_ids, tf.int32)
    batch = tf.shape(tokens)[0]
    num_tokens = tokens.shape[1]
    if num_tokens is None:
        raise ValueError("mask_batch needs a static number of tokens")
    if not 0 <= num_condition_tokens < num_tokens:
        raise ValueError(f"num_condition_tokens={num_condition_tokens} must be in "
                         f"[0, {num_tokens})")
    if not 0.0 <= min_mask_ratio <= 1.0:
        raise ValueError(f"min_mask_ratio must be in [0, 1], got {min_mask_ratio}")
    if not 0.0 <= class_drop_rate <= 1.0:
        raise ValueError(f"class_drop_rate must be in [0, 1], got {class_drop_rate}")
    if not 0.0 <= condition_drop_rate <= 1.0:
        raise ValueError(f"condition_drop_rate must be in [0, 1], got {condition_drop_rate}")
    generated = num_tokens - num_condition_tokens
    global_batch = batch if global_batch_size is None else tf.constant(global_batch_size, tf.int32)

    def draw(shape_tail, stream):
        values = tf.random.stateless_uniform(
            tf.concat([[global_batch], tf.constant(shape_tail, tf.int32)], 0),
            step_seed(seed, step, stream))
        return values[replica_offset:replica_offset + batch]

    ratio = tf.maximum(cosine_mask_ratio(draw([], _RATIO_STREAM)), min_mask_ratio)
    num_masked = tf.cast(tf.math.ceil(ratio * generated), tf.int32)
    num_masked = tf.clip_by_value(num_masked, 1, generated)  # [B]
    # Mask the num_masked generated positions with the smallest random scores.
    scores = draw([generated], _POSITION_STREAM)  # [B, generated]
    ranks = tf.argsort(tf.argsort(scores, axis=1), axis=1)
    generated_mask = ranks < num_masked[:, None]
    mask = tf.concat([tf.zeros([batch, num_condition_tokens], tf.bool), generated_mask], 1)
    masked_tokens = tf.where(mask, tf.cast(mask_token_id, tf.int32), tokens)
    drop = draw([], _CLASS_STREAM) < class_drop_rate
    if num_condition_tokens and condition_drop_rate:
        drop_condition = draw([], _CONDITION_STREAM) < condition_drop_rate  # [B]
        is_condition = tf.range(num_tokens) < num_condition_tokens  # [N]
        hidden = tf.logical_and(drop_condition[:, None], is_condition[None, :])
        masked_tokens = tf.where(hidden, tf.cast(mask_token_id, tf.int32), masked_tokens)
        if not condition_drop_keeps_class:
            drop = tf.logical_or(drop, drop_condition)
    class_ids = tf.where(drop, tf.cast(null_class_id, tf.int32), class_ids)
    return masked_tokens, mask, class_ids
