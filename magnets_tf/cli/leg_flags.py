"""--stop_at_step and --max_wall_minutes: how a training tool ends one leg of a run early.

Every training tool defines them once here and turns them into gin bindings of its
training function (`bindings("train")` -> train.stop_at_step, train.max_wall_minutes),
so a flag overrides the gin files and gin alone can set them too. The loop does the rest
(`magnets_tf.training.stopping`).
"""
from absl import app, flags

flags.disclaim_key_flags()  # the flags belong to the tool that defines them

NAMES = ("stop_at_step", "max_wall_minutes")


def define_leg_flags(configurable, flag_values=flags.FLAGS):
    """Defines the two flags; `configurable` names the gin function they bind (help)."""
    flags.DEFINE_integer(
        "stop_at_step", None, f"End this leg at step N with a checkpoint there and exit 0; "
        f"the run's length (the schedules) stays as configured. Re-run the same command "
        f"(without or with a later --stop_at_step) to continue. Unless given: gin "
        f"{configurable}.stop_at_step, else train to the end.", flag_values=flag_values)
    flags.DEFINE_float(
        "max_wall_minutes", None, f"End this leg at the first loop boundary after M minutes "
        f"with a checkpoint there and exit 0 (leave a margin for one loop, the checkpoint "
        f"and start-up). Unless given: gin {configurable}.max_wall_minutes, else no limit.",
        flag_values=flag_values)


def check_leg_flags(flag_values=flags.FLAGS):
    """A usage error naming the flag for a stop step below 1 or minutes not above 0."""
    if flag_values.stop_at_step is not None and flag_values.stop_at_step < 1:
        raise app.UsageError(f"--stop_at_step must be >= 1, got {flag_values.stop_at_step}")
    if flag_values.max_wall_minutes is not None and not flag_values.max_wall_minutes > 0:
        raise app.UsageError(f"--max_wall_minutes must be > 0, got "
                             f"{flag_values.max_wall_minutes}")


def bindings(configurable, flag_values=flags.FLAGS):
    """{"<configurable>.stop_at_step": value, ...} for `gin_flags.bind_flag_overrides`
    (flags not given are None: gin keeps its value)."""
    return {f"{configurable}.{name}": flag_values[name].value for name in NAMES}
