"""The transformer a tool runs: a trained one from its directory, or random weights of a
preset (trial exports, samples, benchmarks).

Random weights are built from --preset and the vocabulary/grid flags; with a trained
directory those flags would be ignored, so giving them is a usage error. A trained
directory whose training is unfinished (a leg stopped early, or a run still going) is
used with a printed warning (`warn_if_unfinished`).
"""
from absl import app, flags

from magnets_tf.models import saving
from magnets_tf.models.presets import PRESETS
from magnets_tf.models.transformer import COMPUTE_DTYPE_POLICIES, with_compute_dtype

flags.disclaim_key_flags()  # the flags belong to the tool that defines them

ARCHITECTURE_FLAGS = ("preset", "grid", "codebook_size", "num_classes")


def define_random_init_flags(preset="tiny", grid=16, codebook_size=1024, num_classes=1000,
                             random_init_flag=True, exclude=(), flag_values=flags.FLAGS):
    """--random_init (unless random_init_flag=False: random weights whenever no trained
    directory is given) and the architecture flags not in `exclude`."""
    if random_init_flag:
        flags.DEFINE_bool("random_init", False, "Use randomly initialised weights of "
                          "--preset (trials).", flag_values=flag_values)
    definitions = dict(
        preset=(flags.DEFINE_enum, preset, dict(enum_values=sorted(PRESETS)),
                "Architecture preset of random weights."),
        grid=(flags.DEFINE_integer, grid, {}, "Token grid side of random weights: "
              "N = grid*grid tokens plus the class token."),
        codebook_size=(flags.DEFINE_integer, codebook_size, {}, "Codebook size of random "
                       "weights."),
        num_classes=(flags.DEFINE_integer, num_classes, {}, "Classes of random weights."))
    for name, (define, default, extra, text) in definitions.items():
        if name not in exclude:
            define(name, default, help=text, flag_values=flag_values, **extra)


def define_compute_dtype_flag(flag_values=flags.FLAGS):
    """--compute_dtype: the dtype decoding computes in (see `apply_compute_dtype`)."""
    flags.DEFINE_enum(
        "compute_dtype", None, sorted(COMPUTE_DTYPE_POLICIES),
        "Dtype of the transformer passes when decoding (weights, activations, K/V cache); "
        "LayerNorm statistics, softmax, logits, guidance, sampling and ranking stay "
        "float32. Default: the model's own (float32 unless trained with a mixed policy).",
        flag_values=flag_values)


def apply_compute_dtype(model, flag_values=flags.FLAGS):
    """`model` computing in --compute_dtype (a copy under that policy when it differs);
    the model itself without the flag or when it is not given."""
    if "compute_dtype" not in flag_values:
        return model
    return with_compute_dtype(model, flag_values.compute_dtype)


def warn_if_unfinished(model_dir):
    """Prints a warning when `model_dir` holds the model of an unfinished training run
    (`run_state.unfinished_note`); returns the note or None."""
    from magnets_tf.training import run_state

    note = run_state.unfinished_note(model_dir)
    if note:
        print(f"warning: {note}", flush=True)
    return note


def check_model_source(model_dir, dir_flag="model_dir", flag_values=flags.FLAGS):
    """True for random weights, False for model_dir's; a usage error unless exactly one
    of the two is asked for (without a --random_init flag: random when no model_dir)."""
    if "random_init" not in flag_values:
        return not model_dir
    if bool(model_dir) == bool(flag_values.random_init):
        raise app.UsageError(f"give exactly one of --{dir_flag} and --random_init")
    return flag_values.random_init


def transformer_from_flags(model_dir, dir_flag="model_dir", seed=0, flag_values=flags.FLAGS,
                           warn=True, **fixed):
    """The trained transformer in `model_dir`, or random weights (seeded with `seed`),
    in --compute_dtype when the tool defines it.

    dir_flag: the flag that gave model_dir (for messages). warn: print a warning when
    model_dir's training is unfinished (`warn_if_unfinished`). fixed: build_transformer
    arguments that replace flags for random weights (e.g. a tokenizer's codebook_size
    and num_tokens).
    """
    f = flag_values
    if not check_model_source(model_dir, dir_flag, flag_values):
        clashing = [name for name in ARCHITECTURE_FLAGS if name in f and f[name].present]
        if clashing:
            raise app.UsageError(f"--{dir_flag} sets the architecture and vocabulary: drop "
                                 f"{', '.join('--' + name for name in clashing)}")
        if warn:
            warn_if_unfinished(model_dir)
        return apply_compute_dtype(saving.load_transformer(model_dir), flag_values)
    import keras
    from magnets_tf.models.presets import build_transformer

    settings = {name: f[name].value for name in ("codebook_size", "num_classes") if name in f}
    if "grid" in f:
        if f.grid <= 0:
            raise app.UsageError(f"--grid must be positive, got {f.grid}")
        settings["num_tokens"] = f.grid * f.grid
    settings.update(fixed)
    keras.utils.set_random_seed(seed)
    return apply_compute_dtype(build_transformer(f.preset, **settings), flag_values)
