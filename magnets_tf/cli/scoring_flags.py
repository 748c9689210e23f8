"""Flags of the tools that score generated samples against a reference set
(tools/evaluate.py, tools/sweep_schedules.py): the trained generator, the reference data,
the FID features, the run's size and seed.
"""
from absl import app, flags

flags.disclaim_key_flags()  # the flags belong to the tool that defines them


def define_scoring_flags(num_samples, flag_values=flags.FLAGS):
    """Defines the flags; num_samples: this tool's default sample count."""
    def define(definer, name, default, text, **kw):
        definer(name, default, text, flag_values=flag_values, **kw)

    define(flags.DEFINE_string, "model_dir", None, "Trained transformer folder "
           "(tools/train.py output).", required=True)
    define(flags.DEFINE_string, "tokenizer_dir", None, "Trained VQGAN folder "
           "(tools/train_tokenizer.py).", required=True)
    define(flags.DEFINE_string, "output_dir", None, "Where the results go.", required=True)
    define(flags.DEFINE_string, "reference", "fashion_mnist:test", "Reference data set:split.")
    define(flags.DEFINE_integer, "reference_n", None, "Reference images (default: the "
           "whole split).")
    define(flags.DEFINE_integer, "num_samples", num_samples, "Generated images n (report it "
           "with the FID).")
    define(flags.DEFINE_integer, "batch_size", 25, "Decoder batch size.")
    define(flags.DEFINE_integer, "seed", 0, "Sampling seed.")
    define(flags.DEFINE_string, "fid_weights", None, "Converted FID Inception weights "
           "(default: cache).")
    define(flags.DEFINE_string, "cache_dir", None, "Cache folder (default $MAGNETS_TF_CACHE "
           "or ~/.cache/magnets_tf).")
    define(flags.DEFINE_bool, "jit_compile", True, "XLA-compile the decoder.")


def reference(flag_values=flags.FLAGS):
    """(data set, split) of --reference; a usage error unless it reads dataset:split."""
    parts = flag_values.reference.split(":")
    if len(parts) != 2 or not all(parts):
        raise app.UsageError(f"--reference must be dataset:split, got "
                             f"{flag_values.reference!r}")
    return tuple(parts)


def feature_extractor(flag_values=flags.FLAGS):
    """The FID Inception feature extractor of --fid_weights / --cache_dir."""
    from magnets_tf.evaluation.inception import InceptionFeatureExtractor
    return InceptionFeatureExtractor(weights_path=flag_values.fid_weights,
                                     cache_dir=flag_values.cache_dir)


def reference_statistics(extractor, flag_values=flags.FLAGS):
    """FID statistics of --reference (cached in --cache_dir); unreadable data is a usage
    error naming the flag."""
    from magnets_tf.evaluation import fid
    dataset, split = reference(flag_values)
    try:
        return fid.reference_statistics(dataset, split, extractor, n=flag_values.reference_n,
                                        cache_dir=flag_values.cache_dir)
    except (ValueError, OSError) as e:
        raise app.UsageError(f"--reference {flag_values.reference}: {e}") from None
