r"""Sample quality and cost of one decode plan: metrics JSON + sample grid.

python tools/evaluate.py --model_dir=/tmp/fmnist/transformer --tokenizer_dir=/tmp/fmnist/tokenizer \
  --reference=fashion_mnist:test --num_samples=1000 --model_schedule=8:3,4:3,2:3,1:3 --num_steps=12 \
  --output_dir=/tmp/fmnist/eval

Plan settings not given as flags come from --gin_file/--gin_bindings (make_plan.*).
Writes output_dir/metrics.json (FID, precision/recall, IS when the classifier weights are
converted, exact and paper GFLOPs/image and their ratio to the full model without cache,
n and the small-sample note) and samples.png. --tensorboard_dir=DIR also writes its
numbers as TensorBoard scalars "generation/<name>" into the run DIR (e.g.
<model_dir>/eval, beside the training's held-out evaluation) at the model's trained step.

Video models (a 3D --tokenizer_dir) are scored on clips of --reference (moving_mnist,
moving_fashion_mnist, opencv_clips): FVD with the features it names (per-frame FID
Inception averaged over time offline; I3D from --i3d_path), and for frame prediction
(num_condition_tokens > 0) also per-frame MSE/PSNR of the predicted frames; samples.png
holds one clip per row.
"""
import os
from pathlib import Path

import numpy as np
from absl import flags

from magnets_tf import xla_cpu
from magnets_tf.cli import app, gin_flags, model_flags, plan_flags, scoring_flags
from magnets_tf.decoding.schedule import format_model_schedule
from magnets_tf.utils import files
from magnets_tf.utils import images as images_lib

scoring_flags.define_scoring_flags(num_samples=1000)
plan_flags.define_plan_flags()
gin_flags.define_gin_flags()
model_flags.define_compute_dtype_flag()
flags.DEFINE_string("classifier_dir", None, "Optional class-accuracy classifier "
                    "(tools/train_classifier.py) to report class_accuracy.")
flags.DEFINE_string("tensorboard_dir", None, "Also write the metrics as TensorBoard scalars "
                    "'generation/<name>' into this run directory (e.g. <model_dir>/eval).")
flags.DEFINE_integer("tensorboard_step", None, "Step of those scalars (default: the newest "
                     "checkpoint step of --model_dir, else 0).")
flags.DEFINE_string("i3d_path", None, "Video models: I3D SavedModel for standard FVD "
                    "(default: per-frame FID Inception features, named in the output).")
FLAGS = flags.FLAGS


def main():
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    dataset, split = scoring_flags.reference()
    gin_flags.parse_gin_flags()
    from magnets_tf.evaluation import classifier, generation

    for directory in (FLAGS.model_dir, FLAGS.tokenizer_dir):
        model_flags.warn_if_unfinished(directory)
    model, decode_fn = generation.load_generator(FLAGS.model_dir, FLAGS.tokenizer_dir)
    model = model_flags.apply_compute_dtype(model)
    plan = plan_flags.decode_plan(model)
    print(plan.describe())
    is_video = hasattr(decode_fn.tokenizer, "video_shape")
    classify = None
    if FLAGS.classifier_dir:
        if is_video:
            raise app.UsageError("--classifier_dir: class accuracy is measured on images; "
                                 f"{FLAGS.tokenizer_dir} is a video tokenizer")
        class_model = classifier.load_classifier(FLAGS.classifier_dir)
        if class_model.output_shape[-1] != model.num_classes:
            raise app.UsageError(
                f"--classifier_dir={FLAGS.classifier_dir} tells {class_model.output_shape[-1]} "
                f"classes apart but the model is conditioned on {model.num_classes}")
        classify = lambda images: classifier.predict_classes(class_model, images)  # noqa: E731
    # After the usage checks (a refused run leaves nothing), before any work.
    files.check_writable_dir(FLAGS.output_dir, "--output_dir")
    if FLAGS.tensorboard_dir:
        files.check_writable_dir(FLAGS.tensorboard_dir, "--tensorboard_dir")
    extractor = scoring_flags.feature_extractor()
    run_setting = dict(reference=FLAGS.reference, model_dir=FLAGS.model_dir,
                       schedule=format_model_schedule(plan.model_schedule),
                       steps=plan.num_steps, cache=plan.use_cache, seed=FLAGS.seed,
                       compute_dtype=model.compute_dtype,
                       xla_flags=os.environ.get("XLA_FLAGS", ""))
    if is_video:
        return evaluate_video(model, plan, decode_fn, extractor, dataset, split, run_setting)
    reference = scoring_flags.reference_statistics(extractor)
    metrics, images = generation.evaluate_plan(
        model, plan, decode_fn, extractor, reference, FLAGS.num_samples, FLAGS.batch_size,
        seed=FLAGS.seed, jit_compile=FLAGS.jit_compile, classify=classify)
    # Every sampling setting the row depends on, so that rows of a tuned setting say which.
    metrics.update(run_setting, refresh=plan.refresh, guidance_scale=plan.guidance_scale,
                   guidance_steps=plan.guidance_steps, guidance_lambda=plan.guidance_lambda,
                   temperature_bias=plan.temperature_bias,
                   temperature_scale=plan.temperature_scale,
                   mask_temperature=plan.mask_temperature)
    add_gflops_ratio(metrics, model, plan)
    out = Path(FLAGS.output_dir)
    files.write_json(out / "metrics.json", metrics)
    write_tensorboard(metrics)
    images_lib.save_image_grid(images, out / "samples.png", columns=8)
    print(f"FID {metrics['fid']:.2f} (n={metrics['n']} vs {metrics['n_reference']} "
          f"{FLAGS.reference}; biased upward at small n)  precision {metrics['precision']:.3f} "
          f"recall {metrics['recall']:.3f}  GFLOPs/image exact {metrics['gflops_exact']:.3f} "
          f"paper {metrics['gflops_paper']:.3f}"
          + (f"  class accuracy {metrics['class_accuracy']:.3f}" if classify else ""))
    if classify:
        print("class accuracy per conditioned class: " + " ".join(
            f"{c}:{a:.2f}" for c, a in enumerate(metrics["class_accuracy_per_class"])))
    print(f"wrote {out / 'metrics.json'} and {out / 'samples.png'}")


def evaluate_video(model, plan, decode_fn, extractor, dataset, split, run_setting):
    """metrics.json + clip grid of a video model (generation or frame prediction)."""
    from magnets_tf.data.video import clip_arrays, condition_frames
    from magnets_tf.evaluation import frame_prediction, fvd, generation

    tokenizer = decode_fn.tokenizer
    frames, height, width, _ = tokenizer.video_shape
    n = FLAGS.num_samples
    try:
        clips, labels = clip_arrays(dataset, split, frames, (height, width), n)
    except (ValueError, OSError) as e:
        raise app.UsageError(f"--reference {FLAGS.reference}: {e}") from None
    clips = clips[:n].astype(np.float32) / 255.0
    labels = np.asarray(labels[:n], np.int32) % model.num_classes
    network = (fvd.I3DFeatures(FLAGS.i3d_path) if FLAGS.i3d_path
               else fvd.InceptionFrameFeatures(extractor))
    out = Path(FLAGS.output_dir)
    if plan.num_condition_tokens:
        frames_given = condition_frames(plan.num_condition_tokens, tokenizer.video_shape,
                                        tokenizer.grid_shape)
        batch = min(FLAGS.batch_size, len(clips))
        usable = len(clips) // batch * batch
        if usable == 0:
            raise app.UsageError(f"--reference {FLAGS.reference} has no clips")
        results, videos = frame_prediction.evaluate_frame_prediction(
            model, tokenizer, clips[:usable], labels[:usable], {"plan": plan}, batch,
            frames_given, fvd_network=network, seed=FLAGS.seed, repeats=1,
            jit_compile=FLAGS.jit_compile)
        metrics = dict(results.pop("plan"), task="frame_prediction",
                       condition_frames=frames_given, **results)
        shown = np.concatenate([clips[:4], videos["plan"][:4]])
    else:
        generated = np.concatenate(list(generation.generate_images(
            model, plan, decode_fn, n, FLAGS.batch_size, FLAGS.seed, FLAGS.jit_compile)))
        metrics = dict(task="generation", num_clips=len(generated),
                       fvd=fvd.fvd_from_features(fvd.video_features(network, clips),
                                                 fvd.video_features(network, generated),
                                                 network.name))
        shown = generated[:8]
    metrics.update(generation.plan_gflops(model, plan), clip_shape=list(tokenizer.video_shape),
                   **run_setting)
    add_gflops_ratio(metrics, model, plan)
    files.write_json(out / "metrics.json", metrics)
    write_tensorboard(dict(metrics, fvd=metrics["fvd"]["fvd"]))
    images_lib.write_png(out / "samples.png", images_lib.clip_grid(shown))
    fvd_result = metrics["fvd"]
    print(f"FVD {fvd_result['fvd']:.2f} ({fvd_result['features']}, n={fvd_result['n_generated']})"
          + (f"  PSNR {metrics['psnr_db']:.2f} dB" if "psnr_db" in metrics else "")
          + f"  GFLOPs/clip exact {metrics['gflops_exact']:.3f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'samples.png'}")


def add_gflops_ratio(metrics, model, plan):
    """metrics["gflops_ratio_vs_full_model"]: exact GFLOPs of the full model without cache
    (same steps and guidance) over those of `plan` (the MaGNeTS saving; 1 for MaskGIT++)."""
    from magnets_tf.evaluation import flops, generation

    baseline = generation.plan_gflops(model, flops.uncached_baseline_plan(plan))
    metrics["gflops_ratio_vs_full_model"] = baseline["gflops_exact"] / metrics["gflops_exact"]


def trained_step(model_dir):
    """The newest checkpoint step of a tools/train.py model_dir, else 0 (an exported or
    committed model without checkpoints)."""
    from magnets_tf.training import checkpoint_files

    newest = checkpoint_files.checkpoints(os.path.join(model_dir, "checkpoints"))
    return checkpoint_files.step_of(newest[0]) if newest else 0


def write_tensorboard(metrics):
    """With --tensorboard_dir: the numeric metrics as scalars "generation/<name>"."""
    if not FLAGS.tensorboard_dir:
        return
    from magnets_tf.utils import summaries

    step = (FLAGS.tensorboard_step if FLAGS.tensorboard_step is not None
            else trained_step(FLAGS.model_dir))
    tags = summaries.write_scalars(FLAGS.tensorboard_dir, step, metrics, prefix="generation/")
    print(f"wrote {len(tags)} TensorBoard scalars at step {step} to {FLAGS.tensorboard_dir}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
