r"""Exports a MaGNeTS generator (transformer + tokenizer + decode plan) for TF Serving.

python tools/export.py --transformer_dir=/tmp/magnets_fmnist --tokenizer_dir=/tmp/vqgan_fmnist --export_base=/tmp/serving/magnets --batch_sizes=1,8
python tools/export.py --preset=tiny --random_init --export_base=/tmp/serving/magnets --batch_sizes=1,4

Writes EXPORT_BASE/<next integer version>/ (never overwrites one; see
magnets_tf/export/saved_model.py and docs/serving.md) and prints that directory as the
last line. The decode plan comes from --steps/--schedule/--cfg_last/--guidance_scale and
`make_plan.*` gin bindings. Video: a 3D --tokenizer_dir exports clip generation; a
frame-prediction transformer (tools/frame_prediction.py) adds the `clips` input.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app, flags  # noqa: E402
from magnets_tf.gin_setup import parse_gin  # noqa: E402
import gin  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from magnets_tf.decoding.schedule import make_plan  # noqa: E402
from magnets_tf.export.saved_model import export_saved_model  # noqa: E402
from magnets_tf.models.presets import PRESETS, build_transformer  # noqa: E402
from magnets_tf.models.vqgan import build_vqgan  # noqa: E402
from magnets_tf.models.saving import load_tokenizer  # noqa: E402
from magnets_tf.models.saving import load_transformer  # noqa: E402

flags.DEFINE_string("export_base", None, "Model base path: versions go to EXPORT_BASE/<n>/.")
flags.DEFINE_string("transformer_dir", None,
                    "Training model dir (transformer_config.json + transformer.weights.h5).")
flags.DEFINE_string("tokenizer_dir", None,
                    "Tokenizer model dir (tokenizer_config.json + tokenizer.weights.h5).")
flags.DEFINE_bool("random_init", False,
                  "Export randomly initialised weights (trials): a --preset transformer and, "
                  "without --tokenizer_dir, a random small VQGAN (--vqgan_config).")
flags.DEFINE_enum("preset", "tiny", sorted(PRESETS), "Transformer preset for --random_init.")
flags.DEFINE_string("vqgan_config", "small_8x8",
                    "magnets_tf.models.vqgan.SMALL_CONFIGS entry for a random tokenizer.")
flags.DEFINE_integer("num_classes", 10, "Classes of a --random_init transformer.")
flags.DEFINE_list("batch_sizes", ["1"], "Exported batch sizes, e.g. 1,8.")
flags.DEFINE_integer("default_batch_size", None,
                     "Batch size served by the bare signature names (default: the first).")
flags.DEFINE_bool("jit_compile", True, "XLA-compile the decode loop (the model server then "
                  "needs --xla_cpu_compilation_enabled=true on CPU).")
flags.DEFINE_integer("steps", None, "Decoding steps K (default: make_plan / gin).")
flags.DEFINE_string("schedule", None, "Model schedule p:k,... (default: make_plan / gin).")
flags.DEFINE_integer("cfg_last", None, "Classifier-free guidance on the last G steps.")
flags.DEFINE_float("guidance_scale", None, "Guidance scale gs (> 0 with --cfg_last).")
flags.DEFINE_integer("seed", 0, "Seed of --random_init weights and warm-up inputs.")
flags.DEFINE_multi_string("gin_file", [], "Gin files (e.g. make_plan settings).")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings.")
flags.DEFINE_bool("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")

def _plan_kwargs(f):
    kwargs = {}
    if f.steps is not None:
        kwargs["num_steps"] = f.steps
    if f.schedule is not None:
        kwargs["model_schedule"] = f.schedule
    if f.cfg_last is not None:
        kwargs["guidance_steps"] = f.cfg_last
    if f.guidance_scale is not None:
        kwargs["guidance_scale"] = f.guidance_scale
    return kwargs


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if not f.export_base:
        raise app.UsageError("--export_base is required")
    if f.random_init == bool(f.transformer_dir):
        raise app.UsageError("give exactly one of --transformer_dir and --random_init")
    try:
        batch_sizes = [int(b) for b in f.batch_sizes]
    except ValueError:
        raise app.UsageError(f"--batch_sizes must be integers, got {f.batch_sizes}") from None
    if not batch_sizes or min(batch_sizes) <= 0:
        raise app.UsageError(f"--batch_sizes must be positive integers, got {batch_sizes}")
    try:
        parse_gin(f.gin_file, f.gin_bindings)
    except (IOError, ValueError) as e:
        raise app.UsageError(f"bad gin config: {e}") from None

    keras.utils.set_random_seed(f.seed)
    try:
        if f.tokenizer_dir:
            tokenizer = load_tokenizer(f.tokenizer_dir)
            print(f"tokenizer: {f.tokenizer_dir}", flush=True)
        elif f.random_init:
            tokenizer = build_vqgan(f.vqgan_config)
            print(f"tokenizer: no --tokenizer_dir given, using a RANDOM-INIT VQGAN "
                  f"{f.vqgan_config!r} (trial export; images are noise)", flush=True)
        else:
            raise app.UsageError("--tokenizer_dir is required with --transformer_dir")
        num_tokens = int(np.prod(tokenizer.grid_shape))  # h*w, or t*h*w for video
        if f.random_init:
            transformer = build_transformer(f.preset, codebook_size=tokenizer.codebook_size,
                                            num_classes=f.num_classes, num_tokens=num_tokens)
            print(f"transformer: RANDOM-INIT preset {f.preset!r}, {f.num_classes} classes",
                  flush=True)
        else:
            transformer = load_transformer(f.transformer_dir)
            print(f"transformer: {f.transformer_dir}", flush=True)
        plan = make_plan(num_tokens=transformer.num_tokens,
                         num_condition_tokens=transformer.num_condition_tokens,
                         available_factors=transformer.factors, **_plan_kwargs(f))
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from None
    print(f"plan (jit_compile={f.jit_compile}, batch sizes {batch_sizes}):\n"
          f"{plan.describe()}", flush=True)
    try:
        version_dir = export_saved_model(
            transformer, tokenizer, plan, f.export_base, batch_sizes=batch_sizes,
            default_batch_size=f.default_batch_size, jit_compile=f.jit_compile,
            warmup=f.warmup, seed=f.seed)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    print(version_dir, flush=True)


if __name__ == "__main__":
    app.run(main)
