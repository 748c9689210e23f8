"""Frame prediction with a nested MaskGIT transformer on video tokens.

Training (paper eq. 3 with condition frames kept visible): a clip's tokens [t, h, w]
flatten time-major, so the first `num_condition_tokens` tokens are the condition frames;
the general trainer's update masks only the other tokens (`masking.mask_batch`) and
applies the nested distillation loss (`losses.nested_loss`), alpha 1 -> 0 over the run.

Evaluation decodes the future tokens with `decoding.Decoder` for several plans (MaGNeTS
schedule with cache vs the full model without cache, same weights), and reports per-frame
MSE/PSNR of the predicted frames to the ground truth, FVD (features named), the measured
decode time and the check that condition tokens came back unchanged.
"""
import os
import time

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from magnets_tf.training import trainer as trainer_lib
from magnets_tf.training.optimizer import make_optimizer


@gin.configurable
class FramePredictionTrainer:
    """Trains a MaskGitTransformer with num_condition_tokens on in-memory video tokens.

    The update is the general trainer's (`NestedMaskGitTrainer.train_step`: eq. 3,
    `masking.mask_batch` never masks the condition tokens, 10% null-class drop); this
    class only feeds it arrays and logs. The optimizer is `make_optimizer` with a cosine
    decay over `num_steps`."""

    def __init__(self, model, model_dir, num_steps=2000, learning_rate=1e-3,
                 warmup_steps=100, weight_decay=0.01, label_smoothing=0.0, log_every=100,
                 seed=0):
        if model.num_condition_tokens <= 0:
            raise ValueError("frame prediction needs a model built with num_condition_tokens > 0")
        self.model = model
        self.model_dir = str(model_dir)
        self.num_steps = int(num_steps)
        self.learning_rate = float(learning_rate)
        self.warmup_steps = min(int(warmup_steps), self.num_steps // 2)
        self.weight_decay = float(weight_decay)
        self.label_smoothing = float(label_smoothing)
        self.log_every = int(log_every)
        self.seed = int(seed)

    def build_trainer(self, batch_size):
        """The compiled `NestedMaskGitTrainer` that `train` steps (also for inspecting its
        masking and losses)."""
        trainer = trainer_lib.NestedMaskGitTrainer(
            self.model, global_batch_size=batch_size, seed=self.seed,
            total_steps=self.num_steps, label_smoothing=self.label_smoothing)
        trainer.compile(optimizer=make_optimizer(
            self.num_steps, learning_rate=self.learning_rate, warmup_steps=self.warmup_steps,
            decay="cosine", weight_decay=self.weight_decay))
        trainer.optimizer.build(self.model.trainable_variables)
        return trainer

    def train(self, tokens, class_ids, batch_size=32, progress=True):
        """Trains on arrays tokens int32 [M, N] and class_ids int32 [M]; returns the last
        logged values (loss, per-model loss and masked-token accuracy, steps/s)."""
        tokens = np.asarray(tokens, np.int32)
        class_ids = np.asarray(class_ids, np.int32)
        if tokens.ndim != 2 or tokens.shape[1] != self.model.num_tokens:
            raise ValueError(f"tokens must be [clips, {self.model.num_tokens}], got shape "
                             f"{tokens.shape}")
        if class_ids.shape != (len(tokens),):
            raise ValueError(f"class_ids must be [{len(tokens)}], got shape {class_ids.shape}")
        if not 0 < int(batch_size) <= len(tokens):
            raise ValueError(f"batch_size={batch_size} must be in [1, {len(tokens)}] (the "
                             f"number of training clips)")
        data = (tf.data.Dataset.from_tensor_slices({"tokens": tokens, "label": class_ids})
                .shuffle(len(tokens), seed=self.seed).repeat().batch(batch_size, True))
        trainer = self.build_trainer(batch_size)
        train_function = trainer_lib.make_train_function(
            trainer, tf.distribute.get_strategy(), jit_compile=False)
        iterator = iter(data)
        writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=self.num_steps, desc="frame prediction", unit="step",
                       mininterval=5.0)
        logged = {}
        begin = time.time()
        with writer.as_default():
            for step in range(1, self.num_steps + 1):
                logs = train_function(iterator)
                if bar is not None:
                    bar.update(1)
                if step % self.log_every == 0 or step == self.num_steps:
                    logged = {name: float(value) for name, value in logs.items()}
                    logged["steps_per_second"] = step / max(time.time() - begin, 1e-6)
                    for name, value in logged.items():
                        tf.summary.scalar(name, value, step=step)
                    logging.info("step %d %s", step, logged)
                    if bar is not None:
                        bar.set_postfix(loss=f"{logged['loss']:.3f}")
        if bar is not None:
            bar.close()
        return logged

    def save(self):
        """Writes the transformer config and weights (temp files, then renamed)."""
        save_transformer(self.model, self.model_dir)


# One on-disk format for every transformer (image or video): tools/sample.py,
# tools/evaluate.py and tools/export.py load frame-prediction models like any other.
save_transformer = trainer_lib.save_transformer
load_transformer = trainer_lib.load_transformer


def hold_last_condition_frame(clips, condition_frames):
    """Clips whose frames after the condition are the last condition frame repeated.

    A 3D-conv tokenizer's first latent frames see later input frames through the
    temporal receptive field; encoding the real clip would leak the future into the
    condition tokens. MAGVIT's protocol: pad the condition with its last frame."""
    clips = np.asarray(clips)
    held = np.repeat(clips[:, condition_frames - 1:condition_frames],
                     clips.shape[1] - condition_frames, axis=1)
    return np.concatenate([clips[:, :condition_frames], held], axis=1)


def clip_tokens(tokenizer, clips, condition_frames, num_condition_tokens, batch_size=32):
    """Flat tokens [N, t*h*w] of float clips in [0, 1] for frame prediction.

    The first `num_condition_tokens` come from the clip with its future frames hidden
    (`hold_last_condition_frame`), the rest (targets) from the real clip."""
    clips = np.asarray(clips, np.float32)
    held = hold_last_condition_frame(clips, condition_frames)

    def encode(x):
        return np.concatenate([np.asarray(tokenizer.encode(x[i:i + batch_size]))
                               for i in range(0, len(x), batch_size)]).reshape(len(x), -1)

    tokens = encode(clips)
    tokens[:, :num_condition_tokens] = encode(held)[:, :num_condition_tokens]
    return tokens


def psnr(mse):
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


def predict_frames(decoder, tokenizer, clips_tokens, class_ids, seed):
    """(predicted tokens [B, N], decoded clips) of one batch; condition = token prefix."""
    c = decoder.plan.num_condition_tokens
    flat = np.asarray(clips_tokens, np.int32).reshape(len(clips_tokens), -1)
    out = decoder.generate(class_ids, seed, condition_tokens=flat[:, :c])
    return out, tokenizer.decode(out).numpy()


def evaluate_frame_prediction(model, tokenizer, clips, class_ids, plans, batch_size,
                              condition_frames, fvd_network=None, seed=0, repeats=3,
                              fvd_max_clips=None, fvd_frame_stride=1, jit_compile=True):
    """Per-plan metrics of predicting clips[:, condition_frames:] from the first frames.

    plans: {name: DecodePlan}; every plan decodes with the same weights. Timing: each
    plan's compiled decode runs `repeats` times over all batches, the plans interleaved,
    and the median is reported (the machine is shared). FVD uses the first
    `fvd_max_clips` clips and every `fvd_frame_stride`-th future frame. Also reports the
    tokenizer's reconstruction (upper bound) and copying the last condition frame.
    Returns ({name: metrics}, {name: decoded clips}).
    """
    from magnets_tf.decoding.decoder import Decoder
    from magnets_tf.evaluation import fvd as fvd_lib

    clips = np.asarray(clips, np.float32)
    n = (len(clips) // batch_size) * batch_size
    clips, class_ids = clips[:n], np.asarray(class_ids, np.int32)[:n]
    c = next(iter(plans.values())).num_condition_tokens
    tokens = clip_tokens(tokenizer, clips, condition_frames, c, batch_size)
    recon = np.concatenate([tokenizer.decode(tokens[i:i + batch_size]).numpy()
                            for i in range(0, n, batch_size)])
    future = clips[:, condition_frames:]
    decoders = {name: Decoder(model, plan, batch_size, jit_compile=jit_compile)
                for name, plan in plans.items()}
    results, videos, times = {}, {}, {name: [] for name in plans}
    for name, decoder in decoders.items():  # Compile (and warm up) every plan first.
        decoder.generate(class_ids[:batch_size], [seed, 0],
                         condition_tokens=tokens[:batch_size, :decoder.plan.num_condition_tokens])
    for _ in range(int(repeats)):
        for name, decoder in decoders.items():
            c = decoder.plan.num_condition_tokens
            start = time.perf_counter()
            outs = [decoder.generate(class_ids[i:i + batch_size], [seed, i],
                                     condition_tokens=tokens[i:i + batch_size, :c])
                    for i in range(0, n, batch_size)]
            times[name].append(time.perf_counter() - start)
            predicted = np.concatenate(outs)
            if not np.array_equal(predicted[:, :c], tokens[:, :c]):
                raise AssertionError(f"{name}: condition tokens changed during decoding")
            videos[name] = predicted
    fvd_frames = slice(condition_frames, None, int(fvd_frame_stride))
    fvd_clips = int(fvd_max_clips) if fvd_max_clips else n
    if fvd_network is not None:
        real_features = fvd_lib.video_features(fvd_network, clips[:fvd_clips, fvd_frames])
    for name, predicted in videos.items():
        decoded = np.concatenate([tokenizer.decode(predicted[i:i + batch_size]).numpy()
                                  for i in range(0, n, batch_size)])
        per_frame_mse = np.mean((decoded[:, condition_frames:] - future) ** 2, axis=(2, 3, 4))
        result = dict(
            plan=plans[name].describe(), model_schedule=str(plans[name].model_schedule),
            use_cache=plans[name].use_cache, num_clips=int(n),
            decode_seconds_median=float(np.median(times[name])),
            decode_seconds_all=[round(t, 3) for t in times[name]],
            mse_per_future_frame=per_frame_mse.mean(axis=0).round(5).tolist(),
            mse=float(per_frame_mse.mean()), psnr_db=float(np.mean(psnr(per_frame_mse))),
            condition_tokens_unchanged=True)
        if fvd_network is not None:
            fake = fvd_lib.video_features(fvd_network, decoded[:fvd_clips, fvd_frames])
            result["fvd"] = fvd_lib.fvd_from_features(real_features, fake, fvd_network.name)
            result["fvd"]["frames"] = f"future frames {fvd_frames}"
        results[name] = result
        videos[name] = decoded
    recon_mse = np.mean((recon[:, condition_frames:] - future) ** 2, axis=(2, 3, 4))
    results["tokenizer_reconstruction"] = dict(
        mse=float(recon_mse.mean()), psnr_db=float(np.mean(psnr(recon_mse))),
        note="upper bound: the ground-truth tokens decoded")
    copy_mse = np.mean((clips[:, condition_frames - 1:condition_frames] - future) ** 2,
                       axis=(2, 3, 4))
    results["copy_last_condition_frame"] = dict(
        mse=float(copy_mse.mean()), psnr_db=float(np.mean(psnr(copy_mse))),
        note="trivial baseline: every future frame = the last condition frame")
    return results, videos
