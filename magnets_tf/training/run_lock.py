"""One training process per model_dir: a lock file holding the owner's pid and host.

`RunLock(model_dir)` creates `model_dir/run.lock` and holds an exclusive `flock` on it for
the life of the run. The kernel drops the flock when the process ends, however it ends
(SIGKILL, OOM, power loss of a local disk), so a lock whose flock can be taken is stale:
the next run takes it over and says whose it was. A second run while the first is alive
cannot take the flock and stops with a `RunLockError` naming the owner's pid, host and
start time. The file is never deleted (deleting a locked file lets two runs lock two
different files); releasing marks it released.

Under multi-worker training only the chief holds the lock (`is_chief=False` is a no-op):
all workers share model_dir and only the chief writes checkpoints there. Remote model_dirs
(gs://...) have no file locks: the lock is skipped with a warning. On file systems
without flock, liveness falls back to the recorded pid on the same host.
"""
import errno
import fcntl
import json
import os
import socket
import sys
import time

from absl import logging

from magnets_tf.utils import files

LOCK_FILE = "run.lock"


class RunLockError(RuntimeError):
    """model_dir is in use by another live run."""


def _describe(owner):
    if not owner:
        return "another process"
    started = owner.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"pid {owner.get('pid')} on host {owner.get('host')} (started {when})"


class RunLock:
    """Context manager: exclusive use of `model_dir` by this process (see module doc).

    `acquire()` returns self; `taken_over` is the stale owner's record when a dead run's
    lock was taken over (None otherwise). `log(message)` reports a take-over.
    """

    def __init__(self, model_dir, is_chief=True, log=logging.warning):
        self.model_dir = os.fspath(model_dir)
        self.path = os.path.join(self.model_dir, LOCK_FILE)
        self.is_chief = bool(is_chief)
        self.log = log
        self.taken_over = None
        self._fd = None

    def _record(self):
        return dict(pid=os.getpid(), host=socket.gethostname(), started=time.time(),
                    command=" ".join(sys.argv))

    def _read_owner(self, fd):
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, 65536).decode("utf-8", "replace")
            owner = json.loads(text) if text.strip() else None
            return owner if isinstance(owner, dict) else None
        except (OSError, ValueError):
            return None

    def _owner_alive(self, owner):
        """Liveness without flock: only a pid on this host can be checked."""
        if not owner or owner.get("released"):
            return False
        if owner.get("host") != socket.gethostname():
            return True  # Cannot tell: assume it runs.
        return files.process_alive(owner.get("pid", -1))

    def acquire(self):
        if not self.is_chief or self._fd is not None:
            return self
        if files.is_remote(self.model_dir):
            logging.warning("%s is remote: no run lock (make sure one run uses it)",
                            self.model_dir)
            return self
        os.makedirs(self.model_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            owner = self._read_owner(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunLockError(
                        f"{self.model_dir} is in use by {_describe(owner)}: two runs on one "
                        f"model_dir would overwrite each other's checkpoints; wait for it to "
                        f"finish, stop it, or use another model_dir") from None
                if self._owner_alive(owner):  # No flock here (e.g. some network mounts).
                    raise RunLockError(
                        f"{self.model_dir} is in use by {_describe(owner)} (recorded in "
                        f"{self.path}; this file system has no flock, so a run on another "
                        f"host cannot be checked: delete the file if that run is gone)") \
                        from None
            if owner and not owner.get("released"):
                self.taken_over = owner
                self.log(f"took over the stale lock {self.path} of {_describe(owner)}, "
                         f"which is no longer running")
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(self._record()) + "\n").encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self):
        """Marks the lock released and drops the flock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            record = dict(self._record(), released=True)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(record) + "\n").encode())
        except OSError:
            pass  # A full or read-only disk: the dropped flock alone marks it free.
        finally:
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
