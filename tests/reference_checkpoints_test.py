"""The committed Fashion-MNIST reference checkpoints load and match their metrics.json."""
import json
from pathlib import Path

import numpy as np
import pytest

from magnets_tf.decoding.decoder import Decoder
from magnets_tf.decoding.schedule import make_plan
from magnets_tf.evaluation.generation import plan_gflops
from magnets_tf.models.saving import load_tokenizer
from magnets_tf.models.saving import load_transformer

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints" / "fashion_mnist"


@pytest.mark.parametrize("model_dir, metrics", [
    ("magnets_reference", "magnets_reference/metrics.json"), ("magnets", "metrics.json")])
def test_reference_model_matches_its_recorded_gflops_and_decodes(model_dir, metrics):
    model = load_transformer(str(CHECKPOINTS / model_dir))
    recorded = json.loads((CHECKPOINTS / metrics).read_text())
    # Rows at other guidance scales ("guidance_12": scale 12) decode the same plans.
    rows = [(recorded, 2.0)] + [(recorded[key], float(key.removeprefix("guidance_")))
                                for key in recorded if key.startswith("guidance_")]
    for row, scale in rows:
        for name, schedule, cache in (("magnets", ((8, 3), (4, 3), (2, 3), (1, 3)), True),
                                      ("maskgit_pp", ((1, 12),), False)):
            assert row[name]["guidance_scale"] == scale
            plan = make_plan(num_tokens=model.num_tokens, model_schedule=schedule,
                             use_cache=cache, guidance_scale=scale, guidance_steps=4)
            assert plan_gflops(model, plan)["gflops_exact"] == pytest.approx(
                row[name]["gflops_exact"], rel=1e-6)
    tokenizer = load_tokenizer(CHECKPOINTS / "tokenizer")
    plan = make_plan(num_tokens=model.num_tokens, guidance_scale=2.0, guidance_steps=4)
    decoder = Decoder(model, plan, batch_size=2, jit_compile=False)
    tokens = np.asarray(decoder.generate(np.array([0, 7], np.int32), seed=(0, 0)))
    assert tokens.shape == (2, model.num_tokens)
    assert tokens.min() >= 0 and tokens.max() < model.codebook_size
    images = np.asarray(tokenizer.decode(tokens))
    assert images.shape == (2, 28, 28, 1) and np.isfinite(images).all()
