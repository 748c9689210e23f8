r"""Throughput of MaskGIT++ vs MaGNeTS decoding on this machine, same weights and batch.

python tools/benchmark.py --preset=S --grid=16 --num_steps=12 --guidance_steps=4 --batch_size=8 --output_json=/tmp/bench_S.json

--compute_dtype=bfloat16 times both decoders in bfloat16; --compare_compute_dtypes=float32,bfloat16
times both decoders in each dtype, interleaved in one run, and reports each dtype's speedup
(docs/performance.md). --jit_compile=false times TF's kernels instead of the XLA decoders.

With --model_dir (tools/train.py output) the trained transformer is timed instead of a random
--preset: its architecture, vocabulary and token grid replace --preset/--grid/--codebook_size/
--num_classes.
"""
from absl import flags, logging

from magnets_tf import xla_cpu
from magnets_tf.cli import app, gin_flags, model_flags, plan_flags
from magnets_tf.evaluation import benchmark
from magnets_tf.utils import files

model_flags.define_random_init_flags(preset="S", random_init_flag=False)
model_flags.define_compute_dtype_flag()
plan_flags.define_plan_flags(guidance_steps=4, guidance_scale=2.0)
gin_flags.define_gin_flags()
flags.DEFINE_integer("batch_size", 8, "Images per decode.")
flags.DEFINE_integer("repeats", 5, "Timed repeats, interleaved (median reported; the "
                     "run-to-run spread on 2 cores is ~5%).")
flags.DEFINE_list("compare_compute_dtypes", None, "Two or more compute dtypes (e.g. "
                  "float32,bfloat16) timed side by side in one run; excludes --compute_dtype.")
flags.DEFINE_bool("jit_compile", True, "XLA-compile the decoders; false times TF's kernels "
                  "(XLA:CPU runs bfloat16 dots no faster than float32 ones).")
flags.DEFINE_integer("seed", 0, "Seed of weights and decodes.")
flags.DEFINE_string("model_dir", None, "Trained transformer folder (tools/train.py output) "
                    "to time instead of a random --preset.")
flags.DEFINE_string("output_json", None, "Where to write the result JSON.")
FLAGS = flags.FLAGS


def main():
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    gin_flags.parse_gin_flags()
    if FLAGS.batch_size <= 0:
        raise app.UsageError("--batch_size must be positive")
    dtypes = FLAGS.compare_compute_dtypes
    if dtypes is not None:
        if FLAGS.compute_dtype:
            raise app.UsageError("give --compute_dtype or --compare_compute_dtypes, not both")
        unknown = sorted(set(dtypes) - set(model_flags.COMPUTE_DTYPE_POLICIES))
        if unknown or len(set(dtypes)) < 2:
            raise app.UsageError(
                f"--compare_compute_dtypes needs two or more of "
                f"{sorted(model_flags.COMPUTE_DTYPE_POLICIES)}, got {','.join(dtypes)}")
    if FLAGS.output_json:
        files.check_output_file(FLAGS.output_json, "--output_json")
    model = model_flags.transformer_from_flags(FLAGS.model_dir, seed=FLAGS.seed)
    if model.num_condition_tokens:
        raise app.UsageError(f"{FLAGS.model_dir} is a frame-prediction model: "
                             "tools/frame_prediction.py times its decoders")
    plan = plan_flags.decode_plan(model)
    label = FLAGS.model_dir or FLAGS.preset
    print(f"model={label} tokens={plan.num_tokens}+1 batch={FLAGS.batch_size} "
          f"repeats={FLAGS.repeats} jit_compile={FLAGS.jit_compile} "
          f"compute_dtype={','.join(dtypes) if dtypes else model.compute_dtype}\n{plan.describe()}",
          flush=True)

    def progress(done, total):
        logging.info("repeat %d/%d done", done, total)

    timing = dict(batch_size=FLAGS.batch_size, repeats=FLAGS.repeats, seed=FLAGS.seed,
                  progress=progress, jit_compile=FLAGS.jit_compile)
    if dtypes:
        result = benchmark.compare_compute_dtypes(model, plan, dtypes, **timing)
    else:
        result = benchmark.run_benchmark(model, plan, **timing)
    result["preset"] = None if FLAGS.model_dir else FLAGS.preset
    result["model_dir"] = FLAGS.model_dir
    if FLAGS.output_json:
        files.write_json(FLAGS.output_json, result)
    print(benchmark.format_table(result), flush=True)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
