"""Frame prediction with a nested MaskGIT transformer on video tokens.

Training (paper eq. 3 with condition frames kept visible): a clip's tokens [t, h, w]
flatten time-major, so the first `num_condition_tokens` tokens are the condition frames;
the general trainer's update masks only the other tokens (`masking.mask_batch`) and
applies the nested distillation loss (`losses.nested_loss`), alpha 1 -> 0 over the run.

Evaluation lives in `evaluation.frame_prediction`; clip encoding in `data.video`.
"""
import os
import time

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from magnets_tf.models import saving
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
        """Writes the transformer config and weights (`models.saving`)."""
        saving.save_transformer(self.model, self.model_dir)
