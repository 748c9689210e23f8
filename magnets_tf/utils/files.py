"""Atomic file writes: a reader (or a restarted run) sees the old file or the new one whole.

Every writer goes through `atomic_write`: the content goes to a hidden temporary file in the
target's directory (`.<name>.tmp-XXXX<suffix>`), which is renamed over the target only
after it was written completely. A crash leaves at most a temporary file behind, never a
truncated target; `TEMP_MARKER` names that debris so a later start can sweep it.
"""
import json
import os
import tempfile

TEMP_MARKER = ".tmp-"


def atomic_write(path, write_fn, suffix=""):
    """Calls `write_fn(tmp_path)`, then renames tmp_path over `path`; returns `path`.

    `suffix` is the temporary file's ending, for writers that insist on one (Keras wants
    ".weights.h5", numpy adds ".npy" unless present). The directory is created if needed;
    on any failure the temporary file is removed and the target left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}{TEMP_MARKER}",
                               suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    return atomic_write(path, write)


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, value, indent=2, **dumps_kwargs):
    """Writes `value` as JSON to `path` atomically (`dumps_kwargs` go to json.dumps)."""
    return write_text(path, json.dumps(value, indent=indent, **dumps_kwargs) + "\n")


def write_npy(path, array):
    """Writes a numpy array as .npy to `path` atomically."""
    import numpy as np
    return atomic_write(path, lambda tmp: np.save(tmp, array), suffix=".npy")
