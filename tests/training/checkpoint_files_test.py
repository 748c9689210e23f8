"""Checkpoint files: listing newest first, telling complete from truncated, setting aside, carrying
the newest to another folder."""
import os

import pytest
import tensorflow as tf

from magnets_tf.training import checkpoint_files


def _checkpoints(directory, steps=(1, 2, 3)):
    variable = tf.Variable(tf.zeros([64]))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(directory),
                                         max_to_keep=5)
    for step in steps:
        variable.assign(tf.fill([64], float(step)))
        manager.save(checkpoint_number=step)
    return str(directory)


def _truncate(prefix):
    (data,) = [f for f in checkpoint_files.files_of(prefix) if ".data-" in f]
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)


def test_listing_and_readability(tmp_path):
    directory = _checkpoints(tmp_path)
    prefixes = checkpoint_files.checkpoints(directory)
    assert [checkpoint_files.step_of(p) for p in prefixes] == [3, 2, 1]
    assert all(checkpoint_files.readable(p) is None for p in prefixes)
    _truncate(prefixes[0])
    assert checkpoint_files.readable(prefixes[0]) is not None
    os.remove(prefixes[1] + ".index")
    assert checkpoint_files.readable(prefixes[1]) == "its index file is missing"
    assert checkpoint_files.newest_at_or_before(directory, 2) == prefixes[1]
    assert checkpoint_files.newest_at_or_before(directory, 0) is None


def test_set_aside_keeps_the_files_and_the_state_lists_the_rest(tmp_path):
    directory = _checkpoints(tmp_path)
    newest = checkpoint_files.checkpoints(directory)[0]
    moved_to = checkpoint_files.set_aside(newest, "corrupt")
    assert sorted(os.listdir(moved_to)) == ["ckpt-3.data-00000-of-00001", "ckpt-3.index"]
    checkpoint_files.write_state(directory, checkpoint_files.checkpoints(directory))
    assert tf.train.latest_checkpoint(directory).endswith("ckpt-2")
    checkpoint_files.write_state(directory, [])
    assert not os.path.exists(os.path.join(directory, "checkpoint"))


def test_a_name_set_aside_twice_gets_a_numbered_folder(tmp_path):
    directory = _checkpoints(tmp_path, (3,))
    first = checkpoint_files.set_aside(os.path.join(directory, "ckpt-3"), "diverged")
    _checkpoints(tmp_path, (3,))
    second = checkpoint_files.set_aside(os.path.join(directory, "ckpt-3"), "diverged")
    assert second == os.path.join(first, "1") and os.listdir(second)


def test_carry_newest_keeps_only_the_newest_readable_checkpoint(tmp_path):
    source = _checkpoints(tmp_path / "run", steps=(1, 2, 3))
    _truncate(checkpoint_files.checkpoints(source)[0])  # step 3 is damaged: step 2 goes
    carried = _checkpoints(tmp_path / "carried", steps=(1,))  # an older carried leg
    copied = checkpoint_files.carry_newest(source, carried)
    assert checkpoint_files.step_of(copied) == 2
    assert [checkpoint_files.step_of(p) for p in checkpoint_files.checkpoints(carried)] == [2]
    assert tf.train.latest_checkpoint(carried) == copied
    variable = tf.Variable(tf.zeros([64]))
    tf.train.Checkpoint(v=variable).restore(copied).assert_existing_objects_matched()
    assert float(variable[0]) == 2.0
    assert not [name for name in os.listdir(carried) if name.endswith(".partial")]


def test_carry_newest_without_a_readable_checkpoint_leaves_the_destination(tmp_path):
    source = _checkpoints(tmp_path / "run", steps=(1,))
    _truncate(checkpoint_files.checkpoints(source)[0])
    carried = _checkpoints(tmp_path / "carried", steps=(5,))
    with pytest.raises(ValueError, match="no readable checkpoint"):
        checkpoint_files.carry_newest(source, carried)
    assert [checkpoint_files.step_of(p) for p in checkpoint_files.checkpoints(carried)] == [5]
