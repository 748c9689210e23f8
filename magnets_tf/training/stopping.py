"""Graceful stops of a training run: at a step, after a wall-clock budget, on a signal.

A long run is trained in legs (processes that each end before the session running them
does). Every leg keeps the run's `train_steps`, so the learning-rate and alpha schedules
and the data order are those of one uninterrupted run; a leg ends early in one of three
ways, each at a loop boundary, after a checkpoint of that step:

- `stop_at_step=N`: N becomes the leg's last loop boundary (its last loop is shorter
  when N is not a multiple of steps_per_loop); ends normally (exit 0);
- `max_wall_minutes=M`: the first loop boundary after M minutes since the run started;
  ends normally (exit 0);
- SIGTERM or SIGINT (`SignalWatcher`): the loop finishes the current loop, writes a
  checkpoint and raises `TrainingInterrupted` (tools exit with 128 + the signal number).
  A second signal aborts at once, without a checkpoint.

`StopPolicy.reason(step)` tells the loop whether (and why) to stop at a boundary. This
module has no TensorFlow: tools can import it cheaply.
"""
import os
import signal
import sys
import threading
import time

STOP_AT_STEP = "stop_at_step"
MAX_WALL_MINUTES = "max_wall_minutes"
ANOTHER_WORKER = "another worker"  # Multi-worker: a stop that another process asked for.

CONTINUE_HINT = "re-run the same command (without or with a later --stop_at_step) to continue"


class TrainingInterrupted(RuntimeError):
    """A signal stopped training at `step` (a checkpoint of that step was written);
    `exit_code` is the shell's 128 + the signal number."""

    def __init__(self, message, step, signum):
        super().__init__(message)
        self.step = int(step)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


def now():
    """Seconds of the monotonic clock that wall-clock budgets are measured on."""
    return time.monotonic()


def signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _say(message):
    print(message, file=sys.stderr, flush=True)


def abort_now(signum):
    """Ends the process at once (exit code 128 + signum): nothing more is written. Files
    already written stay whole (every write is atomic); a checkpoint being written is
    left as debris the next run sweeps."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + int(signum))


def _ignore(signum, frame):
    """The main thread's late call for a signal the watcher thread has handled."""


class SignalWatcher:
    """Context manager: SIGTERM and SIGINT ask for a graceful stop instead of ending the
    process. `received` is the first signal's number (None before).

    The first signal is reported and recorded; the loop stops at its next boundary. A
    second one calls `abort(signum)` (default `abort_now`) right away, even while the
    main thread is inside a long TensorFlow call: Python runs signal handlers only in the
    main thread between bytecodes, so a watcher thread reads the signal numbers that
    CPython's C-level handler writes to the wakeup fd (`signal.set_wakeup_fd`) the moment
    a signal arrives. The previous handlers and wakeup fd are restored on exit. Outside
    the main thread (where handlers cannot be installed) or with enabled=False it does
    nothing.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, enabled=True, abort=abort_now):
        self.enabled = bool(enabled)
        self.abort = abort
        self.received = None
        self.installed = False
        self._lock = threading.Lock()
        self._fds = None
        self._thread = None
        self._previous_handlers = {}
        self._previous_wakeup = -1

    def request(self, signum):
        """Acts on one delivered signal: the first asks for a stop, the next aborts."""
        with self._lock:
            first = self.received is None
            if first:
                self.received = int(signum)
        name = signal_name(signum)
        if first:
            _say(f"{name} received: training stops at the next loop boundary, after "
                 f"writing a checkpoint there (a second signal aborts at once, without one)")
        else:
            _say(f"{name} received again: aborting now, without a checkpoint (the newest "
                 f"complete checkpoint stays)")
            self.abort(signum)

    def _watch(self, read_fd):
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:  # The write end was closed: the watcher is uninstalled.
                return
            for signum in data:
                if signum in self.SIGNALS:
                    self.request(signum)

    def __enter__(self):
        if not self.enabled or threading.current_thread() is not threading.main_thread():
            return self
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # set_wakeup_fd requires it.
        try:
            self._previous_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except ValueError:
            os.close(read_fd)
            os.close(write_fd)
            return self
        self._fds = (read_fd, write_fd)
        self._previous_handlers = {s: signal.signal(s, _ignore) for s in self.SIGNALS}
        for signum in self.SIGNALS:
            # Restart system calls the signal interrupts (SA_RESTART): TensorFlow's own
            # threads, e.g. one writing a checkpoint, must not see EINTR.
            signal.siginterrupt(signum, False)
        self._thread = threading.Thread(target=self._watch, args=(read_fd,), daemon=True,
                                        name="magnets-signal-watcher")
        self._thread.start()
        self.installed = True
        return self

    def __exit__(self, *exc):
        if not self.installed:
            return False
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        read_fd, write_fd = self._fds
        os.close(write_fd)
        self._thread.join(timeout=5)
        os.close(read_fd)
        self.installed = False
        return False


class StopPolicy:
    """When a leg stops early (see the module docstring).

    stop_at_step: int >= 1 or None; max_wall_minutes: minutes > 0 or None, counted from
    `started` (a `clock()` reading, default now); clock: seconds (default `now`, the
    monotonic clock); signals: a `SignalWatcher` (or None).
    """

    def __init__(self, stop_at_step=None, max_wall_minutes=None, signals=None, clock=None,
                 started=None):
        if stop_at_step is not None:
            valid = isinstance(stop_at_step, int) and not isinstance(stop_at_step, bool)
            if not valid or stop_at_step < 1:
                raise ValueError(f"stop_at_step must be an integer >= 1 (or None), got "
                                 f"{stop_at_step!r}")
        if max_wall_minutes is not None:
            try:
                minutes = float(max_wall_minutes)
            except (TypeError, ValueError):
                minutes = float("nan")
            if isinstance(max_wall_minutes, bool) or not minutes > 0:
                raise ValueError(f"max_wall_minutes must be a number > 0 (or None), got "
                                 f"{max_wall_minutes!r}")
            max_wall_minutes = minutes
        self.stop_at_step = stop_at_step
        self.max_wall_minutes = max_wall_minutes
        self.signals = signals
        self.clock = clock or now
        self.started = self.clock() if started is None else started

    def minutes_elapsed(self):
        return (self.clock() - self.started) / 60.0

    def signal_received(self):
        return self.signals.received if self.signals is not None else None

    def reason(self, step):
        """Why the leg stops at boundary `step` (a signal name, STOP_AT_STEP or
        MAX_WALL_MINUTES), or None to go on."""
        received = self.signal_received()
        if received is not None:
            return signal_name(received)
        if self.stop_at_step is not None and step >= self.stop_at_step:
            return STOP_AT_STEP
        if self.max_wall_minutes is not None and self.minutes_elapsed() >= self.max_wall_minutes:
            return MAX_WALL_MINUTES
        return None

    def describe(self, reason):
        """The reason in words, for the stop message."""
        if reason == STOP_AT_STEP:
            return f"--stop_at_step={self.stop_at_step}"
        if reason == MAX_WALL_MINUTES:
            return (f"--max_wall_minutes={self.max_wall_minutes:g} reached after "
                    f"{self.minutes_elapsed():.1f} min")
        if reason == ANOTHER_WORKER:
            return "another worker asked to stop"
        return f"on {reason}"


def stop_message(step, train_steps, why, checkpoint=None):
    """"stopped at step N of T (why); ...; re-run the same command ... to continue"."""
    if step >= train_steps:
        return (f"stopped after training completed at step {step} of {train_steps} ({why}); "
                f"re-run the same command to do what follows the training")
    where = f"; its checkpoint is {checkpoint}" if checkpoint else ""
    return f"stopped at step {step} of {train_steps} ({why}){where}; {CONTINUE_HINT}"
