"""Nested MaGNeTS trainer: one masked batch, every nested sub-model, paper eq. 3.

`NestedMaskGitTrainer.train_step` masks the batch (a pure function of (seed, step)),
draws dropout from streams of (seed, step, replica), runs each sub-model p of the
shared-weight transformer on the same masked input, combines
the losses with `losses.nested_loss` and applies one optimizer update. Per-example losses
are reduced with `tf.nn.compute_average_loss` against the global batch, so gradients
summed over replicas equal the single-device gradient. A MaskGIT++ baseline is the same
trainer with factors (1,).
"""
import gin
import keras
import tensorflow as tf

from magnets_tf.models.transformer import MaskGitTransformer
from magnets_tf.training import losses, masking

# Distance between the dropout seed states of neighbouring replicas (`_seed_dropout`).
DROPOUT_REPLICA_STRIDE = 10_000


@gin.configurable(denylist=["transformer", "global_batch_size", "seed", "total_steps"])
class NestedMaskGitTrainer(keras.Model):
    """Wraps a `MaskGitTransformer`; `train_step` implements paper eq. 3.

    factors: nested factors trained (None: all of the transformer's; (1,) = MaskGIT++).
    loss_mode: "magnets" (alpha 1 -> 0 over alpha_decay_steps, default: total_steps, the
    whole run), "gt_only" / "matformer" (alpha = 1), "distill_only" (alpha = 0).
    label_smoothing applies to the ground-truth terms.
    """

    def __init__(self, transformer, global_batch_size, seed=0, total_steps=None,
                 factors=None, loss_mode="magnets", alpha_decay_steps=None,
                 label_smoothing=0.1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(transformer, MaskGitTransformer):
            raise TypeError(f"transformer must be a MaskGitTransformer, got {type(transformer)}")
        if loss_mode not in losses.LOSS_MODES:
            raise ValueError(f"unknown loss_mode {loss_mode!r}; known: {losses.LOSS_MODES}")
        factors = transformer.factors if factors is None else tuple(sorted(int(f) for f in factors))
        unknown = [f for f in factors if f not in transformer.factors]
        if unknown or not factors or factors[0] != 1:
            raise ValueError(f"factors {factors} must include 1 and be a subset of the "
                             f"transformer's factors {transformer.factors}")
        if int(global_batch_size) <= 0:
            raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.transformer = transformer
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self.factors = factors
        self.loss_mode = loss_mode
        self.alpha_decay_steps_setting = alpha_decay_steps  # As configured (None: the run).
        if alpha_decay_steps is None:
            alpha_decay_steps = total_steps
        if alpha_decay_steps is None or int(alpha_decay_steps) <= 0:
            raise ValueError(f"alpha_decay_steps must be positive (or total_steps given), got "
                             f"alpha_decay_steps={alpha_decay_steps}, total_steps={total_steps}")
        self.alpha_decay_steps = int(alpha_decay_steps)
        self.label_smoothing = float(label_smoothing)
        self._seed_generators = [
            layer.seed_generator for layer in transformer._flatten_layers(include_self=False)
            if isinstance(getattr(layer, "seed_generator", None), keras.random.SeedGenerator)]
        if len(self._seed_generators) >= DROPOUT_REPLICA_STRIDE:
            raise ValueError(f"{len(self._seed_generators)} dropout seed generators: replicas "
                             f"would share dropout streams (limit {DROPOUT_REPLICA_STRIDE})")

    def call(self, token_ids, factor=1, training=False):
        return self.transformer(token_ids, factor=factor, training=training)

    @property
    def is_baseline(self):
        """True for the MaskGIT++ baseline (only the full model): eq. 3 reduces to the
        ground-truth term and alpha plays no part."""
        return self.factors == (1,)

    @property
    def effective_loss_mode(self):
        """The loss this trainer actually optimises: `loss_mode`, or "gt_only" for the
        baseline, whose single model has no distillation term."""
        return "gt_only" if self.is_baseline else self.loss_mode

    def alpha(self, step):
        return losses.distillation_alpha(step, self.alpha_decay_steps, self.loss_mode)

    def _seed_dropout(self, step):
        """Dropout streams as a function of (seed, step, replica): a resumed run replays
        them, and each replica draws its own masks.

        Generator `index` of replica r starts at state [seed * 7919 + index + r *
        DROPOUT_REPLICA_STRIDE, step * 1024]; replica 0 (and a single device) keeps the
        streams of runs made before replicas were folded in. Keras reduces seeds modulo
        2**31 - 2, so the stride stays far below that: replicas never share a stream as
        long as the model has fewer than DROPOUT_REPLICA_STRIDE dropout generators.
        """
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context is not None else 0
        offset = tf.cast(replica, tf.int64) * DROPOUT_REPLICA_STRIDE
        for index, generator in enumerate(self._seed_generators):
            state = tf.stack([tf.constant(self.seed * 7919 + index, tf.int64) + offset,
                              tf.cast(step, tf.int64) * 1024])
            generator.state.assign(tf.cast(state, generator.state.dtype))

    def masked_inputs(self, batch, step):
        """(input ids [B, 1+N], targets [B, N], mask [B, N]) of this replica's batch."""
        tokens = tf.cast(batch["tokens"], tf.int32)
        local_batch = tf.shape(tokens)[0]
        tokens = tf.reshape(tokens, [local_batch, self.transformer.num_tokens])
        context = tf.distribute.get_replica_context()
        replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32) if context else 0
        masked, mask, class_ids = masking.mask_batch(
            tokens, batch["label"], seed=self.seed, step=step,
            mask_token_id=self.transformer.mask_token_id,
            null_class_id=self.transformer.null_class_id,
            global_batch_size=self.global_batch_size, replica_offset=replica_id * local_batch,
            num_condition_tokens=self.transformer.num_condition_tokens)
        return self.transformer.input_ids(masked, class_ids), tokens, mask

    def compute_losses(self, batch, step, training=True):
        """Per-example eq. 3 total [B], per-model losses {p: [B]}, logits {p}, targets, mask."""
        ids, targets, mask = self.masked_inputs(batch, step)
        logits = {p: self.transformer(ids, factor=p, training=training) for p in self.factors}
        total, per_model = losses.nested_loss(logits, targets, mask, self.alpha(step),
                                              self.label_smoothing)
        return total, per_model, logits, targets, mask

    def train_step(self, data):
        """One update on this replica's share of the global batch; returns global logs."""
        step = tf.convert_to_tensor(self.optimizer.iterations)  # Value before this update.
        self._seed_dropout(step)
        variables = self.transformer.trainable_variables
        with tf.GradientTape() as tape:
            total, per_model, logits, targets, mask = self.compute_losses(data, step)
            loss = tf.nn.compute_average_loss(total, global_batch_size=self.global_batch_size)
            # The loss as is, except under a LossScaleOptimizer (mixed_float16), which
            # scales it here and unscales the gradients in apply_gradients.
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        grad_norm = self._global_gradient_norm(gradients)
        self.optimizer.apply_gradients(zip(gradients, variables))
        logs = self._global_logs(loss, per_model, logits, targets, mask, step)
        logs["grad_norm"] = grad_norm
        return logs

    def _global_gradient_norm(self, gradients):
        """The global L2 norm of the update's gradient (summed over replicas, unscaled):
        identical on every replica. With several replicas this costs one extra all-reduce
        of the gradients (the optimizer's own reduction happens inside apply_gradients)."""
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        norm = tf.linalg.global_norm(gradients)  # float32: variables are float32
        scale = getattr(self.optimizer, "dynamic_scale", None)  # LossScaleOptimizer
        return norm / tf.cast(scale, tf.float32) if scale is not None else norm

    def _global_logs(self, loss, per_model, logits, targets, mask, step):
        """Logs summed over replicas: identical on every replica."""
        sums = {"loss": loss}
        for p in self.factors:
            sums[f"loss_p{p}"] = tf.nn.compute_average_loss(
                per_model[p], global_batch_size=self.global_batch_size)
            correct, count = losses.masked_accuracy(logits[p], targets, mask)
            sums[f"correct_p{p}"], sums[f"count_p{p}"] = correct, count
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            sums = context.all_reduce(tf.distribute.ReduceOp.SUM, sums)
        logs = {"loss": sums["loss"]}
        if not self.is_baseline:
            logs["alpha"] = self.alpha(step)
        for p in self.factors:
            logs[f"loss_p{p}"] = sums[f"loss_p{p}"]
            logs[f"accuracy_p{p}"] = sums[f"correct_p{p}"] / tf.maximum(sums[f"count_p{p}"], 1.0)
        return logs

