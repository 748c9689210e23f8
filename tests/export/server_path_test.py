"""Signature dtypes are exact: the model server's way (`ServerSession`) rejects a float,
an int64 or a string where int32 is declared, while Python's feed_dict casts them (the
documented difference). Also: an export sweeps the temp directories of killed exports
and checks export_base before any work."""
import os
import socket

import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.export import saved_model
from magnets_tf.export.server_path import ServerSession
from magnets_tf.utils import files
from tests.export.saved_model_test import _models


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("export_base")
    killed = base / f".tmp-export-pid999999999@{socket.gethostname()}-x1"
    killed.mkdir()
    (killed / "saved_model.pb").write_bytes(b"half")
    transformer, tokenizer, plan = _models()
    version_dir = saved_model.export_saved_model(transformer, tokenizer, plan, base,
                                                 jit_compile=False, warmup=False)
    assert sorted(os.listdir(base)) == ["1"]  # The killed export's debris was swept.
    return version_dir


def test_every_signature_declares_the_documented_dtypes(export_dir):
    with ServerSession(export_dir) as session:
        for name in session.meta_graph.signature_def:
            if name.startswith("__"):
                continue
            for key, dtype in session.input_dtypes(name).items():
                assert dtype == saved_model.INPUT_DTYPES[key], (name, key)


@pytest.mark.parametrize("class_ids", [
    np.array([3.7], np.float64), np.array([2 ** 32 + 1], np.int64), np.array([b"1"]),
    np.array([True])])
def test_the_server_path_rejects_other_dtypes(export_dir, class_ids):
    seed = np.array([1, 2], np.int32)
    with ServerSession(export_dir) as session:
        with pytest.raises(tf.errors.InvalidArgumentError, match="to be int32"):
            session.run("serving_default", dict(class_ids=class_ids, seed=seed))


def test_python_feed_dict_casts_what_the_server_rejects(export_dir):
    """Documented in docs/serving.md: Session.run(feed_dict) serves 1.7, 2**32+1 and "1"
    as class 1; only the exact int32 request is what the model server accepts."""
    seed = np.array([1, 2], np.int32)
    with ServerSession(export_dir) as session:
        exact = session.run("serving_default", dict(class_ids=np.array([1], np.int32),
                                                    seed=seed))["tokens"]
        signature = session.signature("serving_default")
        graph = session._session.graph
        fetch = graph.get_tensor_by_name(signature.outputs["tokens"].name)
        feeds = [graph.get_tensor_by_name(signature.inputs[k].name)
                 for k in ("class_ids", "seed")]
        for loose in ([1.7], [2 ** 32 + 1], ["1"]):
            cast = session._session.run(fetch, {feeds[0]: loose, feeds[1]: seed})
            np.testing.assert_array_equal(cast, exact)


def test_export_base_that_is_a_file_fails_before_any_work(tmp_path):
    base = tmp_path / "base"
    base.write_text("not a directory")
    with pytest.raises(files.OutputPathError, match="export_base .* is a file"):
        saved_model.export_saved_model(None, None, None, str(base))
