"""Frame prediction training: the transformer task on clip tokens with condition frames.

A clip's tokens [t, h, w] flatten time-major, so the first `num_condition_tokens` tokens
are the condition frames; the transformer is built with num_condition_tokens, so the
general trainer's update masks only the other tokens (`masking.mask_batch`) and applies
the nested distillation loss (paper eq. 3), alpha 1 -> 0 over the run. The run is
`loop.run` like every other: checkpoints, resume, TensorBoard, the exported transformer.
Optimizer and loss settings are the gin bindings of `make_optimizer` and
`NestedMaskGitTrainer`.

Clip encoding lives in `data.video`, evaluation in `evaluation.frame_prediction`.
"""
import gin
import tensorflow as tf

from magnets_tf.training import loop
from magnets_tf.training.token_data import TokenArrays
from magnets_tf.training.transformer_task import TransformerTask


@gin.configurable(denylist=["model_dir", "clip_tokens", "class_ids", "codebook_size",
                            "num_classes", "num_condition_tokens", "strategy", "callbacks"])
def train_frame_prediction(model_dir, clip_tokens, class_ids, codebook_size, num_classes,
                           num_condition_tokens, batch_size=32, num_steps=2000, seed=0,
                           checkpoint_every=500, keep_checkpoints=2, log_every=100,
                           progress=True, strategy=None, callbacks=(),
                           allow_config_change=False, steps_per_loop=1, stop_at_step=None,
                           max_wall_minutes=None):
    """Trains (or resumes) a frame-prediction transformer on clip tokens int [M, N] with
    class ids [M]; returns the run's summary. The transformer is in `model_dir`
    (`models.saving.load_transformer`); `callbacks`, `allow_config_change`,
    `steps_per_loop` (steps per host sync) and `stop_at_step` / `max_wall_minutes` (end
    this leg early: `stopping`) go to `loop.run`."""
    if int(num_condition_tokens) <= 0:
        raise ValueError(f"frame prediction needs num_condition_tokens > 0, got "
                         f"{num_condition_tokens}")
    tokens = TokenArrays(clip_tokens, class_ids, codebook_size, num_classes,
                         num_condition_tokens)
    task = TransformerTask(tokens, batch_size, seed=seed)
    return loop.run(task, model_dir, strategy or tf.distribute.get_strategy(), num_steps,
                    checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
                    log_every=log_every, progress=progress, callbacks=callbacks,
                    steps_per_loop=steps_per_loop, allow_config_change=allow_config_change,
                    stop_at_step=stop_at_step, max_wall_minutes=max_wall_minutes)
