"""The checkpoint files of a run: which exist, which are complete, setting bad ones aside.

`tf.train.CheckpointManager` writes `ckpt-<step>.index` + `ckpt-<step>.data-*` and lists
them in the `checkpoint` state file. A run killed at the wrong moment or a damaged disk can
leave the newest checkpoint truncated; a diverged run can leave checkpoints of bad weights.
Neither is deleted: `set_aside` moves their files into `<checkpoint dir>/<reason>/` (e.g.
`checkpoints/corrupt/`, `checkpoints/diverged/`) and `write_state` lists what remains, so
the next restore starts from the newest good one.
"""
import glob
import os
import re
import shutil

import tensorflow as tf

from magnets_tf.utils import errors, files

_STEP = re.compile(r"ckpt-(\d+)$")


def step_of(prefix):
    """The step of a checkpoint prefix `.../ckpt-<step>` (None if it is not one)."""
    match = _STEP.search(os.fspath(prefix))
    return int(match.group(1)) if match else None


def checkpoints(directory):
    """Prefixes of the checkpoints in `directory` that have files (an index or data),
    newest step first. The state file is not consulted: a damaged or stale one (listing
    files set aside) loses or invents none."""
    names = glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index"))
    names += glob.glob(os.path.join(glob.escape(directory), "ckpt-*.data-*"))
    found = {re.sub(r"\.(index|data-.*)$", "", p) for p in names}
    return sorted((p for p in found if step_of(p) is not None), key=step_of, reverse=True)


def files_of(prefix):
    """The files of one checkpoint (index and data shards)."""
    return sorted(glob.glob(glob.escape(prefix) + ".index")
                  + glob.glob(glob.escape(prefix) + ".data-*"))


def readable(prefix):
    """None if every tensor of the checkpoint reads back (index, data, checksums), else a
    one-line reason."""
    if not os.path.exists(prefix + ".index"):
        return "its index file is missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except Exception as error:  # noqa: BLE001 (TF raises OpError, IndexError, ValueError...)
        return f"{type(error).__name__}: {errors.first_line(error)}"
    return None


def set_aside(prefix, reason):
    """Moves the checkpoint's files into `<its directory>/<reason>/`; returns that folder.

    An earlier checkpoint of the same name set aside there is kept: the newcomer gets a
    numbered subfolder."""
    directory = os.path.join(os.path.dirname(prefix), reason)
    target = directory
    number = 1
    while any(os.path.exists(os.path.join(target, os.path.basename(f)))
              for f in files_of(prefix)):
        target = os.path.join(directory, str(number))
        number += 1
    os.makedirs(target, exist_ok=True)
    for path in files_of(prefix):
        os.replace(path, os.path.join(target, os.path.basename(path)))
    return target


def write_state(directory, prefixes):
    """Rewrites the state file to list `prefixes` (any order), the newest step as latest;
    removes it when none is left."""
    ordered = sorted(prefixes, key=step_of)
    state = os.path.join(directory, "checkpoint")
    if not ordered:
        if os.path.exists(state):
            os.remove(state)
        return
    names = [os.path.basename(p) for p in ordered]
    # CheckpointManager ignores a state without timestamps (the index files' mtimes).
    stamps = [os.path.getmtime(p + ".index") if os.path.exists(p + ".index") else 0.0
              for p in ordered]
    lines = [f'model_checkpoint_path: "{names[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{name}"' for name in names]
    lines += [f"all_model_checkpoint_timestamps: {stamp!r}" for stamp in stamps]
    lines += [f"last_preserved_timestamp: {min(stamps) - 1.0!r}"]
    files.write_text(state, "\n".join(lines) + "\n")


def newest_at_or_before(directory, step):
    """The newest checkpoint prefix with step <= `step`, or None."""
    for prefix in checkpoints(directory):
        if step_of(prefix) <= step:
            return prefix
    return None


def carry_newest(source, destination):
    """Makes the newest readable checkpoint of `source` the only one in `destination`.

    For carrying a training leg to another machine in a small folder (e.g. committed):
    the new files are copied in and listed before the older checkpoints of `destination`
    are removed, so an interrupted copy never leaves it without a complete checkpoint.
    Returns the copied prefix in `destination`; ValueError if `source` has none readable."""
    newest = next((p for p in checkpoints(source) if readable(p) is None), None)
    if newest is None:
        raise ValueError(f"{source} holds no readable checkpoint to carry")
    os.makedirs(destination, exist_ok=True)
    older = [p for p in checkpoints(destination) if step_of(p) != step_of(newest)]
    for path in files_of(newest):
        partial = os.path.join(destination, os.path.basename(path) + ".partial")
        shutil.copyfile(path, partial)
        os.replace(partial, os.path.join(destination, os.path.basename(path)))
    copied = os.path.join(destination, os.path.basename(newest))
    write_state(destination, [copied])
    for prefix in older:
        for path in files_of(prefix):
            os.remove(path)
    return copied
