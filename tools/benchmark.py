r"""Throughput of MaskGIT++ vs MaGNeTS decoding on this machine, same weights and batch.

python tools/benchmark.py --preset=S --grid=16 --steps=12 --cfg_last=4 --batch_size=8 --output_json=/tmp/bench_S.json

With --model_dir (tools/train.py output) the trained transformer is timed instead of a random
--preset: its architecture, vocabulary and token grid replace --preset/--grid/--codebook_size/
--num_classes.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app, flags, logging  # noqa: E402
from magnets_tf import xla_cpu  # noqa: E402
from magnets_tf.gin_setup import parse_gin  # noqa: E402
import gin  # noqa: E402

from magnets_tf.decoding.schedule import make_plan  # noqa: E402
from magnets_tf.evaluation import benchmark  # noqa: E402
from magnets_tf.models.presets import PRESETS, build_transformer  # noqa: E402
from magnets_tf.models.saving import load_transformer  # noqa: E402
from magnets_tf.utils import files  # noqa: E402

flags.DEFINE_enum("preset", "S", sorted(PRESETS), "Architecture preset (random weights).")
flags.DEFINE_integer("grid", 16, "Token grid side: N = grid*grid tokens plus the class token.")
flags.DEFINE_integer("steps", 12, "Decoding steps K.")
flags.DEFINE_integer("cfg_last", 4, "Classifier-free guidance on the last G steps.")
flags.DEFINE_float("guidance_scale", 2.0, "Guidance scale gs of eq. 4 (> 0 when cfg_last).")
flags.DEFINE_string("schedule", "8:3,4:3,2:3,1:3", "MaGNeTS model schedule p:k,...")
flags.DEFINE_enum("refresh", "model_change", ["model_change", "every_step", "never"],
                  "MaGNeTS cache refresh policy.")
flags.DEFINE_integer("batch_size", 8, "Images per decode.")
flags.DEFINE_integer("repeats", 5, "Timed repeats, interleaved (median reported; the "
                     "run-to-run spread on 2 cores is ~5%).")
flags.DEFINE_integer("codebook_size", 1024, "VQ codebook size.")
flags.DEFINE_integer("num_classes", 1000, "Number of classes.")
flags.DEFINE_integer("seed", 0, "Seed of weights and decodes.")
flags.DEFINE_string("model_dir", None, "Trained transformer folder (tools/train.py output) "
                    "to time instead of a random --preset.")
flags.DEFINE_string("output_json", None, "Where to write the result JSON.")
flags.DEFINE_multi_string("gin_file", [], "Gin files (e.g. make_plan settings).")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    f = flags.FLAGS
    try:
        parse_gin(f.gin_file, f.gin_bindings)
    except (IOError, ValueError) as e:
        raise app.UsageError(f"bad gin config: {e}") from None
    if f.grid <= 0 or f.batch_size <= 0:
        raise app.UsageError("--grid and --batch_size must be positive")
    import keras  # noqa: E402  (after flags: TF start-up is slow)
    keras.utils.set_random_seed(f.seed)
    if f.model_dir:
        clashing = [name for name in ("preset", "grid", "codebook_size", "num_classes")
                    if f[name].present]
        if clashing:
            raise app.UsageError(f"--model_dir sets the architecture and vocabulary: drop "
                                 f"{', '.join('--' + n for n in clashing)}")
        try:
            model = load_transformer(f.model_dir)
        except ValueError as e:
            raise app.UsageError(str(e)) from None
        if model.num_condition_tokens:
            raise app.UsageError(f"{f.model_dir} is a frame-prediction model: "
                                 "tools/frame_prediction.py times its decoders")
        num_tokens, factors, label = model.num_tokens, tuple(model.factors), f.model_dir
    else:
        num_tokens, factors, label = f.grid * f.grid, (1, 2, 4, 8), f.preset
    try:
        plan = make_plan(num_tokens=num_tokens, num_steps=f.steps,
                         model_schedule=f.schedule, refresh=f.refresh,
                         guidance_scale=f.guidance_scale if f.cfg_last else 0.0,
                         guidance_steps=f.cfg_last, available_factors=factors)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if not f.model_dir:
        model = build_transformer(f.preset, codebook_size=f.codebook_size,
                                  num_classes=f.num_classes, num_tokens=num_tokens)
    print(f"model={label} tokens={plan.num_tokens}+1 batch={f.batch_size} "
          f"repeats={f.repeats}\n{plan.describe()}", flush=True)

    def progress(done, total):
        logging.info("repeat %d/%d done", done, total)

    result = benchmark.run_benchmark(model, plan, batch_size=f.batch_size,
                                     repeats=f.repeats, seed=f.seed, progress=progress)
    result["preset"] = None if f.model_dir else f.preset
    result["model_dir"] = f.model_dir
    if f.output_json:
        files.write_json(f.output_json, result)
    print(benchmark.format_table(result), flush=True)


if __name__ == "__main__":
    app.run(main)
