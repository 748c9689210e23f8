"""Paper eq. 3: nested models trained on ground truth and progressive distillation.

    L = 1/N * [ CE(m_N, Y) + sum_{i<N} alpha * CE(m_i, Y) + (1 - alpha) * CE(m_i, sg(m_{i+1})) ]

m_N is the full model (factor 1), m_1 the smallest (largest factor); the teacher of each
smaller model is the next bigger one, behind a stop-gradient. Cross-entropies are taken
over masked positions only: per example, the mean over its masked tokens. Ground-truth
terms use label smoothing. Ablations: `gt_only` (alpha = 1: MatFormer's equal-weight
joint ground-truth training, also reachable as `matformer`), `distill_only` (alpha = 0).
"""
import tensorflow as tf

LOSS_MODES = ("magnets", "gt_only", "distill_only", "matformer")


def distillation_alpha(step, decay_steps=100_000, mode="magnets"):
    """alpha of eq. 3 at `step`: linear 1 -> 0 over `decay_steps`; constant in ablations."""
    if mode not in LOSS_MODES:
        raise ValueError(f"unknown loss mode {mode!r}; known: {LOSS_MODES}")
    if mode in ("gt_only", "matformer"):
        return tf.constant(1.0)
    if mode == "distill_only":
        return tf.constant(0.0)
    if decay_steps <= 0:
        raise ValueError(f"decay_steps must be positive, got {decay_steps}")
    progress = tf.cast(step, tf.float32) / float(decay_steps)
    return tf.clip_by_value(1.0 - progress, 0.0, 1.0)


def _masked_mean(per_token, mask):
    """Mean over each example's masked tokens: [B, N] -> [B] (0 where nothing is masked)."""
    mask = tf.cast(mask, per_token.dtype)
    return tf.reduce_sum(per_token * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)


def ground_truth_cross_entropy(logits, targets, mask, label_smoothing=0.0):
    """Per-example CE [B] of logits [B, N, V] against target ids [B, N] on masked tokens."""
    logits = tf.cast(logits, tf.float32)
    vocab = logits.shape[-1]
    labels = tf.one_hot(targets, vocab)
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + label_smoothing / vocab
    per_token = tf.nn.softmax_cross_entropy_with_logits(labels, logits)
    return _masked_mean(per_token, mask)


def distillation_cross_entropy(student_logits, teacher_logits, mask):
    """Per-example CE [B] of the student against the stop-gradient teacher distribution."""
    teacher = tf.nn.softmax(tf.stop_gradient(tf.cast(teacher_logits, tf.float32)))
    per_token = tf.nn.softmax_cross_entropy_with_logits(
        teacher, tf.cast(student_logits, tf.float32))
    return _masked_mean(per_token, mask)


def nested_loss(logits_by_factor, targets, mask, alpha, label_smoothing=0.0):
    """Eq. 3 per example.

    logits_by_factor: {factor p: logits [B, N, V]} with 1 (the full model) present.
    Returns (total [B], {p: per-example loss [B] of model p (its weighted terms)}).
    """
    factors = sorted(logits_by_factor)  # 1 (full) first, then smaller models.
    if not factors or factors[0] != 1:
        raise ValueError(f"logits_by_factor needs the full model (factor 1), got {factors}")
    alpha = tf.cast(alpha, tf.float32)
    per_model = {1: ground_truth_cross_entropy(logits_by_factor[1], targets, mask,
                                               label_smoothing)}
    for teacher_factor, factor in zip(factors[:-1], factors[1:]):
        student = logits_by_factor[factor]
        gt = ground_truth_cross_entropy(student, targets, mask, label_smoothing)
        distill = distillation_cross_entropy(student, logits_by_factor[teacher_factor], mask)
        per_model[factor] = alpha * gt + (1.0 - alpha) * distill
    total = tf.add_n(list(per_model.values())) / float(len(factors))
    return total, per_model


def masked_accuracy(logits, targets, mask):
    """(correct masked predictions, masked tokens) as float sums over the batch."""
    mask = tf.cast(mask, tf.float32)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), targets), tf.float32)
    return tf.reduce_sum(correct * mask), tf.reduce_sum(mask)
