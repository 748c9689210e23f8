"""Graceful stops: the stop policy (step, wall clock, signal), the messages, and the
signal watcher with real signals sent to this process (handled, never fatal here)."""
import os
import signal
import threading
import time

import pytest

from magnets_tf.training import stopping


class FakeClock:
    """A clock in seconds that moves only when told."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_policy_stops_at_the_step_after_the_minutes_and_on_a_signal():
    clock = FakeClock()
    policy = stopping.StopPolicy(stop_at_step=7, clock=clock)
    assert policy.reason(6) is None and policy.reason(7) == stopping.STOP_AT_STEP
    assert policy.describe(stopping.STOP_AT_STEP) == "--stop_at_step=7"

    policy = stopping.StopPolicy(max_wall_minutes=1.5, clock=clock)
    clock.now += 89
    assert policy.reason(3) is None
    clock.now += 1
    assert policy.reason(4) == stopping.MAX_WALL_MINUTES
    assert policy.describe(stopping.MAX_WALL_MINUTES) == (
        "--max_wall_minutes=1.5 reached after 1.5 min")

    watcher = stopping.SignalWatcher(enabled=False)
    policy = stopping.StopPolicy(stop_at_step=100, signals=watcher, clock=clock)
    assert policy.reason(5) is None
    watcher.received = signal.SIGTERM
    assert policy.reason(5) == "SIGTERM" and policy.describe("SIGTERM") == "on SIGTERM"
    assert stopping.StopPolicy().reason(10 ** 9) is None


@pytest.mark.parametrize("arguments, message", [
    (dict(stop_at_step=0), "stop_at_step must be an integer >= 1 (or None), got 0"),
    (dict(stop_at_step=2.5), "stop_at_step must be an integer >= 1 (or None), got 2.5"),
    (dict(max_wall_minutes=0), "max_wall_minutes must be a number > 0 (or None), got 0"),
    (dict(max_wall_minutes="soon"), "max_wall_minutes must be a number > 0 (or None), got "
                                    "'soon'"),
])
def test_bad_stop_settings_are_named(arguments, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stopping.StopPolicy(**arguments)


def test_stop_messages_say_where_and_how_to_continue():
    assert stopping.stop_message(200, 6000, "--stop_at_step=200", "m/checkpoints/ckpt-200") == (
        "stopped at step 200 of 6000 (--stop_at_step=200); its checkpoint is "
        "m/checkpoints/ckpt-200; re-run the same command (without or with a later "
        "--stop_at_step) to continue")
    assert stopping.stop_message(60, 60, "on SIGTERM") == (
        "stopped after training completed at step 60 of 60 (on SIGTERM); re-run the same "
        "command to do what follows the training")
    error = stopping.TrainingInterrupted("stopped", 12, signal.SIGINT)
    assert error.exit_code == 130 and error.step == 12


def _wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_first_signal_asks_to_stop_a_second_aborts_and_handlers_come_back(signum, capsys):
    before = {s: signal.getsignal(s) for s in stopping.SignalWatcher.SIGNALS}
    aborted = []
    with stopping.SignalWatcher(abort=aborted.append) as watcher:
        assert watcher.installed and signal.getsignal(signum) is not before[signum]
        os.kill(os.getpid(), signum)
        assert _wait_for(lambda: watcher.received == signum)
        assert not aborted
        os.kill(os.getpid(), signum)
        assert _wait_for(lambda: aborted == [signum])
    assert {s: signal.getsignal(s) for s in stopping.SignalWatcher.SIGNALS} == before
    assert not watcher.installed
    err = capsys.readouterr().err
    name = signal.Signals(signum).name
    assert f"{name} received: training stops at the next loop boundary, after writing a " \
           f"checkpoint there" in err
    assert f"{name} received again: aborting now, without a checkpoint" in err


def test_the_watcher_acts_while_the_main_thread_is_inside_tensorflow():
    """Python runs signal handlers in the main thread only between bytecodes; the second
    signal must abort while the main thread is blocked inside a TensorFlow op (here a
    queue dequeue that returns only when another thread enqueues)."""
    import tensorflow as tf

    aborted, seen_while_blocked = [], []
    queue = tf.queue.FIFOQueue(1, tf.int32)

    def send_twice():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_for(lambda: watcher.received, seconds=10)
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_for(lambda: aborted, seconds=10)
            seen_while_blocked.append(list(aborted))
        finally:
            queue.enqueue(1)

    with stopping.SignalWatcher(abort=aborted.append) as watcher:
        assert watcher.installed  # Else the signals below would end the test process.
        threading.Timer(0.2, send_twice).start()
        assert int(queue.dequeue()) == 1  # Blocks in C++ until send_twice is done.
    assert seen_while_blocked == [[signal.SIGTERM]]


def test_disabled_or_outside_the_main_thread_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    with stopping.SignalWatcher(enabled=False) as watcher:
        assert not watcher.installed and signal.getsignal(signal.SIGTERM) is before
    found = []

    def in_thread():
        with stopping.SignalWatcher() as other:
            found.append(other.installed)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert found == [False] and signal.getsignal(signal.SIGTERM) is before
