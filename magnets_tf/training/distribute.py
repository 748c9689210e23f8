"""One factory for tf.distribute strategies, the distributed train function, and the
facts of a worker in a cluster (is it the chief, where it writes).

Model and optimizer must be created under `strategy.scope()`; input comes from
`distribute_datasets_from_function` (each input pipeline builds its own per-replica
batches). `make_train_function` runs `steps_per_loop` steps in one `tf.function` (the
orbit / tf-models pattern): the host syncs once per loop.

Multi-worker (MultiWorkerMirroredStrategy from TF_CONFIG): every worker runs the same
program; only the chief writes to model_dir. Saving a checkpoint is a step every worker
takes (the strategy's save may run collectives), so the other workers save into a
temporary directory that is removed at once (`WorkerTempCheckpoints`), as Keras'
BackupAndRestore does.
"""
import os
import shutil
import tempfile

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
        return _multi_worker_strategy()
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


def _multi_worker_strategy():
    """MultiWorkerMirroredStrategy of the TF_CONFIG cluster (a clear error if TF_CONFIG is
    not JSON with a "cluster" and a "task"; without TF_CONFIG: one local worker)."""
    import json

    config = os.environ.get("TF_CONFIG")
    if config:
        try:
            parsed = json.loads(config)
            if not isinstance(parsed, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {config[:200]!r}") from None
        missing = [key for key in ("cluster", "task") if key not in parsed]
        if missing:
            raise ValueError(f"TF_CONFIG lacks {missing}: it needs {{\"cluster\": {{\"worker\": "
                             f"[\"host:port\", ...]}}, \"task\": {{\"type\": \"worker\", "
                             f"\"index\": i}}}}, got {config[:200]!r}")
    return tf.distribute.MultiWorkerMirroredStrategy()


def task_of(strategy):
    """(task_type, task_id) of this process in its cluster; (None, 0) without a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return None, 0  # TPUStrategy: one client program drives every TPU host.
    return resolver.task_type, int(resolver.task_id or 0)


def _cluster(strategy):
    """{job: [address, ...]} of the strategy's cluster ({} without one)."""
    if task_of(strategy)[0] is None:
        return {}
    return strategy.cluster_resolver.cluster_spec().as_dict()


def is_chief_task(task_type, task_id, cluster):
    """Whether task (task_type, task_id) of `cluster` ({job: [addresses]}) writes
    model_dir: the "chief" task, or worker 0 of a cluster without one, or a process
    outside any cluster (task_type None)."""
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and int(task_id) == 0 and "chief" not in cluster


def is_chief(strategy):
    """Whether this process writes model_dir (`is_chief_task` of the strategy's task)."""
    return is_chief_task(*task_of(strategy), _cluster(strategy))


def is_multi_worker(strategy):
    """Whether the strategy's replicas live in more than one process."""
    cluster = _cluster(strategy)
    return sum(len(cluster.get(job, ())) for job in ("chief", "worker")) > 1


class WorkerTempCheckpoints:
    """A non-chief worker's checkpoint saves: each save goes into a fresh temporary
    directory that is removed right after, so only the chief's checkpoints remain.
    `latest_checkpoint` is the chief's (`chief_manager`), for messages."""

    def __init__(self, checkpoint, chief_manager, task_id):
        self.checkpoint = checkpoint
        self.chief_manager = chief_manager
        self.task_id = int(task_id)
        self.last_directory = None  # For tests and logs: where the last save went.

    @property
    def latest_checkpoint(self):
        return self.chief_manager.latest_checkpoint

    def save(self, checkpoint_number=None):
        directory = tempfile.mkdtemp(prefix=f"magnets_worker{self.task_id}_checkpoint_")
        self.last_directory = directory
        try:
            manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=1)
            return manager.save(checkpoint_number=checkpoint_number)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def check_workers_agree(strategy, value, what):
    """Raises a ValueError naming `what` unless the int `value` is the same on every
    worker (e.g. the restored step: different values mean the workers do not see the
    same model_dir)."""
    if not is_multi_worker(strategy):
        return

    @tf.function
    def gather():
        def replica_fn():
            context = tf.distribute.get_replica_context()
            return context.all_gather(tf.constant([value], tf.int64), axis=0)
        return strategy.run(replica_fn)

    values = strategy.experimental_local_results(gather())[0].numpy()
    low, high = int(values.min()), int(values.max())
    if low != high:
        raise ValueError(f"workers disagree on {what}: this worker has {value}, the cluster "
                         f"ranges over [{low}, {high}]. Every worker must see the chief's "
                         f"model_dir (a shared file system) to resume from the same "
                         f"checkpoint")


def make_any_worker(strategy, multi_worker=None):
    """any_worker(flag) -> True if `flag` (a bool) is true on any worker of the cluster.

    Decisions one process makes alone (a signal, its wall clock) must be shared, or the
    other workers would wait in the next collective for a worker that stopped. Without
    several workers (`multi_worker` defaults to `is_multi_worker`) it returns the flag
    itself; otherwise one all-reduce (a sum over replicas of 0 or 1: ReduceOp has no
    MAX) of a scalar, traced once, which every worker must call equally often."""
    if not (is_multi_worker(strategy) if multi_worker is None else multi_worker):
        return bool

    @tf.function
    def count(value):
        def replica_fn(value):
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(value))
        return strategy.run(replica_fn, args=(value,))

    def any_worker(flag):
        result = count(tf.constant(1.0 if flag else 0.0, tf.float32))
        return float(strategy.experimental_local_results(result)[0].numpy()) > 0

    return any_worker


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
    """train_function(iterator, num_steps=1) -> the mean logs of `num_steps` distributed
    steps of `replica_step(batch)`, run inside one tf.function (one host sync).

    Each replica runs `replica_step` on its own batch; its logs (replica-reduced,
    identical on every replica) are taken from replica 0 and summed on the device, and
    their means over the loop are returned, so a NaN/Inf in any step shows in the
    result. `num_steps` is a tensor argument: a shorter last loop does not retrace.
    With jit_compile the per-replica step is XLA-compiled (what TPUStrategy does by
    itself; not under MirroredStrategy over logical CPUs).
    """
    compiled_step = tf.function(replica_step, jit_compile=bool(jit_compile))

    def one_step(iterator):
        outputs = strategy.run(compiled_step, args=(next(iterator),))
        return tf.nest.map_structure(
            lambda v: tf.cast(strategy.experimental_local_results(v)[0], tf.float32), outputs)

    @tf.function
    def train_loop(iterator, num_steps):
        # The first step outside the loop fixes the structure of the sums (the replica
        # step is traced once: both calls use the same tf.function).
        sums = one_step(iterator)
        for _ in tf.range(num_steps - 1):
            sums = tf.nest.map_structure(tf.add, sums, one_step(iterator))
        count = tf.cast(num_steps, tf.float32)
        return tf.nest.map_structure(lambda total: total / count, sums)

    def train_function(iterator, num_steps=1):
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        return train_loop(iterator, tf.constant(int(num_steps), tf.int32))

    return train_function
