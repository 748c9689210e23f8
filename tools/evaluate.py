r"""Sample quality and cost of one decode plan: metrics JSON + sample grid.

python tools/evaluate.py --model_dir=/tmp/fmnist/transformer --tokenizer_dir=/tmp/fmnist/tokenizer \
  --reference=fashion_mnist:test --num_samples=1000 --schedule=8:3,4:3,2:3,1:3 --steps=12 \
  --output_dir=/tmp/fmnist/eval

Plan settings not given as flags come from --gin_file/--gin_bindings (make_plan.*).
Writes output_dir/metrics.json (FID, precision/recall, IS when the classifier weights are
converted, exact and paper GFLOPs/image, n and the small-sample note) and samples.png.

Video models (a 3D --tokenizer_dir) are scored on clips of --reference (moving_mnist,
moving_fashion_mnist, opencv_clips): FVD with the features it names (per-frame FID
Inception averaged over time offline; I3D from --i3d_path), and for frame prediction
(num_condition_tokens > 0) also per-frame MSE/PSNR of the predicted frames; samples.png
holds one clip per row.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app, flags  # noqa: E402
from magnets_tf import xla_cpu  # noqa: E402
from magnets_tf.gin_setup import parse_gin  # noqa: E402
from magnets_tf.utils import images as images_lib  # noqa: E402
from magnets_tf.utils import files  # noqa: E402
import gin  # noqa: E402
import numpy as np  # noqa: E402

flags.DEFINE_string("model_dir", None, "Trained transformer folder (tools/train.py output).")
flags.DEFINE_string("tokenizer_dir", None, "Trained VQGAN folder (tools/train_tokenizer.py).")
flags.DEFINE_string("reference", "fashion_mnist:test", "Reference data set:split.")
flags.DEFINE_integer("reference_n", None, "Reference images (default: the whole split).")
flags.DEFINE_integer("num_samples", 1000, "Generated images n (report it with the FID).")
flags.DEFINE_integer("batch_size", 25, "Decoder batch size.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("output_dir", None, "Where metrics.json and samples.png go.")
flags.DEFINE_string("schedule", None, "Model schedule p:k,... (default: gin/make_plan).")
flags.DEFINE_integer("steps", None, "Decoding steps K.")
flags.DEFINE_bool("cache", None, "Cache keys/values of unmasked tokens.")
flags.DEFINE_enum("refresh", None, ["model_change", "every_step", "never"], "Cache refresh.")
flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance scale.")
flags.DEFINE_integer("cfg_last", None, "Guidance on the last G steps.")
flags.DEFINE_string("classifier_dir", None, "Optional class-accuracy classifier "
                    "(tools/train_classifier.py) to report class_accuracy.")
flags.DEFINE_string("i3d_path", None, "Video models: I3D SavedModel for standard FVD "
                    "(default: per-frame FID Inception features, named in the output).")
flags.DEFINE_string("fid_weights", None, "Converted FID Inception weights (default: cache).")
flags.DEFINE_string("cache_dir", None, "Cache folder (default $MAGNETS_TF_CACHE or "
                    "~/.cache/magnets_tf).")
flags.DEFINE_bool("jit_compile", True, "XLA-compile the decoder.")
flags.DEFINE_multi_string("gin_file", [], "Gin files (make_plan.* settings).")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. make_plan.temperature_bias=1.0")
FLAGS = flags.FLAGS


def plan_overrides():
    return dict(model_schedule=FLAGS.schedule, num_steps=FLAGS.steps, use_cache=FLAGS.cache,
                refresh=FLAGS.refresh, guidance_scale=FLAGS.guidance_scale,
                guidance_steps=FLAGS.cfg_last)


def parse_reference(text):
    parts = text.split(":")
    if len(parts) != 2 or not all(parts):
        raise app.UsageError(f"--reference must be dataset:split, got {text!r}")
    return parts


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    for name in ("model_dir", "tokenizer_dir", "output_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    dataset, split = parse_reference(FLAGS.reference)
    from magnets_tf.evaluation import classifier, fid, generation
    from magnets_tf.evaluation.inception import InceptionFeatureExtractor

    try:
        parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    except (IOError, ValueError) as e:
        raise app.UsageError(f"bad gin configuration: {e}") from None

    try:
        model, decode_fn = generation.load_generator(FLAGS.model_dir, FLAGS.tokenizer_dir)
        plan = generation.make_model_plan(model, **plan_overrides())
    except (ImportError, ValueError, OSError) as e:
        raise app.UsageError(str(e)) from None
    print(plan.describe())
    is_video = hasattr(decode_fn.tokenizer, "video_shape")
    classify = None
    if FLAGS.classifier_dir:
        if is_video:
            raise app.UsageError("--classifier_dir: class accuracy is measured on images; "
                                 f"{FLAGS.tokenizer_dir} is a video tokenizer")
        try:
            class_model = classifier.load_classifier(FLAGS.classifier_dir)
        except (ValueError, OSError) as e:
            raise app.UsageError(str(e)) from None
        if class_model.output_shape[-1] != model.num_classes:
            raise app.UsageError(
                f"--classifier_dir={FLAGS.classifier_dir} tells {class_model.output_shape[-1]} "
                f"classes apart but the model is conditioned on {model.num_classes}")
        classify = lambda images: classifier.predict_classes(class_model, images)  # noqa: E731
    extractor = InceptionFeatureExtractor(weights_path=FLAGS.fid_weights,
                                          cache_dir=FLAGS.cache_dir)
    if is_video:
        return evaluate_video(model, plan, decode_fn, extractor, dataset, split)
    try:
        reference = fid.reference_statistics(dataset, split, extractor, n=FLAGS.reference_n,
                                             cache_dir=FLAGS.cache_dir)
    except (ValueError, OSError) as e:
        raise app.UsageError(f"reference {FLAGS.reference}: {e}") from None
    metrics, images = generation.evaluate_plan(
        model, plan, decode_fn, extractor, reference, FLAGS.num_samples, FLAGS.batch_size,
        seed=FLAGS.seed, jit_compile=FLAGS.jit_compile, classify=classify)
    metrics.update(reference=FLAGS.reference, model_dir=FLAGS.model_dir,
                   schedule=",".join(f"{p}:{k}" for p, k in plan.model_schedule),
                   steps=plan.num_steps, cache=plan.use_cache, refresh=plan.refresh,
                   guidance_scale=plan.guidance_scale, guidance_steps=plan.guidance_steps,
                   seed=FLAGS.seed, xla_flags=os.environ.get("XLA_FLAGS", ""))
    out = Path(FLAGS.output_dir)
    files.write_json(out / "metrics.json", metrics)
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


def evaluate_video(model, plan, decode_fn, extractor, dataset, split):
    """metrics.json + clip grid of a video model (generation or frame prediction)."""
    from magnets_tf.data.video import MOVING_MNIST_SOURCES, moving_mnist_arrays
    from magnets_tf.data.video import opencv_clip_arrays
    from magnets_tf.evaluation import fvd, generation
    from magnets_tf.data.video import condition_frames as condition_frames_of
    from magnets_tf.evaluation import frame_prediction

    tokenizer = decode_fn.tokenizer
    frames, height, width, _ = tokenizer.video_shape
    n = FLAGS.num_samples
    try:
        if dataset in MOVING_MNIST_SOURCES:
            clips, labels = moving_mnist_arrays(dataset, split, n, frames, (height, width))
        elif dataset == "opencv_clips":
            clips, labels = opencv_clip_arrays(split, frames, height)
        else:
            raise ValueError(f"unknown clip set {dataset!r}; known: "
                             f"{sorted(MOVING_MNIST_SOURCES) + ['opencv_clips']}")
    except (ValueError, OSError) as e:
        raise app.UsageError(f"--reference {FLAGS.reference}: {e}") from None
    clips = clips[:n].astype(np.float32) / 255.0
    labels = np.asarray(labels[:n], np.int32) % model.num_classes
    network = (fvd.I3DFeatures(FLAGS.i3d_path) if FLAGS.i3d_path
               else fvd.InceptionFrameFeatures(extractor))
    out = Path(FLAGS.output_dir)
    if plan.num_condition_tokens:
        condition_frames = condition_frames_of(plan.num_condition_tokens,
                                              tokenizer.video_shape, tokenizer.grid_shape)
        batch = min(FLAGS.batch_size, len(clips))
        usable = len(clips) // batch * batch
        if usable == 0:
            raise app.UsageError(f"--reference {FLAGS.reference} has no clips")
        results, videos = frame_prediction.evaluate_frame_prediction(
            model, tokenizer, clips[:usable], labels[:usable], {"plan": plan}, batch,
            condition_frames, fvd_network=network, seed=FLAGS.seed, repeats=1,
            jit_compile=FLAGS.jit_compile)
        metrics = dict(results.pop("plan"), task="frame_prediction",
                       condition_frames=condition_frames, **results)
        shown = np.concatenate([clips[:4], videos["plan"][:4]])
    else:
        generated = np.concatenate(list(generation.generate_images(
            model, plan, decode_fn, n, FLAGS.batch_size, FLAGS.seed, FLAGS.jit_compile)))
        metrics = dict(task="generation", num_clips=len(generated),
                       fvd=fvd.fvd_from_features(fvd.video_features(network, clips),
                                                 fvd.video_features(network, generated),
                                                 network.name))
        shown = generated[:8]
    metrics.update(generation.plan_gflops(model, plan), reference=FLAGS.reference,
                   model_dir=FLAGS.model_dir, clip_shape=list(tokenizer.video_shape),
                   schedule=",".join(f"{p}:{k}" for p, k in plan.model_schedule),
                   steps=plan.num_steps, cache=plan.use_cache, seed=FLAGS.seed,
                   xla_flags=os.environ.get("XLA_FLAGS", ""))
    files.write_json(out / "metrics.json", metrics)
    images_lib.write_png(out / "samples.png", images_lib.clip_grid(shown))
    fvd_result = metrics["fvd"]
    print(f"FVD {fvd_result['fvd']:.2f} ({fvd_result['features']}, n={fvd_result['n_generated']})"
          + (f"  PSNR {metrics['psnr_db']:.2f} dB" if "psnr_db" in metrics else "")
          + f"  GFLOPs/clip exact {metrics['gflops_exact']:.3f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'samples.png'}")


if __name__ == "__main__":
    app.run(main)
