r"""Sweeps MaGNeTS decode schedules: FID and GFLOPs per schedule -> CSV + plot (paper Fig. 7).

python tools/sweep_schedules.py --model_dir=/tmp/fmnist/transformer --tokenizer_dir=/tmp/fmnist/tokenizer \
  --families=baseline,cache,scaling,compositions --total_steps=12 --num_samples=500 \
  --output_dir=/tmp/fmnist/sweep

Tuning the sampling settings of MaGNeTS and MaskGIT++ alike (the `sampling` family: the
--model_schedule plan with cache and its baseline 1:K, K its steps, under every combination
of the grid):
python tools/sweep_schedules.py ... --families=sampling --guidance_steps=4 \
  --sampling_grid=guidance_scale=1,2,4 --sampling_grid=temperature_bias=0.5,1 \
  --output_dir=/tmp/fmnist/sampling
The best setting of each plan is printed at the end.

Interrupt with Ctrl-C at any time; rerunning the same command resumes and skips points
already in output_dir/sweep.csv. --max_points limits how many new points one run adds.
Each point sets the schedule, steps, cache and refresh; the other plan settings come from
their flags (--guidance_steps, --guidance_scale, ...) or --gin_file/--gin_bindings.
"""
import sys
from pathlib import Path

from absl import flags

from magnets_tf import xla_cpu
from magnets_tf.cli import app, gin_flags, model_flags, plan_flags, scoring_flags
from magnets_tf.decoding.schedule import DEFAULT_MODEL_SCHEDULE
from magnets_tf.utils import files
from magnets_tf.utils import images as images_lib

scoring_flags.define_scoring_flags(num_samples=500)
# A point fixes its schedule, steps, cache and refresh; --model_schedule is the schedule
# of the cache and scale_down families.
plan_flags.define_plan_flags(exclude=("num_steps", "use_cache", "refresh"),
                             model_schedule=DEFAULT_MODEL_SCHEDULE)
gin_flags.define_gin_flags()
model_flags.define_compute_dtype_flag()
flags.DEFINE_list("families", ["baseline", "cache", "scaling", "compositions"],
                  "Point families: compositions, scaling, cache, baseline, nested, "
                  "scale_down, sampling.")
flags.DEFINE_multi_string("sampling_grid", [], "Sampling family: NAME=V1,V2,... per plan "
                          "setting varied (repeatable; every combination is a point), NAME "
                          "one of guidance_scale, guidance_steps, temperature_bias, "
                          "temperature_scale, mask_temperature.")
flags.DEFINE_integer("total_steps", 12, "K of the compositions and the baseline.")
flags.DEFINE_integer("min_steps", 1, "Least steps per nested model in compositions.")
flags.DEFINE_list("steps_per_model", ["1", "2", "3", "4", "5", "6"],
                  "k of the scaling family (8:k,4:k,2:k,1:k).")
flags.DEFINE_list("factors", ["8", "4", "2", "1"], "Nested factors, smallest model first.")
flags.DEFINE_integer("max_points", None, "Evaluate at most this many new points this run.")
FLAGS = flags.FLAGS


def main():
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    scoring_flags.reference()
    files.check_writable_dir(FLAGS.output_dir, "--output_dir")
    gin_flags.parse_gin_flags()
    from magnets_tf.evaluation import fid, generation, sweep

    try:
        points = sweep.build_points(
            FLAGS.families, total=FLAGS.total_steps, min_steps=FLAGS.min_steps,
            steps_per_model=app.int_list("steps_per_model"), factors=app.int_list("factors"),
            schedule=plan_flags.plan_setting("model_schedule"),
            sampling_grid=sweep.parse_sampling_grid(FLAGS.sampling_grid))
    except ValueError as e:  # the flags name no valid points
        raise app.UsageError(str(e)) from None
    out = Path(FLAGS.output_dir)
    csv_path = out / "sweep.csv"
    done = {row["key"] for row in sweep.read_rows(csv_path)}
    pending = [p for p in points if p.key not in done]
    todo = pending if FLAGS.max_points is None else pending[:FLAGS.max_points]
    print(f"{len(points)} points, {len(points) - len(pending)} already in {csv_path}, "
          f"evaluating {len(todo)} now")

    for directory in (FLAGS.model_dir, FLAGS.tokenizer_dir):
        model_flags.warn_if_unfinished(directory)
    model, decode_fn = generation.load_generator(FLAGS.model_dir, FLAGS.tokenizer_dir)
    model = model_flags.apply_compute_dtype(model)
    plans = {p.key: plan_flags.decode_plan(model, **p.plan_kwargs()) for p in todo}
    extractor = scoring_flags.feature_extractor()
    reference = scoring_flags.reference_statistics(extractor)

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
        files.write_json(out / "sweep_config.json", {
            "reference": FLAGS.reference, "num_samples": FLAGS.num_samples,
            "seed": FLAGS.seed, "model_dir": FLAGS.model_dir,
            "compute_dtype": model.compute_dtype, "note": fid.SMALL_SAMPLE_NOTE})
    for schedule_text, row in sweep.best_sampling(rows).items():
        print(f"best sampling of {schedule_text}: {row['sampling']} (FID {float(row['fid']):.2f})")
    state = "interrupted: rerun the same command to resume" if interrupted else "done"
    print(f"{state}; {len(rows)} points in {csv_path}, plot {out / 'sweep.png'}")
    if interrupted:
        sys.exit(130)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
