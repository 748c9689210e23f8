"""Reading event files back: scalar steps and values, plugin tags, the hparams session, run dirs."""
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp_api

from magnets_tf.utils import event_files


def test_reads_back_what_was_written(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    with writer.as_default():
        for step in (1, 5):
            tf.summary.scalar("loss", 1.0 / step, step=step)
        tf.summary.text("config/gin", "a = 1", step=0)
        tf.summary.image("grid", tf.zeros([1, 4, 4, 1]), step=5)
    writer.close()
    session = tf.summary.create_file_writer(str(tmp_path))
    with session.as_default(step=0):
        hp_api.hparams({"preset": "tiny", "steps": 5, "on": True}, trial_id="run_a")
    session.close()
    assert event_files.run_dirs(tmp_path) == [".", "train"]
    assert event_files.scalar_steps(tmp_path / "train") == {"loss": [1, 5]}
    (first, second), = event_files.scalar_values(tmp_path / "train").values()
    assert first == (1, 1.0) and second == (5, pytest.approx(0.2))
    assert event_files.plugin_tags(tmp_path / "train", "text") == ["config/gin"]
    assert event_files.plugin_tags(tmp_path / "train", "images") == ["grid"]
    assert event_files.session_hparams(tmp_path) == (
        "run_a", {"preset": "tiny", "steps": 5.0, "on": True})
