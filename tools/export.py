r"""Exports a MaGNeTS generator (transformer + tokenizer + decode plan) for TF Serving.

python tools/export.py --transformer_dir=/tmp/magnets_fmnist --tokenizer_dir=/tmp/vqgan_fmnist --export_base=/tmp/serving/magnets --batch_sizes=1,8
python tools/export.py --preset=tiny --random_init --export_base=/tmp/serving/magnets --batch_sizes=1,4

Writes EXPORT_BASE/<next integer version>/ (never overwrites one; see
magnets_tf/export/saved_model.py and docs/serving.md) and prints that directory as the
last line. A --transformer_dir or --tokenizer_dir whose training is unfinished (a leg
stopped early: training_status.json) is refused unless --allow_unfinished, so a preview
is never served by mistake. The decode plan comes from the plan flags (--num_steps, --model_schedule,
--guidance_steps, --guidance_scale, ...) and `make_plan.*` gin bindings. Video: a 3D
--tokenizer_dir exports clip generation; a frame-prediction transformer
(tools/train.py on frame-prediction shards, or tools/frame_prediction.py) adds the `clips`
input, whose first --condition_frames frames are given (default: the frames its condition
tokens cover; 5 for Kinetics-600). A class-agnostic transformer (num_classes 0) exports
signatures without `class_ids`.
"""
import math

from absl import flags

from magnets_tf.cli import app, gin_flags, model_flags, plan_flags
from magnets_tf.utils import files

flags.DEFINE_string("export_base", None, "Model base path: versions go to EXPORT_BASE/<n>/.",
                    required=True)
flags.DEFINE_string("transformer_dir", None,
                    "Training model dir (transformer_config.json + transformer.weights.h5).")
flags.DEFINE_string("tokenizer_dir", None,
                    "Tokenizer model dir (tokenizer_config.json + tokenizer.weights.h5).")
model_flags.define_random_init_flags(preset="tiny", num_classes=10,
                                     exclude=("grid", "codebook_size"))
flags.DEFINE_string("vqgan_config", "small_8x8",
                    "magnets_tf.models.vqgan.SMALL_CONFIGS entry for a random tokenizer "
                    "(--random_init without --tokenizer_dir).")
flags.DEFINE_list("batch_sizes", ["1"], "Exported batch sizes, e.g. 1,8.")
flags.DEFINE_integer("default_batch_size", None,
                     "Batch size served by the bare signature names (default: the first).")
flags.DEFINE_bool("jit_compile", True, "XLA-compile the decode loop (the model server then "
                  "needs --xla_cpu_compilation_enabled=true on CPU).")
model_flags.define_compute_dtype_flag()
plan_flags.define_plan_flags()
gin_flags.define_gin_flags()
flags.DEFINE_integer("seed", 0, "Seed of --random_init weights and warm-up inputs.")
flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")
flags.DEFINE_bool("allow_unfinished", False, "Export a transformer or tokenizer whose "
                  "training is unfinished (a leg stopped before the run's last step), e.g. "
                  "for a preview; without it such a directory is refused.")
flags.DEFINE_integer("condition_frames", None, "Frame prediction: frames of the `clips` input "
                     "that are given (default: all frames of the condition tokens' latent "
                     "frames).")
FLAGS = flags.FLAGS


def _batch_sizes():
    try:
        batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    except ValueError:
        raise app.UsageError(f"--batch_sizes must be integers, got {FLAGS.batch_sizes}") from None
    if not batch_sizes or min(batch_sizes) <= 0:
        raise app.UsageError(f"--batch_sizes must be positive integers, got {batch_sizes}")
    return batch_sizes


def _tokenizer():
    from magnets_tf.models.saving import load_tokenizer
    from magnets_tf.models.vqgan import build_vqgan

    if FLAGS.tokenizer_dir:
        print(f"tokenizer: {FLAGS.tokenizer_dir}", flush=True)
        return load_tokenizer(FLAGS.tokenizer_dir)
    if FLAGS.transformer_dir:
        raise app.UsageError("--tokenizer_dir is required with --transformer_dir")
    print(f"tokenizer: no --tokenizer_dir given, using a RANDOM-INIT VQGAN "
          f"{FLAGS.vqgan_config!r} (trial export; images are noise)", flush=True)
    return build_vqgan(FLAGS.vqgan_config)


def _check_finished():
    """Refuses (or, with --allow_unfinished, warns about) an unfinished trained model."""
    from magnets_tf.training import run_state

    for flag in ("transformer_dir", "tokenizer_dir"):
        directory = FLAGS[flag].value
        note = run_state.unfinished_note(directory) if directory else None
        if note and not FLAGS.allow_unfinished:
            raise app.UsageError(f"--{flag}: {note}. Finish its training (re-run the same "
                                 f"training command), or pass --allow_unfinished to export "
                                 f"this preview")
        if note:
            print(f"warning: exporting a preview: {note}", flush=True)


def main():
    batch_sizes = _batch_sizes()
    model_flags.check_model_source(FLAGS.transformer_dir, "transformer_dir")
    _check_finished()
    files.check_writable_dir(FLAGS.export_base, "--export_base")
    gin_flags.parse_gin_flags()
    import keras
    from magnets_tf.export.saved_model import export_saved_model

    keras.utils.set_random_seed(FLAGS.seed)
    tokenizer = _tokenizer()
    transformer = model_flags.transformer_from_flags(
        FLAGS.transformer_dir, "transformer_dir", seed=FLAGS.seed, warn=False,
        codebook_size=tokenizer.codebook_size,
        num_tokens=math.prod(tokenizer.grid_shape))  # h*w, or t*h*w for video
    print(f"transformer: {FLAGS.transformer_dir or 'RANDOM-INIT preset ' + repr(FLAGS.preset)}"
          + ("" if FLAGS.transformer_dir else f", {FLAGS.num_classes} classes"), flush=True)
    plan = plan_flags.decode_plan(transformer)
    print(f"plan (jit_compile={FLAGS.jit_compile}, batch sizes {batch_sizes}, "
          f"compute_dtype={transformer.compute_dtype}):\n"
          f"{plan.describe()}", flush=True)
    version_dir = export_saved_model(
        transformer, tokenizer, plan, FLAGS.export_base, batch_sizes=batch_sizes,
        default_batch_size=FLAGS.default_batch_size, jit_compile=FLAGS.jit_compile,
        warmup=FLAGS.warmup, seed=FLAGS.seed, condition_frames=FLAGS.condition_frames)
    print(version_dir, flush=True)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
