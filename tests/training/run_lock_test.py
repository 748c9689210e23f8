"""The model_dir lock: one live run, stale locks taken over, chief-only under multi-worker."""
import json
import os
import socket
import subprocess
import sys

import pytest

from magnets_tf.training.run_lock import LOCK_FILE, RunLock, RunLockError


def test_a_second_run_is_refused_naming_the_owner(tmp_path):
    with RunLock(tmp_path) as first:
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(RunLockError, match=rf"in use by pid {os.getpid()} on host "
                                               rf"{socket.gethostname()}"):
            RunLock(tmp_path).acquire()
        assert first.taken_over is None
    assert json.loads((tmp_path / LOCK_FILE).read_text())["released"] is True
    with RunLock(tmp_path) as again:  # Released: no take-over message.
        assert again.taken_over is None


def test_lock_of_another_live_process_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from magnets_tf.training.run_lock import "
         "RunLock; RunLock(sys.argv[1]).acquire(); print('locked', flush=True); "
         "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockError, match=f"pid {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    messages = []
    with RunLock(tmp_path, log=messages.append) as lock:  # Its owner died: stale.
        assert lock.taken_over["pid"] == holder.pid
    assert len(messages) == 1 and "took over the stale lock" in messages[0]
    assert f"pid {holder.pid}" in messages[0]


def test_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps(dict(pid=999999999, host="elsewhere",
                                                      started=0)))
    messages = []
    with RunLock(tmp_path, log=messages.append) as lock:
        assert lock.taken_over["host"] == "elsewhere"
    assert "pid 999999999 on host elsewhere" in messages[0]


def test_only_the_chief_locks(tmp_path):
    with RunLock(tmp_path):
        with RunLock(tmp_path, is_chief=False) as worker:
            assert worker.taken_over is None
