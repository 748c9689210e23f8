"""Runs one signature of a SavedModel the way TF Serving does, without magnets_tf.

Used by saved_model_test in a fresh `python -I` process (cwd outside the repo):
  python -I session_client.py EXPORT_DIR REQUEST.pb OUTPUT.npz
REQUEST.pb is a serialized tensorflow_serving PredictRequest (signature name + inputs).
The SavedModel is loaded with the TF1 session loader (the C++ loader path of the model
server), feeds come from the request's TensorProtos, fetches from the SignatureDef.
Prints "MAGNETS_TF_IMPORTABLE=<bool>"; on a TF error prints "ERROR <type>: <message>"
and exits with status 3.
"""
import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402


def main(export_dir, request_path, output_path):
    print(f"MAGNETS_TF_IMPORTABLE={importlib.util.find_spec('magnets_tf') is not None}",
          flush=True)
    request = predict_pb2.PredictRequest()
    with open(request_path, "rb") as f:
        request.ParseFromString(f.read())
    name = request.model_spec.signature_name or "serving_default"
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], export_dir)
        signature = meta.signature_def[name]
        feeds = {signature.inputs[key].name: tf.make_ndarray(proto)
                 for key, proto in request.inputs.items()}
        keys = sorted(signature.outputs)
        fetches = [signature.outputs[key].name for key in keys]
        try:
            values = sess.run(fetches, feed_dict=feeds)
        except tf.errors.OpError as e:
            print(f"ERROR {type(e).__name__}: {e.message}", flush=True)
            sys.exit(3)
    np.savez(output_path, **dict(zip(keys, values)))
    print("OK " + " ".join(f"{k}:{v.dtype}{list(v.shape)}" for k, v in zip(keys, values)))


if __name__ == "__main__":
    main(*sys.argv[1:])
