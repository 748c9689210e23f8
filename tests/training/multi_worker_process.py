r"""One training process of the multi-worker tests (run as a subprocess).

python tests/training/multi_worker_process.py STRATEGY MODEL_DIR TOKENS_DIR STEPS WEIGHTS_OUT

STRATEGY is `multi_worker` (the cluster comes from TF_CONFIG; this process is one worker
with one CPU) or `mirrored` (one process over two logical CPUs). Trains the tiny
transformer (1 layer, dropout 0.1) as `transformer_task.train` does (a `TransformerTask`
on token shards through `loop.run`) with a global batch of 8 and a checkpoint every 2
steps, then writes this process's transformer weights to WEIGHTS_OUT (.npz, keyed by
variable path): the non-chief worker writes nothing into MODEL_DIR, so this is how the
test sees its weights. Each step sleeps THROTTLE seconds
(environment, default 0) after its update so the test can kill or signal a worker between
checkpoints; the sleep does not touch the weights. A run stopped by a signal prints
"interrupted: step=N" and exits with 128 + the signal.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

GLOBAL_BATCH = 8
CHECKPOINT_EVERY = 2


class Throttle(keras.callbacks.Callback):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_batch_end(self, step, logs=None):
        time.sleep(self.seconds)


def main(strategy_name, model_dir, tokens_dir, steps, weights_out):
    from magnets_tf.training import distribute

    if strategy_name == "mirrored":
        distribute.configure_logical_cpus(2)
        strategy = distribute.create_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    else:
        strategy = distribute.create_strategy(strategy_name)
    from magnets_tf.gin_setup import parse_gin
    from magnets_tf.training import loop
    from magnets_tf.training.token_data import TokenShards
    from magnets_tf.training.transformer_task import TransformerTask

    parse_gin([], ["build_transformer.preset = 'tiny'", "build_transformer.num_layers = 1",
                   "build_transformer.dropout = 0.1",
                   "build_transformer.attention_dropout = 0.1",
                   "make_optimizer.learning_rate = 3e-3", "make_optimizer.warmup_steps = 2"])
    from magnets_tf.training.stopping import TrainingInterrupted

    task = TransformerTask(TokenShards(tokens_dir), GLOBAL_BATCH, seed=1)
    try:
        summary = loop.run(task, model_dir, strategy, steps,
                           checkpoint_every=CHECKPOINT_EVERY, log_every=CHECKPOINT_EVERY,
                           progress=False,
                           callbacks=[Throttle(float(os.environ.get("THROTTLE", "0")))])
    except TrainingInterrupted as error:
        print(f"interrupted: step={error.step}", flush=True)
        sys.exit(error.exit_code)
    # Keys without the first path component (the process-dependent model name).
    np.savez(weights_out, **{v.path.split("/", 1)[-1]: v.numpy()
                             for v in task.transformer.weights})
    print(f"done: step={summary['final_step']} replicas={strategy.num_replicas_in_sync} "
          f"chief={distribute.is_chief(strategy)}", flush=True)


if __name__ == "__main__":
    name, directory, tokens, num_steps, out = sys.argv[1:]
    main(name, directory, tokens, int(num_steps), out)
