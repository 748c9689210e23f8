"""Run state: the divergence aftermath keeps diverged checkpoints aside and names the good
one; summaries keep their history; unchanged files are not rewritten."""
import json
import os

import tensorflow as tf

from magnets_tf.training import run_state
from magnets_tf.training.guard import DivergenceError


def _checkpoints(directory, steps):
    variable = tf.Variable(0.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(directory),
                                         max_to_keep=10)
    for step in steps:
        manager.save(checkpoint_number=step)


def test_after_divergence_sets_later_checkpoints_aside_and_reexports(tmp_path):
    _checkpoints(tmp_path, (2, 4, 6))
    exported = []
    error = run_state.after_divergence(DivergenceError("training diverged at step 7", 7, 5),
                                       str(tmp_path), exported.append)
    assert exported == [str(tmp_path / "ckpt-4")]
    assert "the last checkpoint before the divergence is" in str(error)
    assert "(ckpt-6) were moved to" in str(error) and error.last_good_step == 5
    assert sorted(os.listdir(tmp_path / "diverged")) == ["ckpt-6.data-00000-of-00001",
                                                         "ckpt-6.index"]
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")


def test_after_divergence_without_checkpoints_says_it_starts_over(tmp_path):
    exported = []
    error = run_state.after_divergence(DivergenceError("diverged at step 1", 1, 0),
                                       str(tmp_path), exported.append)
    assert "no checkpoint precedes it (a restart starts over)" in str(error)
    assert exported == []


def test_summary_history_and_unchanged_files(tmp_path):
    path = str(tmp_path / "train_summary.json")
    first = dict(start_step=0, final_step=2)
    assert run_state.summary_with_history(path, first) == first
    with open(path, "w") as f:
        json.dump(first, f)
    second = run_state.summary_with_history(path, dict(start_step=2, final_step=4))
    with open(path, "w") as f:
        json.dump(second, f)
    third = run_state.summary_with_history(path, dict(start_step=4, final_step=6))
    assert [run["final_step"] for run in third["history"]] == [2, 4]
    text = tmp_path / "operative_config.gin"
    run_state.write_text_if_changed(str(text), "a = 1\n")
    os.utime(text, (0, 0))
    run_state.write_text_if_changed(str(text), "a = 1\n")
    assert text.stat().st_mtime == 0
    run_state.write_text_if_changed(str(text), "a = 2\n")
    assert text.read_text() == "a = 2\n"


def test_training_status_says_which_step_of_how_many_the_export_is(tmp_path):
    model_dir = str(tmp_path)
    assert run_state.read_training_status(model_dir) is None
    assert run_state.unfinished_note(model_dir) is None  # Unknown: older or committed.
    run_state.write_training_status(model_dir, 250, 6000)
    assert run_state.read_training_status(model_dir) == dict(step=250, train_steps=6000,
                                                             complete=False)
    assert run_state.unfinished_note(model_dir) == (
        f"{model_dir} holds the model after step 250 of 6000: its training is unfinished "
        f"(a preview, not the final model; training_status.json)")
    run_state.write_training_status(model_dir, 6000, 6000)
    assert run_state.read_training_status(model_dir)["complete"]
    assert run_state.unfinished_note(model_dir) is None
    (tmp_path / run_state.TRAINING_STATUS).write_text("{broken")
    assert run_state.read_training_status(model_dir) is None
