r"""Sweeps MaGNeTS decode schedules: FID and GFLOPs per schedule -> CSV + plot (paper Fig. 7).

python tools/sweep_schedules.py --model_dir=/tmp/fmnist/transformer --tokenizer_dir=/tmp/fmnist/tokenizer \
  --families=baseline,cache,scaling,compositions --total_steps=12 --num_samples=500 \
  --output_dir=/tmp/fmnist/sweep

Interrupt with Ctrl-C at any time; rerunning the same command resumes and skips points
already in output_dir/sweep.csv. --max_points limits how many new points one run adds.
Plan settings besides schedule/steps/cache/refresh come from --gin_file/--gin_bindings.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app, flags  # noqa: E402
from magnets_tf import xla_cpu  # noqa: E402
from magnets_tf.gin_setup import parse_gin  # noqa: E402
from magnets_tf.utils import images as images_lib  # noqa: E402
import gin  # noqa: E402

flags.DEFINE_string("model_dir", None, "Trained transformer folder (tools/train.py output).")
flags.DEFINE_string("tokenizer_dir", None, "Trained VQGAN folder (tools/train_tokenizer.py).")
flags.DEFINE_string("reference", "fashion_mnist:test", "Reference data set:split.")
flags.DEFINE_integer("reference_n", None, "Reference images (default: the whole split).")
flags.DEFINE_list("families", ["baseline", "cache", "scaling", "compositions"],
                  "Point families: compositions, scaling, cache, baseline, nested, "
                  "scale_down.")
flags.DEFINE_integer("total_steps", 12, "K of the compositions and the baseline.")
flags.DEFINE_integer("min_steps", 1, "Least steps per nested model in compositions.")
flags.DEFINE_list("steps_per_model", ["1", "2", "3", "4", "5", "6"],
                  "k of the scaling family (8:k,4:k,2:k,1:k).")
flags.DEFINE_string("schedule", "8:3,4:3,2:3,1:3", "Schedule of the cache family.")
flags.DEFINE_list("factors", ["8", "4", "2", "1"], "Nested factors, smallest model first.")
flags.DEFINE_integer("max_points", None, "Evaluate at most this many new points this run.")
flags.DEFINE_integer("num_samples", 500, "Generated images per point.")
flags.DEFINE_integer("batch_size", 25, "Decoder batch size.")
flags.DEFINE_integer("seed", 0, "Sampling seed (the same for every point).")
flags.DEFINE_string("output_dir", None, "Where sweep.csv, sweep.png and samples go.")
flags.DEFINE_string("fid_weights", None, "Converted FID Inception weights (default: cache).")
flags.DEFINE_string("cache_dir", None, "Cache folder (default $MAGNETS_TF_CACHE or "
                    "~/.cache/magnets_tf).")
flags.DEFINE_bool("jit_compile", True, "XLA-compile the decoder.")
flags.DEFINE_multi_string("gin_file", [], "Gin files (make_plan.* settings).")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings.")
FLAGS = flags.FLAGS


def _ints(values, name):
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise app.UsageError(f"--{name} must be integers, got {values}") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    for name in ("model_dir", "tokenizer_dir", "output_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    parts = FLAGS.reference.split(":")
    if len(parts) != 2 or not all(parts):
        raise app.UsageError(f"--reference must be dataset:split, got {FLAGS.reference!r}")
    from magnets_tf.decoding.schedule import parse_model_schedule
    from magnets_tf.evaluation import sweep

    try:
        points = sweep.build_points(
            FLAGS.families, total=FLAGS.total_steps, min_steps=FLAGS.min_steps,
            steps_per_model=_ints(FLAGS.steps_per_model, "steps_per_model"),
            schedule=parse_model_schedule(FLAGS.schedule),
            factors=_ints(FLAGS.factors, "factors"))
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    out = Path(FLAGS.output_dir)
    csv_path = out / "sweep.csv"
    try:
        done = {row["key"] for row in sweep.read_rows(csv_path)}
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    pending = [p for p in points if p.key not in done]
    todo = pending if FLAGS.max_points is None else pending[:FLAGS.max_points]
    print(f"{len(points)} points, {len(points) - len(pending)} already in {csv_path}, "
          f"evaluating {len(todo)} now")
    from magnets_tf.evaluation import fid, generation
    from magnets_tf.evaluation.inception import InceptionFeatureExtractor

    try:
        parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    except (IOError, ValueError) as e:
        raise app.UsageError(f"bad gin configuration: {e}") from None

    try:
        model, decode_fn = generation.load_generator(FLAGS.model_dir, FLAGS.tokenizer_dir)
        plans = {p.key: generation.make_model_plan(model, **p.plan_kwargs()) for p in todo}
    except (ImportError, ValueError, OSError) as e:
        raise app.UsageError(str(e)) from None
    extractor = InceptionFeatureExtractor(weights_path=FLAGS.fid_weights,
                                          cache_dir=FLAGS.cache_dir)
    reference = fid.reference_statistics(parts[0], parts[1], extractor, n=FLAGS.reference_n,
                                         cache_dir=FLAGS.cache_dir)

    def evaluate(point):
        metrics, images = generation.evaluate_plan(
            model, plans[point.key], decode_fn, extractor, reference, FLAGS.num_samples,
            FLAGS.batch_size, seed=FLAGS.seed, jit_compile=FLAGS.jit_compile, progress=False)
        name = point.key.replace("|", "_").replace(",", "-").replace(":", "x").replace("=", "")
        images_lib.save_image_grid(images[:32], out / "samples" / f"{name}.png", columns=8)
        return metrics

    def report(row):
        print(f"  {row['key']}: FID {row['fid']:.2f} (n={row['n']})  "
              f"GFLOPs/image {row['gflops_exact']:.3f}")

    rows, interrupted = sweep.run_sweep(todo, evaluate, csv_path, on_row=report)
    rows = sweep.read_rows(csv_path)
    if rows:
        sweep.plot_sweep(rows, out / "sweep.png")
        (out / "sweep_config.json").write_text(json.dumps(
            {"reference": FLAGS.reference, "num_samples": FLAGS.num_samples,
             "seed": FLAGS.seed, "model_dir": FLAGS.model_dir,
             "note": fid.SMALL_SAMPLE_NOTE}, indent=2))
    state = "interrupted: rerun the same command to resume" if interrupted else "done"
    print(f"{state}; {len(rows)} points in {csv_path}, plot {out / 'sweep.png'}")
    if interrupted:
        sys.exit(130)


if __name__ == "__main__":
    app.run(main)
