"""Frame-prediction evaluation end to end on tiny models."""
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.decoding.schedule import make_plan
from magnets_tf.evaluation import frame_prediction as fp
from magnets_tf.models.presets import build_transformer
from magnets_tf.models.video_tokenizer import build_video_tokenizer

N, C = 32, 16  # 2x4x4 video tokens; the first temporal slice is the condition.


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    m = build_transformer("tiny", codebook_size=16, num_classes=10, num_tokens=N,
                          num_condition_tokens=C, dropout=0.0, attention_dropout=0.0)
    emb = m.token_embedding.embeddings
    emb.assign(emb * 20.0)  # Spread random logits.
    return m


def test_evaluate_frame_prediction_end_to_end(model):
    tokenizer = build_video_tokenizer("tiny_test")  # 4x8x8x1 -> 2x4x4 tokens, 16 codes
    clips = tf.random.stateless_uniform([4, 4, 8, 8, 1], [5, 6]).numpy()
    plans = {"magnets": make_plan(N, 4, "8:1,4:1,2:1,1:1", num_condition_tokens=C),
             "full": make_plan(N, 4, "1:4", num_condition_tokens=C, use_cache=False)}
    results, videos = fp.evaluate_frame_prediction(model, tokenizer, clips, [0, 1, 2, 3],
                                                   plans, batch_size=2, condition_frames=2,
                                                   repeats=1, jit_compile=False)
    for name in plans:
        r = results[name]
        assert r["condition_tokens_unchanged"] and r["num_clips"] == 4
        assert len(r["mse_per_future_frame"]) == 2 and np.isfinite(r["psnr_db"])
        assert videos[name].shape == (4, 4, 8, 8, 1)
    assert "tokenizer_reconstruction" in results and "copy_last_condition_frame" in results
