"""Trains a VQGAN tokenizer: reconstruction (L1/L2) + VQ losses, optional PatchGAN.

One trainer for every data set, run by the package's training loop (`loop.run`:
checkpoints, resume, NaN guard, TensorBoard, progress). The model directory holds
  checkpoints/               tokenizer, optimizers, discriminator and the dead-code
                             restart generator, for resuming,
  train/, eval/              TensorBoard runs: losses, gradient norm, codebook health
                             (batch usage and perplexity, alive fraction, restarts),
                             inputs over reconstructions, the gin config; eval: the final
                             evaluation (PSNR, codebook usage, test reconstructions),
  tokenizer_config.json      the VQGAN config, and tokenizer.weights.h5 its weights
                             (written at every checkpoint; read back by `load_tokenizer`),
  metrics.json               the final evaluation (PSNR, codebook usage),
  operative_config.gin, train_summary.json (see `loop`).
No pretrained perceptual network (LPIPS/VGG) is reachable offline, so there is no
perceptual loss; the PatchGAN discriminator is the optional sharpness term.
The same trainer trains the 3D `VideoTokenizer` on {"video": [B, T, H, W, C]} batches
(PSNR over whole clips, discriminator and summaries on frames).
"""
import math
import os
import time

import gin
import keras
import numpy as np
import tensorflow as tf

from magnets_tf.models.discriminator import PatchDiscriminator
from magnets_tf.models.saving import TOKENIZER_CONFIG, save_tokenizer
from magnets_tf.models.video_tokenizer import VideoTokenizer
from magnets_tf.models.vqgan import VQGAN, codebook_usage
from magnets_tf.training import loop, run_config
from magnets_tf.training.callbacks import LoopCallback
from magnets_tf.utils import files, images as images_lib

TOKENIZER_TYPES = (VQGAN, VideoTokenizer)

METRICS_FILE = "metrics.json"


def psnr_per_image(images, reconstructions):
    """PSNR in dB of each image (or clip) pair (float arrays in [0, 1], [B, ...])."""
    images = np.asarray(images, np.float64)
    reconstructions = np.clip(np.asarray(reconstructions, np.float64), 0.0, 1.0)
    mse = np.mean((images - reconstructions) ** 2, axis=tuple(range(1, images.ndim)))
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


def as_frames(x):
    """Images [B, H, W, C] unchanged; clips [B, T, H, W, C] -> frames [B*T, H, W, C]."""
    if len(x.shape) == 5:
        return tf.reshape(x, [-1, *x.shape[2:]])
    return x


def batch_inputs(batch):
    """The model input of a data batch: its "image" or, for video sets, its "video"."""
    if "image" in batch:
        return batch["image"]
    if "video" in batch:
        return batch["video"]
    raise ValueError(f"batch has keys {sorted(batch)}; expected 'image' or 'video'")


def pairs_grid(inputs, reconstructions, max_items=8):
    """Summary grid: inputs over reconstructions (images), or for clips one row of
    frames per clip, inputs then reconstructions (up to 4 clips)."""
    reconstructions = tf.clip_by_value(reconstructions, 0.0, 1.0)
    if len(inputs.shape) == 5:
        n = min(4, int(inputs.shape[0]))
        pair = tf.concat([as_frames(inputs[:n]), as_frames(reconstructions[:n])], 0)
        return images_lib.image_grid(pair, columns=int(inputs.shape[1]))[None]
    n = min(max_items, int(inputs.shape[0]))
    pair = tf.concat([inputs[:n], reconstructions[:n]], 0)
    return images_lib.image_grid(pair, columns=n)[None]


class ReconstructionImages(LoopCallback):
    """Every `every` steps and at the last step: a fixed batch over its reconstructions."""

    def __init__(self, tokenizer, inputs, writer, every, total_steps):
        super().__init__()
        self.tokenizer = tokenizer
        self.inputs = inputs
        self.writer = writer
        self.every = int(every)
        self.total_steps = int(total_steps)

    def on_loop_end(self, step, logs):
        if self.due(step, self.every) or step == self.total_steps:
            grid = pairs_grid(self.inputs, self.tokenizer(self.inputs))
            with self.writer.as_default(step=step):
                tf.summary.image("inputs_over_reconstructions", grid)
            self.writer.flush()


@gin.configurable
class TokenizerTrainer(loop.TrainTask):
    """The tokenizer's `loop.TrainTask`: one update of a `VQGAN` or `VideoTokenizer`.

    Loss = l2_weight * MSE + l1_weight * L1 + quantizer_weight * (codebook + beta *
    commitment) [+ gan_weight * hinge generator loss once step >= gan_start_step].
    Every `restart_every` steps codes whose running usage fell below
    `restart_fraction` * mean usage are moved onto random encoder outputs, drawn from a
    checkpointed tf.random.Generator so a resumed run draws the same codes. One replica
    only: codebook usage and restarts are per-replica state. `model` is built by the
    caller, so its initial weights are the caller's (`train_tokenizer_experiment` seeds
    TF with `seed` first); the discriminator is built by `build` from the loop's seed.
    steps_per_loop steps run per host sync (`loop.run`: summaries, images, checkpoints
    at loop boundaries; the weights do not depend on it). stop_at_step / max_wall_minutes
    end this leg of the run early with a checkpoint (`stopping`; num_steps stays the
    run's length).
    """

    def __init__(self, model, model_dir, num_steps=1000, learning_rate=1e-3,
                 warmup_steps=100, end_learning_rate_fraction=0.05, weight_decay=0.0,
                 l2_weight=1.0, l1_weight=0.0, quantizer_weight=1.0, use_gan=False,
                 gan_weight=0.1, gan_start_step=0, discriminator_learning_rate=1e-4,
                 restart_every=100, restart_fraction=0.03, log_every=50,
                 image_every=500, checkpoint_every=500, max_checkpoints=2, jit_compile=False,
                 seed=0, steps_per_loop=1, stop_at_step=None, max_wall_minutes=None):
        if not isinstance(model, TOKENIZER_TYPES):
            raise ValueError(f"model must be a VQGAN or VideoTokenizer, got "
                             f"{type(model).__name__}")
        if int(num_steps) <= 0:
            raise ValueError(f"num_steps must be positive, got {num_steps!r}")
        self.model = model
        self.model_dir = str(model_dir)
        self.num_steps = int(num_steps)
        self.learning_rate_peak = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.end_learning_rate_fraction = float(end_learning_rate_fraction)
        self.weight_decay = float(weight_decay)
        self.l2_weight, self.l1_weight = float(l2_weight), float(l1_weight)
        self.quantizer_weight = float(quantizer_weight)
        self.use_gan = bool(use_gan)
        self.gan_weight = float(gan_weight)
        self.gan_start_step = int(gan_start_step)
        self.discriminator_learning_rate = float(discriminator_learning_rate)
        self.restart_every = int(restart_every)
        self.restart_fraction = float(restart_fraction)
        self.log_every = int(log_every)
        self.image_every = int(image_every)
        self.checkpoint_every = int(checkpoint_every)
        self.max_checkpoints = int(max_checkpoints)
        self.jit_compile = bool(jit_compile)
        self.seed = int(seed)
        self.steps_per_loop = int(steps_per_loop)
        if self.steps_per_loop < 1:
            raise ValueError(f"steps_per_loop must be >= 1, got {steps_per_loop!r}")
        self.stop_at_step = (None if stop_at_step is None else run_config.require_int(
            "TokenizerTrainer.stop_at_step", stop_at_step, 1))
        self.max_wall_minutes = max_wall_minutes
        self.discriminator = None
        self._data_source = None

    def build(self, strategy, train_steps):
        if strategy.num_replicas_in_sync != 1:
            raise ValueError(f"the tokenizer trains on one replica (codebook usage and "
                             f"dead-code restarts are per-replica state), got "
                             f"{strategy.num_replicas_in_sync}")
        if self._data_source is None:
            raise ValueError("TokenizerTrainer runs through its train(dataset) method")
        source = self._data_source  # Made here, after the loop seeded TF.
        self._data = source() if callable(source) else source
        self.global_batch_size = batch_inputs(self._data.element_spec).shape[0]
        model = self.model
        if not model.built:
            model.build()
        warmup = min(self.warmup_steps, train_steps // 2)
        self.schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else self.learning_rate_peak, train_steps - warmup,
            alpha=self.end_learning_rate_fraction,
            warmup_target=self.learning_rate_peak if warmup else None, warmup_steps=warmup)
        self.optimizer = keras.optimizers.AdamW(self.schedule, weight_decay=self.weight_decay,
                                                beta_1=0.9, beta_2=0.99)
        self.optimizer.build(model.trainable_variables)
        self.rng = tf.random.Generator.from_seed(self.seed)  # Dead-code restart draws.
        if self.use_gan:
            self.discriminator = PatchDiscriminator(name="discriminator")
            self.discriminator(tf.zeros((1, *model.image_shape)))  # Creates its variables.
            self.discriminator_optimizer = keras.optimizers.Adam(
                self.discriminator_learning_rate, beta_1=0.5, beta_2=0.9)
            self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    @property
    def iterations(self):
        return self.optimizer.iterations

    def checkpoint_items(self):
        items = dict(model=self.model.weights, optimizer=self.optimizer.variables,
                     rng=self.rng)
        if self.use_gan:
            items.update(discriminator=self.discriminator.weights,
                         discriminator_optimizer=self.discriminator_optimizer.variables)
        return items

    def dataset(self, input_context, start_step):
        return self._data.skip(start_step)

    def _losses(self, images, out):
        recon = out["reconstruction"]
        l2 = tf.reduce_mean((recon - images) ** 2)
        l1 = tf.reduce_mean(tf.abs(recon - images))
        total = (self.l2_weight * l2 + self.l1_weight * l1
                 + self.quantizer_weight * out["quantizer_loss"])
        return dict(loss=total, l2_loss=l2, l1_loss=l1,
                    codebook_loss=out["codebook_loss"],
                    commitment_loss=out["commitment_loss"],
                    batch_codebook_usage=out["batch_codebook_usage"],
                    batch_codebook_perplexity=out["batch_codebook_perplexity"])

    def train_step(self, batch):
        images = batch_inputs(batch)
        step = tf.convert_to_tensor(self.optimizer.iterations)  # Value before this update.
        gan_on = tf.cast(step >= self.gan_start_step, tf.float32)
        with tf.GradientTape() as tape:
            out = self.model.forward(images, training=True)
            logs = self._losses(images, out)
            total = logs["loss"]
            if self.use_gan:
                fake_logits = self.discriminator(as_frames(out["reconstruction"]))
                generator_loss = -tf.reduce_mean(fake_logits)
                total = total + gan_on * self.gan_weight * generator_loss
                logs["loss"] = total
                logs["generator_loss"] = generator_loss
        variables = self.model.trainable_variables
        gradients = tape.gradient(total, variables)
        logs["grad_norm"] = tf.linalg.global_norm(gradients)  # One replica: the whole one.
        self.optimizer.apply_gradients(zip(gradients, variables))
        if self.use_gan:
            with tf.GradientTape() as tape:
                real = self.discriminator(as_frames(images))
                fake = self.discriminator(as_frames(tf.stop_gradient(out["reconstruction"])))
                disc_loss = (tf.reduce_mean(tf.nn.relu(1.0 - real))
                             + tf.reduce_mean(tf.nn.relu(1.0 + fake)))
                gated_disc_loss = gan_on * disc_loss
            dvars = self.discriminator.trainable_variables
            grads = tape.gradient(gated_disc_loss, dvars)
            self.discriminator_optimizer.apply_gradients(zip(grads, dvars))
            logs["discriminator_loss"] = disc_loss
        quantizer = self.model.quantizer
        restarted = tf.constant(0, tf.int32)
        if self.restart_every > 0:
            if (step + 1) % self.restart_every == 0:
                threshold = self.restart_fraction * tf.reduce_mean(quantizer.usage)
                restarted = quantizer.restart_dead_codes(out["latents"], threshold, self.rng)
        logs["restarted_codes"] = restarted
        # Codes not candidates for a restart: running usage >= restart_fraction * mean.
        alive = quantizer.usage >= self.restart_fraction * tf.reduce_mean(quantizer.usage)
        logs["codebook_alive_fraction"] = tf.reduce_mean(tf.cast(alive, tf.float32))
        return logs

    def export(self, model_dir):
        save_tokenizer(self.model, model_dir)

    # The total loss jumps when the GAN term starts; reconstruction is what must not spike.
    divergence_keys = ("l2_loss", "l1_loss")

    def guarded_variables(self):
        return self.model.trainable_variables

    def model_config(self):
        return TOKENIZER_CONFIG, self.model.get_config()

    def learning_rate(self, step):
        return self.schedule(step)

    def hparams(self):
        return dict(tokenizer=self.model.name, codebook_size=self.model.codebook_size,
                    grid="x".join(map(str, self.model.grid_shape)), batch_size=self.global_batch_size,
                    peak_learning_rate=self.learning_rate_peak,
                    warmup_steps=self.warmup_steps, weight_decay=self.weight_decay,
                    l1_weight=self.l1_weight, l2_weight=self.l2_weight,
                    quantizer_weight=self.quantizer_weight, use_gan=self.use_gan,
                    gan_weight=self.gan_weight if self.use_gan else 0.0,
                    restart_every=self.restart_every, restart_fraction=self.restart_fraction)

    def callbacks(self, writer, model_dir):
        inputs = batch_inputs(next(iter(self._data.take(1))))
        return [ReconstructionImages(self.model, inputs, writer, self.image_every,
                                     self.num_steps)]

    def train(self, dataset, progress=True, strategy=None, callbacks=(),
              allow_config_change=False):
        """Trains (or resumes) up to num_steps on `dataset`: a function returning a tf.data
        of {"image"} or {"video"} batches (called after TF is seeded with `seed`), or the
        tf.data itself; its order must be fixed by its seed: a resumed run skips the
        batches already trained on. Returns the run's summary (`loop.run`)."""
        self._data_source = dataset
        return loop.run(self, self.model_dir, strategy or tf.distribute.get_strategy(),
                        self.num_steps, checkpoint_every=self.checkpoint_every,
                        keep_checkpoints=self.max_checkpoints, log_every=self.log_every,
                        jit_compile=self.jit_compile, progress=progress, callbacks=callbacks,
                        steps_per_loop=self.steps_per_loop,
                        allow_config_change=allow_config_change,
                        stop_at_step=self.stop_at_step, max_wall_minutes=self.max_wall_minutes)


def evaluate_tokenizer(model, dataset, max_batches=None):
    """PSNR (mean over images, dB) and codebook usage of a tokenizer on {"image"} batches.

    Images are compared at their own size (e.g. 28x28, not the zero-padded 32x32), after
    clipping reconstructions to [0, 1]. Usage = distinct codes used / codebook size.
    """
    @tf.function
    def run(images):
        tokens = model.encode(images)
        return tokens, model.decode(tokens)

    psnrs, token_arrays, mses = [], [], []
    for i, batch in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        images = batch_inputs(batch)
        tokens, recon = run(images)
        psnrs.append(psnr_per_image(images, recon))
        mses.append(np.mean((np.asarray(images) - np.asarray(recon)) ** 2,
                            axis=tuple(range(1, len(images.shape)))))
        token_arrays.append(np.asarray(tokens))
    if not psnrs:
        raise ValueError("evaluation data set is empty")
    psnr = np.concatenate(psnrs)
    tokens = np.concatenate(token_arrays)
    mse = float(np.mean(np.concatenate(mses)))
    return dict(psnr_db=float(np.mean(psnr)),
                psnr_of_mean_mse_db=float(10 * math.log10(1.0 / max(mse, 1e-10))),
                mse=mse, codebook_usage=codebook_usage(tokens, model.codebook_size),
                num_images=int(psnr.size), codebook_size=model.codebook_size,
                grid=list(model.grid_shape))


def write_metrics(model_dir, metrics):
    """metrics.json in model_dir (temp file, then renamed)."""
    return files.write_json(os.path.join(model_dir, METRICS_FILE), metrics, sort_keys=True)


@gin.configurable
def train_tokenizer_experiment(model_dir, dataset="fashion_mnist", train_split="train",
                               eval_split="test", batch_size=64, eval_batch_size=500,
                               image_size=None, seed=0, progress=True,
                               model_fn=gin.REQUIRED, eval_max_batches=None,
                               allow_config_change=False):
    """Trains (or resumes) a tokenizer, saves it, evaluates it; returns the metrics, or
    {"stopped": ...} (the summary's) when the leg stopped before num_steps
    (`TokenizerTrainer.stop_at_step` / `max_wall_minutes`): an unfinished tokenizer is
    not evaluated, so no metrics of it can pass for the final ones.

    `model_fn` builds the VQGAN (e.g. `@build_vqgan`) or the VideoTokenizer (e.g.
    `@build_video_tokenizer`; then `dataset` is a video set of `data.video.video_dataset`,
    clips cut to the tokenizer's video_shape); the trainer's hyper-parameters come from
    gin bindings of `TokenizerTrainer`. `eval_max_batches` caps the evaluation.
    allow_config_change: resume a model_dir whose stored config differs (`loop.run`).
    """
    from magnets_tf.data.datasets import image_dataset  # Data sits beside training.
    from magnets_tf.data.video import video_dataset

    os.makedirs(model_dir, exist_ok=True)
    keras.utils.set_random_seed(seed)  # Same seed, same initial tokenizer.
    model = model_fn()
    if not isinstance(model, TOKENIZER_TYPES):
        raise ValueError(f"model_fn must build a VQGAN or VideoTokenizer, got "
                         f"{type(model).__name__}")
    if isinstance(model, VideoTokenizer):
        frames, height, width = model.video_shape[:3]

        def make_data(split, size, train):
            return video_dataset(dataset, split, size, num_frames=frames,
                                 frame_size=(height, width), shuffle=train, repeat=train,
                                 seed=seed, drop_remainder=train)
    else:
        def make_data(split, size, train):
            if train:
                return image_dataset(dataset, split, size, image_size=image_size,
                                     shuffle=True, repeat=True, seed=seed,
                                     drop_remainder=True)
            return image_dataset(dataset, split, size, image_size=image_size)
    trainer = TokenizerTrainer(model, model_dir, seed=seed)
    begin = time.time()
    summary = trainer.train(lambda: make_data(train_split, batch_size, True),
                            progress=progress, allow_config_change=allow_config_change)
    train_seconds = time.time() - begin
    if not summary["complete"]:
        return dict(stopped=summary["stopped"])
    eval_data = make_data(eval_split, eval_batch_size, False)
    metrics = evaluate_tokenizer(model, eval_data, max_batches=eval_max_batches)
    metrics.update(dataset=dataset, split=eval_split, train_steps=trainer.num_steps,
                   train_seconds_this_run=round(train_seconds, 1))
    writer = tf.summary.create_file_writer(os.path.join(model_dir, loop.EVAL_RUN))
    with writer.as_default():
        tf.summary.scalar("psnr_db", metrics["psnr_db"], step=trainer.num_steps)
        tf.summary.scalar("codebook_usage", metrics["codebook_usage"], step=trainer.num_steps)
        batch = batch_inputs(next(iter(eval_data.take(1))))[:16]
        recon = model.decode(model.encode(batch))
        tf.summary.image("test_inputs_over_reconstructions", pairs_grid(batch, recon, 16),
                         step=trainer.num_steps)
    writer.flush()
    write_metrics(model_dir, metrics)
    return metrics
