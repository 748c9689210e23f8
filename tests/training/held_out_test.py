"""Held-out evaluation: fixed examples and masks (comparable over a run), scores that
move with the weights, the eval run's tags at eval_every multiples and the last step."""
import gin
import pytest
import tensorflow as tf

from magnets_tf.training import held_out, transformer_task
from magnets_tf.training.callbacks import LoopCallback
from magnets_tf.training.token_data import TokenShards
from magnets_tf.utils import event_files


@pytest.fixture(autouse=True)
def tiny_gin():
    gin.clear_config()
    gin.bind_parameter("build_transformer.preset", "tiny")
    gin.bind_parameter("build_transformer.num_layers", 1)
    yield
    gin.clear_config()


@pytest.fixture
def held_out_tokens(held_out_dir):
    return TokenShards(held_out_dir)


@pytest.fixture
def task(tokens_dir):
    task = transformer_task.TransformerTask(TokenShards(tokens_dir), 8)
    task.build(tf.distribute.get_strategy(), 4)
    return task


def _evaluation(task, tokens, writer=None, every=1):
    return held_out.HeldOutEvaluation(task.transformer, task.trainer.factors, tokens,
                                      writer or tf.summary.create_noop_writer(), every, 4,
                                      batch_size=8, num_batches=2)


def test_scores_are_of_fixed_examples_and_masks(task, held_out_tokens):
    """Two evaluations of the same weights agree exactly; changed weights score
    differently."""
    first = _evaluation(task, held_out_tokens).evaluate()
    assert first == _evaluation(task, held_out_tokens).evaluate()
    assert set(first) == {f"{m}/{m}_p{p}" for m in ("gt_loss", "accuracy")
                          for p in (1, 2, 4, 8)}
    assert all(0.0 <= first[f"accuracy/accuracy_p{p}"] <= 1.0 for p in (1, 2, 4, 8))
    assert 1.5 < first["gt_loss/gt_loss_p1"] < 4.5  # About log(16) for a random model.
    for variable in task.transformer.trainable_variables[:4]:
        variable.assign(variable * 3.0)
    assert _evaluation(task, held_out_tokens).evaluate()["gt_loss/gt_loss_p1"] != \
        first["gt_loss/gt_loss_p1"]


def test_written_at_multiples_of_every_and_the_last_step(task, held_out_tokens, tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "eval"))
    evaluation = _evaluation(task, held_out_tokens, writer, every=3)
    assert isinstance(evaluation, LoopCallback)
    evaluation.on_train_begin({"start_step": 0})
    for step in (2, 4):  # Boundaries of steps_per_loop=2: 3 is passed at 4.
        evaluation.on_train_batch_end(step, {})
    evaluation.on_train_end()
    steps = event_files.scalar_steps(tmp_path / "eval")
    assert steps["accuracy/accuracy_p1"] == [4] and steps["gt_loss/gt_loss_p8"] == [4]


def test_bad_sizes_are_refused(task, held_out_tokens):
    with pytest.raises(ValueError, match="batch_size >= 1 and num_batches >= 1"):
        held_out.HeldOutEvaluation(task.transformer, (1,), held_out_tokens,
                                   tf.summary.create_noop_writer(), 1, 4, num_batches=0)
