"""Strategy factory (names, device choice, errors) and who writes in a cluster."""
import os

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


def test_the_chief_is_the_chief_task_or_worker_0_of_a_cluster_without_one():
    workers = {"worker": ["a:1", "b:2"]}
    with_chief = {"chief": ["c:0"], "worker": ["a:1", "b:2"]}
    assert distribute.is_chief_task(None, 0, {})  # A single process.
    assert distribute.is_chief_task("worker", 0, workers)
    assert not distribute.is_chief_task("worker", 1, workers)
    assert distribute.is_chief_task("chief", 0, with_chief)
    assert not distribute.is_chief_task("worker", 0, with_chief)
    assert not distribute.is_chief_task("evaluator", 0, workers)
    mirrored = distribute.create_strategy("mirrored")
    assert distribute.is_chief(mirrored) and not distribute.is_multi_worker(mirrored)
    distribute.check_workers_agree(mirrored, 3, "the restored step")  # One process: no-op.


def test_a_worker_saves_into_a_temporary_dir_that_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # Re-read TMPDIR.
    variable = tf.Variable([1.0, 2.0])
    checkpoint = tf.train.Checkpoint(v=variable)
    chief = tf.train.CheckpointManager(checkpoint, str(tmp_path / "chief"), max_to_keep=2)
    chief.save(checkpoint_number=1)
    worker = distribute.WorkerTempCheckpoints(checkpoint, chief, task_id=1)
    path = worker.save(checkpoint_number=2)
    assert path.startswith(str(tmp_path / "tmp" / "magnets_worker1_checkpoint_"))
    assert not list((tmp_path / "tmp").iterdir())  # Removed right after the save.
    assert worker.latest_checkpoint == chief.latest_checkpoint == str(tmp_path / "chief" /
                                                                      "ckpt-1")
    assert sorted(os.listdir(tmp_path / "chief")) == ["checkpoint", "ckpt-1.data-00000-of-00001",
                                                      "ckpt-1.index"]


def test_bad_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribute.create_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}}')
    with pytest.raises(ValueError, match=r"TF_CONFIG lacks \['task'\]"):
        distribute.create_strategy("multi_worker")


def test_any_worker_is_the_flag_alone_and_a_max_over_replicas_in_a_cluster(mirrored):
    alone = distribute.make_any_worker(mirrored)  # One process: no collective.
    assert alone(True) is True and alone(False) is False
    # The collective the loop runs with several workers, here over two local replicas.
    shared = distribute.make_any_worker(mirrored, multi_worker=True)
    assert shared(False) is False and shared(True) is True and shared(False) is False
