"""Strategy factory: names, device choice, errors."""
import pytest
import tensorflow as tf

from magnets_tf.training import distribute


def test_default_one_device_mirrored():
    assert distribute.create_strategy("default") is tf.distribute.get_strategy()
    one = distribute.create_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy) and one.num_replicas_in_sync == 1
    mirrored = distribute.create_strategy("mirrored")  # conftest made 2 logical CPUs.
    assert mirrored.num_replicas_in_sync == 2


def test_dataset_from_function_gets_per_replica_batches():
    mirrored = distribute.create_strategy("mirrored")
    seen = []

    def dataset_fn(context):
        seen.append((context.num_input_pipelines, context.get_per_replica_batch_size(8)))
        return tf.data.Dataset.range(32).batch(context.get_per_replica_batch_size(8))

    batch = next(iter(distribute.distribute_dataset(mirrored, dataset_fn)))
    assert seen == [(1, 4)]
    parts = mirrored.experimental_local_results(batch)
    # Round robin: replica 0 gets examples 0..3, replica 1 gets 4..7 (== one global batch).
    assert [p.numpy().tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_errors_and_jit_default():
    with pytest.raises(ValueError, match="unknown strategy"):
        distribute.create_strategy("parameter_server")
    with pytest.raises(ValueError, match="needs --tpu"):
        distribute.create_strategy("tpu")
    assert distribute.default_jit_compile(tf.distribute.get_strategy()) is False  # CPU only
    with pytest.raises(ValueError, match=">= 1"):
        distribute.configure_logical_cpus(0)
    distribute.configure_logical_cpus(2)  # Already configured with 2 by conftest: no-op.
    with pytest.raises(RuntimeError, match="already initialised"):
        distribute.configure_logical_cpus(3)
