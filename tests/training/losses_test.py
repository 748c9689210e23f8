"""Paper eq. 3 exactly: weights, alpha schedule, label smoothing, stop-gradient."""
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.training import losses

B, N, V = 3, 5, 7


def _np_ce(logits, target_probs, mask):
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    per_token = -(target_probs * logp).sum(-1)
    return (per_token * mask).sum(1) / mask.sum(1)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    logits = {p: rng.normal(size=(B, N, V)).astype(np.float32) for p in (1, 2, 4, 8)}
    targets = rng.integers(0, V, (B, N)).astype(np.int32)
    mask = rng.random((B, N)) < 0.6
    mask[:, 0] = True
    return logits, targets, mask.astype(np.float32)


def test_alpha_start_middle_end():
    alpha = lambda s, mode="magnets": float(losses.distillation_alpha(s, 1000, mode))
    assert alpha(0) == 1.0 and alpha(500) == 0.5 and alpha(1000) == 0.0
    assert alpha(250) == 0.75 and alpha(5000) == 0.0
    assert alpha(700, "gt_only") == 1.0 and alpha(700, "matformer") == 1.0
    assert alpha(0, "distill_only") == 0.0
    with pytest.raises(ValueError, match="unknown loss mode"):
        losses.distillation_alpha(0, 10, "nope")


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0, 0.3])
def test_nested_loss_matches_eq3(problem, alpha):
    logits, targets, mask = problem
    smoothing = 0.1
    one_hot = np.eye(V)[targets]
    smoothed = one_hot * (1 - smoothing) + smoothing / V
    expected = {1: _np_ce(logits[1], smoothed, mask)}
    for teacher, student in ((1, 2), (2, 4), (4, 8)):
        gt = _np_ce(logits[student], smoothed, mask)
        distill = _np_ce(logits[student], _softmax(logits[teacher]), mask)
        expected[student] = alpha * gt + (1 - alpha) * distill
    total, per_model = losses.nested_loss(logits, targets, mask, alpha, label_smoothing=0.1)
    for p in expected:
        np.testing.assert_allclose(per_model[p].numpy(), expected[p], rtol=1e-5)
    np.testing.assert_allclose(total.numpy(), sum(expected.values()) / 4, rtol=1e-5)


def test_full_model_only_is_maskgit_loss(problem):
    logits, targets, mask = problem
    total, per_model = losses.nested_loss({1: logits[1]}, targets, mask, 0.0)
    np.testing.assert_allclose(total.numpy(), _np_ce(logits[1], np.eye(V)[targets], mask),
                               rtol=1e-5)
    assert list(per_model) == [1]


def test_unmasked_positions_do_not_count(problem):
    logits, targets, mask = problem
    changed = dict(logits)
    changed[1] = np.where(mask[..., None] > 0, logits[1], 100.0 * logits[1])
    a, _ = losses.nested_loss(logits, targets, mask, 0.4)
    b, _ = losses.nested_loss(changed, targets, mask, 0.4)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_stop_gradient_on_teacher(problem):
    logits, targets, mask = problem
    teacher = tf.constant(logits[1])
    student = tf.constant(logits[2])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([teacher, student])
        distill = tf.reduce_sum(losses.distillation_cross_entropy(student, teacher, mask))
        total, _ = losses.nested_loss({1: teacher, 2: student}, targets, mask, alpha=0.0)
        total = tf.reduce_sum(total)
        teacher_gt = tf.reduce_sum(losses.ground_truth_cross_entropy(teacher, targets, mask))
    assert tape.gradient(distill, teacher) is None  # No path to the teacher at all.
    assert float(tf.reduce_max(tf.abs(tape.gradient(distill, student)))) > 0
    # With alpha = 0, the full model's gradient is only its own GT term (/ N = 2).
    np.testing.assert_allclose(tape.gradient(total, teacher).numpy(),
                               tape.gradient(teacher_gt, teacher).numpy() / 2, rtol=1e-5,
                               atol=1e-7)


def test_masked_accuracy():
    logits = np.zeros((1, 3, 4), np.float32)
    logits[0, 0, 2] = logits[0, 1, 1] = logits[0, 2, 3] = 1.0
    correct, count = losses.masked_accuracy(logits, np.array([[2, 0, 3]]),
                                            np.array([[True, True, False]]))
    assert float(correct) == 1.0 and float(count) == 2.0


def test_requires_full_model(problem):
    logits, targets, mask = problem
    with pytest.raises(ValueError, match="full model"):
        losses.nested_loss({2: logits[2]}, targets, mask, 1.0)
