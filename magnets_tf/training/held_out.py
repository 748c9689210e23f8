"""Periodic held-out evaluation of the nested transformer during training (the `eval`
TensorBoard run beside `train`).

`HeldOutEvaluation` scores every nested sub-model p on the same fixed held-out examples
with the same masks at every evaluation, so its curves are comparable over a run and
between runs: the examples are the first `num_batches` batches of the held-out token
source's stream (its order is a pure function of `seed`), the masks are those of
`masking.mask_batch` for (seed, batch index) with no class dropped, and dropout is off.
Per p it writes the masked-token accuracy ("accuracy/accuracy_p<p>", the training run's
tag, so TensorBoard overlays train and eval) and the ground-truth cross-entropy without
label smoothing ("gt_loss/gt_loss_p<p>"; the training loss mixes in distillation).
"""
import numpy as np
import tensorflow as tf

from magnets_tf.training import losses, masking
from magnets_tf.training.callbacks import LoopCallback


class HeldOutEvaluation(LoopCallback):
    """Every `every` steps and at the last step `total_steps`: held-out masked-token
    loss and accuracy of each factor in `factors` of `transformer`, written by `writer`.

    tokens: a token source (`token_data.TokenShards` / `TokenArrays`) of held-out
    examples; batch_size x num_batches examples are scored (read once, at the first
    evaluation).
    """

    def __init__(self, transformer, factors, tokens, writer, every, total_steps,
                 batch_size=64, num_batches=2, seed=0):
        super().__init__()
        if int(batch_size) < 1 or int(num_batches) < 1:
            raise ValueError(f"held-out evaluation needs batch_size >= 1 and num_batches "
                             f">= 1, got {batch_size} and {num_batches}")
        self.transformer = transformer
        self.factors = tuple(factors)
        self.tokens = tokens
        self.writer = writer
        self.every = int(every)
        self.total_steps = int(total_steps)
        self.batch_size = int(batch_size)
        self.num_batches = int(num_batches)
        self.seed = int(seed)
        self._batches = None
        self._score = None

    def batches(self):
        """[(input ids [B, 1+N], targets [B, N], mask [B, N])]: the fixed masked
        held-out batches."""
        if self._batches is None:
            transformer = self.transformer
            stream = self.tokens.dataset(self.batch_size, self.seed).take(self.num_batches)
            self._batches = []
            for index, batch in enumerate(stream):
                targets = tf.reshape(tf.cast(batch["tokens"], tf.int32),
                                     [-1, transformer.num_tokens])
                masked, mask, class_ids = masking.mask_batch(
                    targets, batch["label"], seed=self.seed, step=index,
                    mask_token_id=transformer.mask_token_id,
                    null_class_id=transformer.null_class_id,
                    num_condition_tokens=transformer.num_condition_tokens,
                    class_drop_rate=0.0)
                self._batches.append((transformer.input_ids(masked, class_ids), targets,
                                      mask))
        return self._batches

    def evaluate(self):
        """{tag: value}: per factor the mean ground-truth CE over the held-out examples
        and the accuracy over all their masked tokens."""
        if self._score is None:
            @tf.function
            def score(ids, targets, mask):
                out = {}
                for p in self.factors:
                    logits = self.transformer(ids, factor=p, training=False)
                    out[p] = (tf.reduce_sum(losses.ground_truth_cross_entropy(
                        logits, targets, mask)), *losses.masked_accuracy(logits, targets, mask))
                return out
            self._score = score
        totals = {p: np.zeros(3) for p in self.factors}
        examples = 0
        for ids, targets, mask in self.batches():
            for p, values in self._score(ids, targets, mask).items():
                totals[p] += [float(v) for v in values]
            examples += int(targets.shape[0])
        metrics = {}
        for p, (loss_sum, correct, count) in totals.items():
            metrics[f"gt_loss/gt_loss_p{p}"] = loss_sum / examples
            metrics[f"accuracy/accuracy_p{p}"] = correct / max(count, 1.0)
        return metrics

    def on_loop_end(self, step, logs):
        if self.due(step, self.every) or (self.every and step == self.total_steps):
            self.write(step)

    def on_train_end(self, logs=None):
        self.writer.flush()

    def write(self, step):
        metrics = self.evaluate()
        with self.writer.as_default(step=step):
            for tag, value in metrics.items():
                tf.summary.scalar(tag, value)
        self.writer.flush()
        return metrics
