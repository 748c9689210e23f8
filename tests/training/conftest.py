"""One MirroredStrategy over the two logical CPUs for every training test of a process.

Every MirroredStrategy of a process starts its collective group and instance keys at the
same values (TF's class-level `_collective_key_base`), so two strategies that run
different all-reduces in one process collide ("Shape mismatch in the collective
instance"). Tests share this one.
"""
import pytest

from magnets_tf.training import distribute


@pytest.fixture(scope="session")
def mirrored():
    return distribute.create_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
