"""One factory for tf.distribute strategies, plus local logical-CPU splitting.

Model and optimizer must be created under `strategy.scope()`; input comes from
`distribute_datasets_from_function` so each input pipeline reads its own part of the
shards at the per-replica batch size.
"""
import gin
import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")


def configure_logical_cpus(count):
    """Splits the first physical CPU into `count` logical devices (local multi-replica runs).

    Must run before TensorFlow initialises its runtime (before the first op); raises a
    RuntimeError saying so otherwise.
    """
    count = int(count)
    if count < 1:
        raise ValueError(f"logical CPU count must be >= 1, got {count}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as e:
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing == count:
            return
        raise RuntimeError(f"cannot split the CPU into {count} logical devices: TensorFlow is "
                           f"already initialised with {existing} ({e}); configure it at "
                           f"start-up") from None


@gin.configurable(denylist=["name"])
def create_strategy(name="default", tpu=None, devices=None):
    """A tf.distribute.Strategy by name.

    default: no distribution; one_device: the first GPU (or `devices[0]`, else CPU);
    mirrored: all local GPUs, else all logical CPUs (or `devices`); multi_worker:
    MultiWorkerMirroredStrategy configured by the TF_CONFIG environment variable;
    tpu: TPUStrategy on `tpu` (name/address; '' or 'local' for a local TPU VM).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        if devices:
            device = devices[0]
        elif tf.config.list_logical_devices("GPU"):
            device = "/gpu:0"
        else:
            device = "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        if not devices:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(list(devices))
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        if tpu is None:
            raise ValueError("strategy 'tpu' needs --tpu (TPU name or grpc:// address, "
                             "'local' on a TPU VM)")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu="" if tpu == "local" else tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; known: {STRATEGIES}")


def default_jit_compile(strategy):
    """Whether to XLA-compile the per-replica train step.

    Only with GPUs under the default / one-device / mirrored strategies: XLA under
    MirroredStrategy over logical CPUs fails (docs/design.md, platform facts), and on
    CPU the compiled nested train step measured ~20x slower than the graph one here
    (0.08 vs 1.5 steps/s, tiny preset, batch 128), as Keras' own jit_compile="auto" also
    avoids.
    TPUStrategy compiles by itself.
    """
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return False
    return bool(tf.config.list_logical_devices("GPU"))


def distribute_dataset(strategy, dataset_fn):
    """strategy.distribute_datasets_from_function(dataset_fn(input_context))."""
    return strategy.distribute_datasets_from_function(dataset_fn)


def make_train_function(replica_step, strategy, jit_compile):
    """tf.function(iterator) -> logs of one distributed step of `replica_step(batch)`.

    Each replica runs `replica_step` on its own batch; the logs of replica 0 are returned
    (the step returns replica-reduced logs, identical on every replica). With
    jit_compile the per-replica step is XLA-compiled (use it under the default or
    one-device strategy; not under MirroredStrategy on CPUs).
    """
    compiled_step = tf.function(replica_step, jit_compile=bool(jit_compile))

    @tf.function
    def train_function(iterator):
        outputs = strategy.run(compiled_step, args=(next(iterator),))
        return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0],
                                     outputs)

    return train_function
