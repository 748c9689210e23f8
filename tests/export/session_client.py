"""Runs signatures of a SavedModel the way TF Serving does, without magnets_tf.

Used by saved_model_test in a fresh `python -I` process (cwd outside the repo):
  python -I session_client.py EXPORT_DIR OUT_DIR REQUEST_0.pb [REQUEST_1.pb ...]
Each REQUEST_i.pb is a serialized tensorflow_serving PredictRequest (signature name +
inputs). The SavedModel is loaded once with the TF1 session loader (the C++ loader path of
the model server); feeds come from the request's TensorProtos, fetches from the
SignatureDef. Prints "MAGNETS_TF_IMPORTABLE=<bool>", then per request either
"RESULT i OK" (outputs saved to OUT_DIR/i.npz) or "RESULT i ERROR <type>: <message>".
"""
import importlib.abc
import os
import sys


class _BlockMagnetsTf(importlib.abc.MetaPathFinder):
    """Makes magnets_tf unimportable even where it is pip-installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "magnets_tf" or name.startswith("magnets_tf."):
            raise ImportError(f"{name} is blocked: this client must work without it")
        return None


sys.meta_path.insert(0, _BlockMagnetsTf())

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402


def main(export_dir, out_dir, *request_paths):
    try:
        import magnets_tf  # noqa: F401
        importable = True
    except ImportError:
        importable = False
    print(f"MAGNETS_TF_IMPORTABLE={importable}", flush=True)
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
        for i, path in enumerate(request_paths):
            request = predict_pb2.PredictRequest()
            with open(path, "rb") as f:
                request.ParseFromString(f.read())
            signature = meta.signature_def[request.model_spec.signature_name or
                                           "serving_default"]
            unknown = sorted(set(request.inputs) - set(signature.inputs))
            if unknown:  # The model server refuses inputs a signature does not have.
                print(f"RESULT {i} ERROR InvalidArgument: inputs {unknown} are not in the "
                      f"signature's inputs {sorted(signature.inputs)}", flush=True)
                continue
            feeds = {signature.inputs[key].name: tf.make_ndarray(proto)
                     for key, proto in request.inputs.items()}
            keys = sorted(signature.outputs)
            try:
                values = sess.run([signature.outputs[k].name for k in keys], feed_dict=feeds)
            except tf.errors.OpError as e:
                message = e.message.replace("\n", " ")
                print(f"RESULT {i} ERROR {type(e).__name__}: {message}", flush=True)
                continue
            np.savez(os.path.join(out_dir, f"{i}.npz"), **dict(zip(keys, values)))
            print(f"RESULT {i} OK", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
