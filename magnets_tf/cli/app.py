"""One entry point for every tool: parse the flags, run `main()`, report expected errors
in one line.

Exit codes: 0 success; 2 a usage error (a bad flag, `UsageError`); 1 a run that failed
for an expected reason: bad input or configuration (ValueError, which covers
`ModelFileError`, `TokenShardError`, `CheckpointError`), a missing file, a training loss
gone non-finite, a `RunFailure` a tool raises. Either prints `error: ...` on stderr (with
the traceback too at --verbosity=1 or more); any other exception keeps its traceback.
"""
import sys
import traceback

from absl import app, flags

UsageError = app.UsageError
USAGE_ERROR = 2
RUN_FAILURE = 1


class RunFailure(RuntimeError):
    """An expected failure a tool reports in its own words (exit code 1)."""


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
        try:
            main()
        except UsageError as error:
            _exit(error, USAGE_ERROR)
        except Exception as error:  # noqa: BLE001 (sorted into expected or re-raised)
            if not isinstance(error, _expected_errors()):
                raise
            _exit(error, RUN_FAILURE)

    app.run(absl_main, flags_parser=_parse_flags)


def int_list(name, flag_values=flags.FLAGS):
    """The ints of list flag --name (a usage error naming the flag if one is not an int)."""
    try:
        return tuple(int(v) for v in flag_values[name].value)
    except ValueError:
        raise UsageError(f"--{name} must be integers, got {flag_values[name].value}") from None


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _exit(error, USAGE_ERROR)


def _expected_errors():
    # Imported only when an error is being reported: training modules load Keras.
    from magnets_tf.training.callbacks import NonFiniteLossError
    return (ValueError, FileNotFoundError, RunFailure, NonFiniteLossError)


def _exit(error, code):
    if flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1 and isinstance(error, Exception):
        traceback.print_exception(error)
    # gin appends "In call to configurable ..." lines to errors raised inside configurables.
    message = "\n".join(line for line in str(error).splitlines()
                        if not line.startswith("  In call to configurable"))
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)
