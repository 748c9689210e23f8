"""Atomic file writes, output-path checks before work starts, and the sweep of debris.

Every writer goes through `atomic_write`: the content goes to a hidden temporary file in the
target's directory (`.<name>.tmp-XXXX<suffix>`), which is renamed over the target only
after it was written completely. A crash leaves at most a temporary file behind, never a
truncated target; `TEMP_MARKER` names that debris so a later start can sweep it
(`sweep_debris`, which also knows TensorFlow's `ckpt-N_temp*` checkpoint leftovers).

Tools check their output paths first (`check_writable_dir`, `check_output_file`), so a path
that is a file, a read-only or full disk fails in one line before any work is done.
"""
import errno
import fnmatch
import json
import os
import re
import shutil
import socket
import tempfile

TEMP_MARKER = ".tmp-"
# Leftovers of writes killed half-way: our temporaries, and TensorFlow's checkpoint
# temporaries (`ckpt-5_temp/`, `ckpt-5_temp_<uuid>/`, `*.tempstate<n>`).
DEBRIS_PATTERNS = (f"*{TEMP_MARKER}*", "ckpt-*_temp", "ckpt-*_temp_*", "*.tempstate*")


class OutputPathError(ValueError):
    """An output path cannot be written: a file in the way, a read-only or full disk."""


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
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        # A write that failed half-way (e.g. a full disk) names no file: name the target.
        raise OSError(error.errno, error.strerror, path) from error
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


def is_remote(path):
    """True for URLs such as gs://bucket/dir, which the os module cannot check."""
    return "://" in os.fspath(path)


def describe_os_error(error, path=None):
    """One sentence for an OSError of a file operation: what happened to which path and
    what to do. Used by the output checks here and by the tools' error policy."""
    path = path or error.filename or "a file"
    code = error.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device of {path} (disk or quota full): free space or "
                f"write elsewhere, then run again; files completed earlier are intact")
    if code == errno.EROFS:
        return f"{path} is on a read-only file system: write to a writable location"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied for {path}: fix its permissions or write elsewhere"
    if code == errno.ENOTDIR:
        return f"{path}: a part of this path is a file, not a directory"
    if code == errno.EISDIR:
        return f"{path} is a directory, not a file"
    if code == errno.EEXIST:
        return f"{path} already exists"
    if code == errno.ENOENT:
        return f"{path} does not exist"
    reason = error.strerror or str(error)
    return f"{path}: {reason}"


def _first_existing(path):
    """`path` or its nearest ancestor that exists."""
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable_dir(path, what="output directory"):
    """Creates `path` if needed and proves a file can be written in it; returns it.

    Raises OutputPathError naming `what` (e.g. "--model_dir"), the path and the reason: a
    file in the way, a read-only file system, no permission, a full disk. Remote paths
    (gs://...) are returned unchecked.
    """
    if not path:
        raise OutputPathError(f"{what} is empty: give a directory path")
    path = os.fspath(path)
    if is_remote(path):
        return path
    absolute = os.path.abspath(path)
    existing = _first_existing(absolute)
    if not os.path.isdir(existing):
        where = "is a file" if existing == absolute else f"is inside {existing}, a file,"
        raise OutputPathError(f"{what} {path} {where} not a directory: give a directory path")
    try:
        os.makedirs(absolute, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f"{TEMP_MARKER}probe-", dir=absolute)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as error:
        raise OutputPathError(f"{what}: {describe_os_error(error, path)}") from None
    return path


def check_output_file(path, what="output file"):
    """Checks that the file `path` can be (re)written: not a directory, and its directory
    writable (created if needed). Returns `path`; raises OutputPathError otherwise."""
    if not path:
        raise OutputPathError(f"{what} is empty: give a file path")
    path = os.fspath(path)
    if is_remote(path):
        return path
    if os.path.isdir(path):
        raise OutputPathError(f"{what} {path} is a directory: give a file path")
    directory = os.path.dirname(os.path.abspath(path))
    existing = _first_existing(directory)
    if not os.path.isdir(existing):
        raise OutputPathError(f"{what} {path} is inside {existing}, a file, not a directory: "
                              f"give a path in a directory")
    check_writable_dir(directory, f"{what} {path}: its directory")
    return path


def owner_tag():
    """"pid<pid>@<host>": put at the end of a temporary name's prefix (before the random
    part) so a sweep can tell whether its writer still runs."""
    return f"pid{os.getpid()}@{socket.gethostname()}"


def process_alive(pid):
    """True if a process with this pid runs on this host (or cannot be signalled)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Exists, owned by someone else.
        return True
    return True


_OWNER = re.compile(r"pid(\d+)@(.+)-[a-z0-9_]*$")


def written_by_live_process(name):
    """True if `name` carries an `owner_tag` of a writer that may still run: a live pid on
    this host, or any process on another host (which cannot be checked from here)."""
    match = _OWNER.search(name)
    if not match:
        return False
    pid, host = match.groups()
    return host != socket.gethostname() or process_alive(int(pid))


def find_debris(directory):
    """Paths under `directory` left by killed writes (`DEBRIS_PATTERNS`), not descending
    into the debris itself."""
    found = []
    for root, dirs, names in os.walk(directory):
        for name in sorted(dirs + names):
            if any(fnmatch.fnmatch(name, pattern) for pattern in DEBRIS_PATTERNS):
                found.append(os.path.join(root, name))
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in found]
    return found


def sweep_debris(directory, keep=written_by_live_process, log=None):
    """Removes the debris of killed writes under `directory`; returns the removed paths.

    `keep(name)` spares entries still being written (default: those whose name carries the
    `owner_tag` of a live process on this host). Call it only where no other process
    writes untagged temporaries (a locked model_dir). `log(message)` reports each removal.
    """
    if is_remote(directory) or not os.path.isdir(directory):
        return []
    removed = []
    for path in find_debris(directory):
        if keep is not None and keep(os.path.basename(path)):
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
        if log is not None:
            log(f"removed debris of an interrupted write: {path}")
    return removed
