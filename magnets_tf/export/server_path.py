"""Runs SavedModel signatures the way tensorflow_model_server does, where it cannot run.

The model server loads a version with the TF1 session loader and calls `Session::Run`
with each request's tensors exactly as they arrive: a tensor whose dtype is not the
signature's fails with INVALID_ARGUMENT "Expects arg[i] to be int32 but double is
provided". Python's `Session.run(feed_dict=...)` (and `saved_model_cli run`, which uses
it) instead converts every fed value to the placeholder's dtype with
`np.asarray(value, dtype)` before the graph sees it: 3.7 -> 3, int64 2**32+3 -> 3 (wrapped
modulo 2**32), the string "3" -> 3, True -> 1. A check made through Python's feed_dict
therefore accepts requests the server rejects. `ServerSession.run` feeds the tensors
unconverted, through the same C API call the Python session uses internally, so the
dtype check happens where the server makes it.
"""
import tensorflow as tf


class ServerSession:
    """A SavedModel loaded the model server's way; use as a context manager."""

    def __init__(self, export_dir, tags=("serve",)):
        self.export_dir = str(export_dir)
        self.tags = list(tags)
        self._session = None
        self.meta_graph = None

    def __enter__(self):
        self._session = tf.compat.v1.Session(graph=tf.Graph())
        self.meta_graph = tf.compat.v1.saved_model.loader.load(self._session, self.tags,
                                                               self.export_dir)
        return self

    def __exit__(self, *exc):
        self._session.close()
        return False

    def signature(self, name):
        if name not in self.meta_graph.signature_def:
            raise KeyError(f"{self.export_dir} has no signature {name!r}; it has "
                           f"{sorted(self.meta_graph.signature_def)}")
        return self.meta_graph.signature_def[name]

    def input_dtypes(self, name):
        """{input name: tf.DType} the signature declares."""
        return {key: tf.dtypes.as_dtype(info.dtype)
                for key, info in self.signature(name).inputs.items()}

    def run(self, name, inputs):
        """Outputs {name: ndarray} of signature `name` for `inputs` {input: ndarray}, fed
        without conversion; raises tf.errors.InvalidArgumentError as the server would."""
        signature = self.signature(name)
        graph = self._session.graph
        missing = set(signature.inputs) - set(inputs)
        if missing:
            raise tf.errors.InvalidArgumentError(None, None, f"missing inputs {sorted(missing)}")
        feeds = {graph.get_tensor_by_name(signature.inputs[key].name)._as_tf_output(): value
                 for key, value in inputs.items()}
        keys = sorted(signature.outputs)
        fetches = [graph.get_tensor_by_name(signature.outputs[key].name)._as_tf_output()
                   for key in keys]
        values = self._session._call_tf_sessionrun(None, feeds, fetches, [], None)
        return dict(zip(keys, values))
