r"""Moving MNIST frame prediction: compare MaGNeTS (the plan flags, by default the paper's
schedule with cache) with the full model without cache, same weights: per-frame MSE/PSNR,
FVD (named features) and measured decode time.

Evaluate a model trained by tools/train.py on frame-prediction shards (the training path
for every data set; gin/moving_mnist/magnets_frame_prediction.gin):

nice -n 10 python tools/frame_prediction.py --gin_file=gin/moving_mnist/frame_prediction.gin \
    --tokenizer_dir=runs/video_tokenizer_mmnist --model_dir=runs/mmnist_fp --notrain

--condition_frames must be the shards' num_condition_frames (their metadata.json). With
--train (the default) the tool first trains on clips it generates and encodes in memory:
the same `TransformerTask` through the same `loop.run` as tools/train.py (checkpoints,
resume, steps_per_loop), fed from `TokenArrays` instead of shards, kept for the
one-command Moving MNIST measurement of docs/video.md:

nice -n 10 python tools/frame_prediction.py --gin_file=gin/moving_mnist/frame_prediction.gin \
    --tokenizer_dir=runs/video_tokenizer_mmnist --model_dir=runs/frame_prediction

Writes metrics.json and predictions.png into --output_dir (default --model_dir; with
--train the transformer weights and TensorBoard summaries go to --model_dir); prints one
summary line per decode plan. With a guided plan (--guidance_scale, --guidance_steps;
guidance on the condition frames, MAGVIT-style), --compare_unguided also decodes both
plans without guidance, all four timed interleaved in one run.
--stop_at_step / --max_wall_minutes end a training leg early with a checkpoint and no
evaluation (re-run the same command to continue).
"""
import os

import numpy as np
from absl import flags

from magnets_tf import xla_cpu
from magnets_tf.cli import app, gin_flags, leg_flags, plan_flags
from magnets_tf.data import video
from magnets_tf.data.video import moving_mnist_arrays
from magnets_tf.evaluation import flops
from magnets_tf.evaluation import frame_prediction as frame_prediction_eval
from magnets_tf.evaluation import generation
from magnets_tf.evaluation.fvd import InceptionFrameFeatures
from magnets_tf.training import frame_prediction
from magnets_tf.models import saving
from magnets_tf.models.saving import load_tokenizer
from magnets_tf.utils import images as images_lib
from magnets_tf.utils import files

gin_flags.define_gin_flags()
flags.DEFINE_string("tokenizer_dir", None, "Trained VideoTokenizer directory.")
flags.DEFINE_string("model_dir", None, "Output directory.")
flags.DEFINE_string("dataset", "moving_mnist", "moving_mnist or moving_fashion_mnist.")
flags.DEFINE_integer("num_train_videos", 4000, "Training clips generated.")
flags.DEFINE_integer("num_test_videos", 64, "Test clips predicted.")
flags.DEFINE_integer("condition_frames", 4, "Frames given (first quarter of 16).")
plan_flags.define_plan_flags()
flags.DEFINE_integer("eval_batch_size", 16, "Decode batch size.")
flags.DEFINE_integer("batch_size", 32, "Training batch size.")
flags.DEFINE_integer("fvd_clips", 32, "Clips used for FVD (0: no FVD).")
flags.DEFINE_integer("fvd_frame_stride", 2, "FVD on every n-th predicted frame.")
flags.DEFINE_integer("timing_repeats", 3, "Timed decode passes per plan.")
flags.DEFINE_bool("jit_compile", True, "XLA-compile the decoders (slow to compile on a "
                  "loaded CPU; timing compares plans under the same setting).")
flags.DEFINE_bool("train", True, "Train in memory first (else evaluate the transformer in "
                  "--model_dir, e.g. one tools/train.py trained on frame-prediction shards).")
flags.DEFINE_bool("compare_unguided", False, "Also decode both plans without guidance "
                  "(guidance_scale 0), timed in the same run: what guidance on the condition "
                  "frames adds. Needs a guided plan (--guidance_scale > 0).")
flags.DEFINE_string("output_dir", None, "Where metrics.json and predictions.png go "
                    "(default: --model_dir).")
flags.DEFINE_bool("progress", True, "Progress bars.")
flags.DEFINE_integer("steps_per_loop", None, "Train steps per host sync (one tf.function); "
                     "summaries, images, checkpoints and the loss check run at loop "
                     "boundaries. Unless given: gin train_frame_prediction.steps_per_loop, else 1.")
leg_flags.define_leg_flags("train_frame_prediction")
flags.DEFINE_bool("allow_config_change", False, "Resume --model_dir even though the model or "
                  "gin settings differ from the stored ones.")
flags.mark_flags_as_required(["tokenizer_dir", "model_dir"])
FLAGS = flags.FLAGS


def main():
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    if FLAGS.steps_per_loop is not None and FLAGS.steps_per_loop < 1:
        raise app.UsageError(f"--steps_per_loop must be >= 1, got {FLAGS.steps_per_loop}")
    leg_flags.check_leg_flags()
    gin_flags.parse_gin_flags()
    gin_flags.bind_flag_overrides(
        {"train_frame_prediction.steps_per_loop": FLAGS.steps_per_loop,
         **leg_flags.bindings("train_frame_prediction")})
    tokenizer = load_tokenizer(FLAGS.tokenizer_dir)
    if not hasattr(tokenizer, "video_shape"):
        raise app.UsageError(f"{FLAGS.tokenizer_dir} holds an image tokenizer, not a "
                             f"VideoTokenizer")
    frames, height, width, _ = tokenizer.video_shape
    t, h, w = tokenizer.grid_shape
    try:  # the latent frames covering the condition frames (docs/video.md)
        condition_tokens = video.condition_token_count(
            FLAGS.condition_frames, tokenizer.video_shape, tokenizer.grid_shape)
    except ValueError as e:
        raise app.UsageError(f"--condition_frames: {e}") from None
    if FLAGS.train and not 0 < FLAGS.batch_size <= FLAGS.num_train_videos:
        raise app.UsageError(f"--batch_size={FLAGS.batch_size} must be in "
                             f"[1, --num_train_videos={FLAGS.num_train_videos}]")
    if FLAGS.compare_unguided and not (plan_flags.plan_setting("guidance_scale") > 0
                                       and plan_flags.plan_setting("guidance_steps") > 0):
        raise app.UsageError("--compare_unguided needs a guided plan: set "
                             "--guidance_scale > 0 and --guidance_steps > 0")
    output_dir = FLAGS.output_dir or FLAGS.model_dir
    # After the usage checks (a refused run leaves nothing), before any work.
    files.check_writable_dir(FLAGS.model_dir, "--model_dir")
    files.check_writable_dir(output_dir, "--output_dir")

    if FLAGS.train:
        videos, labels = moving_mnist_arrays(FLAGS.dataset, "train", FLAGS.num_train_videos,
                                             frames, (height, width), seed=0)
        train_tokens = video.clip_tokens(
            tokenizer, videos.astype(np.float32) / 255.0, FLAGS.condition_frames,
            condition_tokens)
        summary = frame_prediction.train_frame_prediction(
            FLAGS.model_dir, train_tokens, labels, codebook_size=tokenizer.codebook_size,
            num_classes=10, num_condition_tokens=condition_tokens,
            batch_size=FLAGS.batch_size, progress=FLAGS.progress,
            **(dict(allow_config_change=True) if FLAGS.allow_config_change else {}))
        if not summary["complete"]:
            return  # An unfinished model is not evaluated; the loop said where it stopped.
        print(f"trained {summary['final_step']} steps: {summary['logs']}")
    model = saving.load_transformer(FLAGS.model_dir)
    if model.num_condition_tokens != condition_tokens:
        raise app.UsageError(f"{FLAGS.model_dir} predicts from {model.num_condition_tokens} "
                             f"condition tokens; --condition_frames="
                             f"{FLAGS.condition_frames} gives {condition_tokens}")

    test, test_labels = moving_mnist_arrays(FLAGS.dataset, "test", FLAGS.num_test_videos,
                                            frames, (height, width), seed=0)
    magnets = plan_flags.decode_plan(model)
    plans = {"magnets": magnets, "full_model_no_cache": flops.uncached_baseline_plan(magnets)}
    if FLAGS.compare_unguided:
        unguided = plan_flags.decode_plan(model, guidance_scale=0.0, guidance_steps=0)
        plans.update(magnets_unguided=unguided,
                     full_model_no_cache_unguided=flops.uncached_baseline_plan(unguided))
    network = None
    if FLAGS.fvd_clips:
        network = InceptionFrameFeatures()
    results, decoded = frame_prediction_eval.evaluate_frame_prediction(
        model, tokenizer, test.astype(np.float32) / 255.0, test_labels, plans,
        FLAGS.eval_batch_size, FLAGS.condition_frames, fvd_network=network,
        repeats=FLAGS.timing_repeats, fvd_max_clips=FLAGS.fvd_clips,
        fvd_frame_stride=FLAGS.fvd_frame_stride, jit_compile=FLAGS.jit_compile)
    for name, plan in plans.items():  # per clip; condition tokens are never processed
        results[name].update(generation.plan_gflops(model, plan))
    for suffix in ("", "_unguided") if FLAGS.compare_unguided else ("",):
        fast, full = results["magnets" + suffix], results["full_model_no_cache" + suffix]
        fast["measured_speedup_vs_full_model"] = (full["decode_seconds_median"]
                                                  / fast["decode_seconds_median"])
        fast["exact_gflops_ratio_vs_full_model"] = full["gflops_exact"] / fast["gflops_exact"]
    for name, plan in plans.items():
        results[name].update(guidance_scale=plan.guidance_scale,
                             guidance_steps=plan.guidance_steps, uncond_input=plan.uncond_input)
    results["setting"] = dict(
        dataset=FLAGS.dataset, clip=list(tokenizer.video_shape), token_grid=[t, h, w],
        condition_frames=FLAGS.condition_frames, condition_tokens=condition_tokens,
        generated_tokens=t * h * w - condition_tokens, steps=magnets.num_steps,
        transformer=model.get_config(), num_test_clips=len(test),
        decoder_jit_compile=FLAGS.jit_compile)
    path = os.path.join(output_dir, "metrics.json")
    files.write_json(path, results, default=str)
    rows = []
    for i in range(4):  # per clip: the real one, then each plan's prediction
        rows += [test[i].astype(np.float32) / 255.0, *(decoded[name][i] for name in plans)]
    images_lib.write_png(os.path.join(output_dir, "predictions.png"),
                         images_lib.clip_grid(np.stack(rows)))
    for name in plans:
        r = results[name]
        fvd = r.get("fvd", {})
        print(f"{name}: psnr_db={r['psnr_db']:.2f} mse={r['mse']:.5f} "
              f"fvd={fvd.get('fvd', float('nan')):.2f} ({fvd.get('features', '-')}, "
              f"n={fvd.get('n_generated', 0)}) decode_s={r['decode_seconds_median']:.3f} "
              f"gflops_exact={r['gflops_exact']:.3f}")
    for name in ("magnets", "magnets_unguided"):
        if name in results:
            print(f"{name}: speedup={results[name]['measured_speedup_vs_full_model']:.2f} "
                  f"exact_gflops_ratio={results[name]['exact_gflops_ratio_vs_full_model']:.2f}")
    print(f"copy_last_frame_psnr_db={results['copy_last_condition_frame']['psnr_db']:.2f} "
          f"tokenizer_psnr_db={results['tokenizer_reconstruction']['psnr_db']:.2f}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
