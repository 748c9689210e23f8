"""One entry point for every tool: parse the flags, run `main()`, report expected errors
in one line.

Exit codes: 0 success; 2 a usage error (a flag or gin file that cannot be parsed, a flag
value a tool rejects, `UsageError`); 1 a run that failed for an expected reason: bad input
or configuration (ValueError, which covers `ModelFileError`, `TokenShardError`,
`OutputPathError`, `ConfigDriftError`, `CheckpointError`), a file that is missing,
unwritable, on a full or read-only disk (OSError, and TensorFlow's file errors), a
corrupt file (DataLossError), a model_dir locked by another run, a diverged training run,
a `RunFailure` a tool raises. Either prints one line `error: ...` on stderr naming the file
or setting; `--debug` (or --verbosity=1 and more) adds the traceback. A training run
stopped by SIGTERM/SIGINT after writing its checkpoint (`TrainingInterrupted`) prints its
"stopped at step N of T ..." line on stderr and exits with 128 + the signal number, as a
shell reports a process ended by that signal. Any other exception keeps its traceback.

TensorFlow's noise stays out of the way: importing this module sets TF_CPP_MIN_LOG_LEVEL=2
(unless set) and hides the start-up banner TensorFlow's C++ code prints before its
logging is configured (other lines it prints on import are kept); `run` turns Python
warnings and TensorFlow's Python log below ERROR off unless --debug.
"""
import contextlib
import errno
import importlib.abc
import importlib.util
import logging as python_logging
import os
import re
import sys
import tempfile
import traceback
import warnings

from absl import app, flags

from magnets_tf.utils import errors, files

UsageError = app.UsageError
USAGE_ERROR = 2
RUN_FAILURE = 1
MAX_MESSAGE = 2000  # characters of an error line

flags.DEFINE_bool("debug", False, "On failure, print the traceback and TensorFlow's log "
                  "messages too.")

# Lines TensorFlow prints on import before its logging honours TF_CPP_MIN_LOG_LEVEL.
_BANNER = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called|oneDNN custom operations "
    r"are on|cpu_feature_guard|This TensorFlow binary is optimized|To enable the following "
    r"instructions|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already "
    r"registered|TF-TRT Warning|Could not find cuda drivers|Attempting to register factory")
_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
              errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.EIO)
_DISK_FULL = re.compile(r"No space left on device|out of space|ENOSPC|Disk quota exceeded",
                        re.IGNORECASE)
_READ_ONLY = re.compile(r"Read-only file system|EROFS", re.IGNORECASE)


class RunFailure(RuntimeError):
    """An expected failure a tool reports in its own words (exit code 1)."""


def _debug_requested(argv):
    return any(a in ("--debug", "--debug=true", "--debug=True", "--debug=1") for a in argv)


@contextlib.contextmanager
def _banner_filtered_stderr():
    """Sends file descriptor 2 to a temporary file, then replays it minus the banner."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
            kept = [line for line in lines if not _BANNER.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports `tensorflow` (once) with its start-up banner filtered from stderr."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec_module(module):
            with _banner_filtered_stderr():
                exec_module(module)

        spec.loader.exec_module = quiet_exec_module
        return spec


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or _debug_requested(sys.argv):
        return
    if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


_quiet_tensorflow()


def run(main):
    """Runs `main()` (no arguments) as the program, under the error policy above."""
    if main.__module__ != "__main__":
        # A console script: --help shows the tool's own docstring and flags.
        sys.modules["__main__"].__doc__ = sys.modules[main.__module__].__doc__
        for flag in flags.FLAGS.get_key_flags_for_module(main.__module__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def absl_main(argv):
        if len(argv) > 1:
            _exit(f"unexpected arguments: {argv[1:]}", USAGE_ERROR)
        if not flags.FLAGS.debug:
            warnings.simplefilter("ignore")
            python_logging.getLogger("tensorflow").setLevel(python_logging.ERROR)
        try:
            main()
        except UsageError as error:
            _exit(error, USAGE_ERROR)
        except Exception as error:  # noqa: BLE001 (sorted into expected or re-raised)
            interrupted = _training_interrupted(error)
            if interrupted is not None:
                print(_one_line(interrupted), file=sys.stderr, flush=True)
                sys.exit(interrupted.exit_code)
            message = expected_error_message(error)
            if message is None:
                raise
            _exit(error, RUN_FAILURE, message)

    app.run(absl_main, flags_parser=_parse_flags)


def int_list(name, flag_values=flags.FLAGS):
    """The ints of list flag --name (a usage error naming the flag if one is not an int)."""
    try:
        return tuple(int(v) for v in flag_values[name].value)
    except ValueError:
        raise UsageError(f"--{name} must be integers, got {flag_values[name].value}") from None


def argv_without(argv, names):
    """`argv` without the flags in `names` (given as --name=value, --name value, --name or
    --noname), to re-run a tool with some flags replaced. Arguments after "--" are kept."""
    names = set(names) | {f"no{name}" for name in names}
    kept, index = [], 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            return kept + argv[index - 1:]
        name = arg.lstrip("-").split("=", 1)[0]
        if not (arg.startswith("-") and name in names):
            kept.append(arg)
        elif "=" not in arg and index < len(argv) and not argv[index].startswith("-"):
            index += 1  # --name value
    return kept


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _exit(error, USAGE_ERROR)


def _expected_types():
    # Imported only when an error is being reported: training modules load Keras.
    from magnets_tf.training.callbacks import NonFiniteLossError
    from magnets_tf.training.run_lock import RunLockError
    return (ValueError, RunFailure, NonFiniteLossError, RunLockError)


def _training_interrupted(error):
    """The `stopping.TrainingInterrupted` behind `error` (gin may wrap it), or None."""
    from magnets_tf.training.stopping import TrainingInterrupted  # No TensorFlow.

    error = _unwrap_gin(error)
    return error if isinstance(error, TrainingInterrupted) else None


def _tensorflow_message(error):
    """One line for TensorFlow's file and data errors; None for other (unexpected) ones."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError):
        return None
    text = errors.message_of(error)
    line = errors.first_line(text)
    where = errors.path_in(text) or "the output"
    if _DISK_FULL.search(text):
        return (f"no space left on the device of {where} (disk or quota full): free space "
                f"or write elsewhere, then run again; files completed earlier are intact")
    if _READ_ONLY.search(text):
        return f"{where} is on a read-only file system: write to a writable location"
    if isinstance(error, tf.errors.ResourceExhaustedError):
        return f"out of memory ({line}): lower the batch size or use a smaller model"
    if isinstance(error, tf.errors.DataLossError):
        return f"corrupt or truncated data: {line}"
    if isinstance(error, (tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
                          tf.errors.AlreadyExistsError)):
        return line
    return None


def _unwrap_gin(error):
    """The original of an error gin re-raised from a configurable: gin raises a proxy
    subclass (to add "In call to configurable ...") that has no errno or filename."""
    while (getattr(type(error).__init__, "__module__", None) == "gin.utils"
           and isinstance(error.__context__, BaseException)):
        error = error.__context__
    return error


def expected_error_message(error):
    """The one-line message of an expected failure (module docstring), or None."""
    error = _unwrap_gin(error)
    if isinstance(error, OSError) and error.errno in _OS_ERRORS:
        return files.describe_os_error(error)
    message = _tensorflow_message(error)
    if message is not None:
        return message
    if isinstance(error, _expected_types()):
        return str(error)
    return None


def _one_line(message):
    # gin appends "In call to configurable ..." lines to errors raised inside configurables.
    lines = [line for line in str(message).splitlines()
             if not line.strip().startswith("In call to configurable")]
    text = " ".join(" ".join(lines).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def _exit(error, code, message=None):
    debug = flags.FLAGS.is_parsed() and (flags.FLAGS.debug or flags.FLAGS.verbosity >= 1)
    if debug and isinstance(error, Exception):
        traceback.print_exception(error)
    print(f"error: {_one_line(error if message is None else message)}", file=sys.stderr,
          flush=True)
    sys.exit(code)
