"""Frame-prediction evaluation: predicted future frames against the real ones.

Decodes the future tokens with `decoding.Decoder` for several plans (MaGNeTS schedule with
cache vs the full model without cache, same weights), and reports per-frame MSE/PSNR of
the predicted frames to the ground truth, FVD (features named), the measured decode time
and the check that condition tokens came back unchanged.
"""
import time

import numpy as np

from magnets_tf.data.video import clip_tokens
from magnets_tf.decoding.decoder import Decoder
from magnets_tf.evaluation import fvd as fvd_lib


def psnr(mse):
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


def predict_frames(decoder, tokenizer, clips_tokens, class_ids, seed):
    """(predicted tokens [B, N], decoded clips) of one batch; condition = token prefix."""
    c = decoder.plan.num_condition_tokens
    flat = np.asarray(clips_tokens, np.int32).reshape(len(clips_tokens), -1)
    out = decoder.generate(class_ids, seed, condition_tokens=flat[:, :c])
    return out, tokenizer.decode(out).numpy()


def evaluate_frame_prediction(model, tokenizer, clips, class_ids, plans, batch_size,
                              condition_frames, fvd_network=None, seed=0, repeats=3,
                              fvd_max_clips=None, fvd_frame_stride=1, jit_compile=True):
    """Per-plan metrics of predicting clips[:, condition_frames:] from the first frames.

    plans: {name: DecodePlan}; every plan decodes with the same weights. Timing: each
    plan's compiled decode runs `repeats` times over all batches, the plans interleaved,
    and the median is reported (the machine is shared). FVD uses the first
    `fvd_max_clips` clips and every `fvd_frame_stride`-th future frame. Also reports the
    tokenizer's reconstruction (upper bound) and copying the last condition frame.
    Returns ({name: metrics}, {name: decoded clips}).
    """
    clips = np.asarray(clips, np.float32)
    n = (len(clips) // batch_size) * batch_size
    clips, class_ids = clips[:n], np.asarray(class_ids, np.int32)[:n]
    c = next(iter(plans.values())).num_condition_tokens
    tokens = clip_tokens(tokenizer, clips, condition_frames, c, batch_size)
    recon = np.concatenate([tokenizer.decode(tokens[i:i + batch_size]).numpy()
                            for i in range(0, n, batch_size)])
    future = clips[:, condition_frames:]
    decoders = {name: Decoder(model, plan, batch_size, jit_compile=jit_compile)
                for name, plan in plans.items()}
    results, videos, times = {}, {}, {name: [] for name in plans}
    for name, decoder in decoders.items():  # Compile (and warm up) every plan first.
        decoder.generate(class_ids[:batch_size], [seed, 0],
                         condition_tokens=tokens[:batch_size, :decoder.plan.num_condition_tokens])
    for _ in range(int(repeats)):
        for name, decoder in decoders.items():
            c = decoder.plan.num_condition_tokens
            start = time.perf_counter()
            outs = [decoder.generate(class_ids[i:i + batch_size], [seed, i],
                                     condition_tokens=tokens[i:i + batch_size, :c])
                    for i in range(0, n, batch_size)]
            times[name].append(time.perf_counter() - start)
            predicted = np.concatenate(outs)
            if not np.array_equal(predicted[:, :c], tokens[:, :c]):
                raise AssertionError(f"{name}: condition tokens changed during decoding")
            videos[name] = predicted
    fvd_frames = slice(condition_frames, None, int(fvd_frame_stride))
    fvd_clips = int(fvd_max_clips) if fvd_max_clips else n
    if fvd_network is not None:
        real_features = fvd_lib.video_features(fvd_network, clips[:fvd_clips, fvd_frames])
    for name, predicted in videos.items():
        decoded = np.concatenate([tokenizer.decode(predicted[i:i + batch_size]).numpy()
                                  for i in range(0, n, batch_size)])
        per_frame_mse = np.mean((decoded[:, condition_frames:] - future) ** 2, axis=(2, 3, 4))
        result = dict(
            plan=plans[name].describe(), model_schedule=str(plans[name].model_schedule),
            use_cache=plans[name].use_cache, num_clips=int(n),
            decode_seconds_median=float(np.median(times[name])),
            decode_seconds_all=[round(t, 3) for t in times[name]],
            mse_per_future_frame=per_frame_mse.mean(axis=0).round(5).tolist(),
            mse=float(per_frame_mse.mean()), psnr_db=float(np.mean(psnr(per_frame_mse))),
            condition_tokens_unchanged=True)
        if fvd_network is not None:
            fake = fvd_lib.video_features(fvd_network, decoded[:fvd_clips, fvd_frames])
            result["fvd"] = fvd_lib.fvd_from_features(real_features, fake, fvd_network.name)
            result["fvd"]["frames"] = f"future frames {fvd_frames}"
        results[name] = result
        videos[name] = decoded
    recon_mse = np.mean((recon[:, condition_frames:] - future) ** 2, axis=(2, 3, 4))
    results["tokenizer_reconstruction"] = dict(
        mse=float(recon_mse.mean()), psnr_db=float(np.mean(psnr(recon_mse))),
        note="upper bound: the ground-truth tokens decoded")
    copy_mse = np.mean((clips[:, condition_frames - 1:condition_frames] - future) ** 2,
                       axis=(2, 3, 4))
    results["copy_last_condition_frame"] = dict(
        mse=float(copy_mse.mean()), psnr_db=float(np.mean(psnr(copy_mse))),
        note="trivial baseline: every future frame = the last condition frame")
    return results, videos
