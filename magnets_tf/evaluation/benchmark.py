"""Throughput benchmark: MaskGIT++ (full model every step, no cache) vs a MaGNeTS plan.

Both decoders run in one process on the same weights, with the same steps K, guidance
steps and batch. Compilation and a warm-up run are excluded; the timed repeats are
interleaved (baseline, MaGNeTS, dense matmul, with the order alternating) so machine
noise hits all three, and medians are reported.

FLOP convention: GFLOPs models count multiply-adds (as the paper); achieved FLOP/s use
2 FLOPs per multiply-add, and the matmul reference uses the same convention
(2*M*K*N per matmul). Achieved FLOP/s count only the `exact` model's multiply-adds,
so softmax, LayerNorm, GELU, embedding and sampling work is time the decoder spends
without earning FLOPs.
"""
import os
import platform
import time

import gin
import numpy as np
import tensorflow as tf

from magnets_tf.decoding.decoder import Decoder
from magnets_tf.decoding.schedule import DecodePlan
from magnets_tf.evaluation import flops

TARGET_SPEEDUP = 2.5
TARGET_FLOP_RATIO_FRACTION = 0.95
TARGET_BASELINE_EFFICIENCY = 0.5


class MatmulProbe:
    """XLA float32 matmul [m, k] x [k, n], timed as the machine's dense FLOP/s."""

    def __init__(self, m, k, n, inner=8, seed=0):
        self.shape = (int(m), int(k), int(n))
        self.inner = int(inner)
        rng = np.random.default_rng(seed)
        self._a = tf.constant(rng.standard_normal([m, k]), tf.float32)
        self._b = tf.constant(rng.standard_normal([k, n]), tf.float32)

        @tf.function(jit_compile=True)
        def chain(a, b):
            # `inner` dependent matmuls per call amortise dispatch (values stay finite:
            # each product grows them by about sqrt(k)).
            out = a
            for _ in range(self.inner):
                out = tf.matmul(out[:, :k], b) * (1.0 / k)
                if n < k:
                    out = tf.pad(out, [[0, 0], [0, k - n]])
            return tf.reduce_sum(out)

        self._fn = chain

    @property
    def flops_per_call(self):
        m, k, n = self.shape
        return 2.0 * m * k * n * self.inner

    def time_once(self):
        start = time.perf_counter()
        self._fn(self._a, self._b).numpy()
        return time.perf_counter() - start

    def seconds_per_call(self, min_seconds):
        """Mean time of back-to-back calls lasting >= min_seconds in total, so that the
        probe sees about as much machine noise as a decode does."""
        calls, total = 0, 0.0
        while calls == 0 or total < min_seconds:
            total += self.time_once()
            calls += 1
        return total / calls


def _time_decode(decoder, class_ids, seed):
    start = time.perf_counter()
    decoder.generate(class_ids, seed)
    return time.perf_counter() - start


def plan_latency(model, plan: DecodePlan, batch_size, repeats=3, seed=0, jit_compile=True):
    """Median seconds of one batch decode of `plan` (compilation and a warm-up run
    excluded): the latency a schedule search holds to a budget."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    decoder = Decoder(model, plan, batch_size, jit_compile=jit_compile)
    class_ids = np.arange(batch_size, dtype=np.int32) % max(model.num_classes, 1)
    _time_decode(decoder, class_ids, [seed, 0])
    _time_decode(decoder, class_ids, [seed, 1])
    return float(np.median([_time_decode(decoder, class_ids, [seed, 2 + r])
                            for r in range(repeats)]))


@gin.configurable(denylist=["model", "plan"])
def run_benchmark(model, plan: DecodePlan, batch_size=8, repeats=3, seed=0, progress=None,
                  jit_compile=True, probe_seconds=2.0):
    """Times MaskGIT++ and MaGNeTS decodes of `plan`; returns a JSON-ready dict.

    `jit_compile=False` only serves quick tests: the claim is about the XLA decoders.
    The decoders compute in the model's compute dtype (`with_compute_dtype`); the
    matmul probe stays float32, the machine's reference."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    baseline_plan = flops.uncached_baseline_plan(plan)
    arch = flops.ArchSpec.from_model(model)
    decoders = {"baseline": Decoder(model, baseline_plan, batch_size, jit_compile=jit_compile),
                "magnets": Decoder(model, plan, batch_size, jit_compile=jit_compile)}
    probe = MatmulProbe(batch_size * plan.sequence_length, model.hidden_size, model.mlp_dim)
    class_ids = np.arange(batch_size, dtype=np.int32) % max(model.num_classes, 1)
    load_before = _load_average()

    compile_s = {}
    for name, decoder in decoders.items():  # compile + warm-up, not timed in results
        compile_s[name] = _time_decode(decoder, class_ids, [seed, 0])
        _time_decode(decoder, class_ids, [seed, 1])
    probe.time_once()
    probe.time_once()

    times = {"baseline": [], "magnets": [], "matmul": []}
    jobs = [("baseline", lambda r: _time_decode(decoders["baseline"], class_ids, [seed, 2 + r])),
            ("magnets", lambda r: _time_decode(decoders["magnets"], class_ids, [seed, 2 + r])),
            ("matmul", lambda r: probe.seconds_per_call(probe_seconds))]
    for r in range(repeats):
        for name, job in (jobs if r % 2 == 0 else jobs[::-1]):
            times[name].append(job(r))
        if progress:
            progress(r + 1, repeats)

    plans = {"baseline": baseline_plan, "magnets": plan}
    exact = {name: sum(flops.exact_gflops(arch, p)) for name, p in plans.items()}
    paper = {name: sum(flops.paper_gflops_for_plan(arch, p)) for name, p in plans.items()}
    latency = {name: float(np.median(times[name])) for name in plans}
    matmul_flops = probe.flops_per_call / float(np.median(times["matmul"]))
    achieved = {name: 2e9 * exact[name] * batch_size / latency[name] for name in plans}
    speedup = latency["baseline"] / latency["magnets"]
    exact_ratio = exact["baseline"] / exact["magnets"]
    baseline_efficiency = achieved["baseline"] / matmul_flops
    sides = {name: dict(latency_s=latency[name], images_per_s=batch_size / latency[name],
                        times_s=times[name], compile_and_first_run_s=compile_s[name],
                        exact_gflops_per_image=exact[name],
                        paper_gflops_per_image=paper[name],
                        achieved_gflop_per_s=achieved[name] / 1e9,
                        efficiency=achieved[name] / matmul_flops)
             for name in plans}
    result = dict(
        preset=getattr(model, "name", ""), num_tokens=plan.num_tokens,
        sequence_length=plan.sequence_length, num_steps=plan.num_steps,
        guidance_steps=plan.guidance_steps, guidance_scale=plan.guidance_scale,
        model_schedule=[list(s) for s in plan.model_schedule], refresh=plan.refresh,
        batch_size=batch_size, repeats=repeats, jit_compile=bool(jit_compile),
        compute_dtype=decoders["magnets"].compute_dtype.name,
        **sides,
        matmul=dict(shape=list(probe.shape), gflop_per_s=matmul_flops / 1e9,
                    times_s=times["matmul"]),
        speedup=speedup, exact_flop_ratio=exact_ratio, paper_flop_ratio=paper["baseline"] / paper["magnets"],
        speedup_over_exact_ratio=speedup / exact_ratio,
        baseline_efficiency=baseline_efficiency,
        flop_convention="GFLOPs = 1e9 multiply-adds; FLOP/s = 2 FLOPs per multiply-add",
        targets=dict(
            speedup=dict(target=TARGET_SPEEDUP, met=bool(speedup >= TARGET_SPEEDUP)),
            speedup_vs_exact_ratio=dict(target=TARGET_FLOP_RATIO_FRACTION,
                                        met=bool(speedup >= TARGET_FLOP_RATIO_FRACTION
                                                 * exact_ratio)),
            baseline_efficiency=dict(target=TARGET_BASELINE_EFFICIENCY,
                                     met=bool(baseline_efficiency
                                              >= TARGET_BASELINE_EFFICIENCY))),
        machine=dict(cpus=os.cpu_count(), platform=platform.platform(),
                     tensorflow=tf.__version__, xla_flags=os.environ.get("XLA_FLAGS", ""),
                     load_average_before=load_before,
                     load_average_after=_load_average()))
    return result


def format_table(result):
    """Human-readable table of a `run_benchmark` result, ending with the summary line."""
    rows = [f"{'decoder':<10} {'latency_s':>10} {'images/s':>9} {'exact_GF':>9} "
            f"{'paper_GF':>9} {'GFLOP/s':>8} {'eff':>5}"]
    for name in ("baseline", "magnets"):
        r = result[name]
        rows.append(f"{name:<10} {r['latency_s']:10.3f} {r['images_per_s']:9.2f} "
                    f"{r['exact_gflops_per_image']:9.1f} {r['paper_gflops_per_image']:9.1f} "
                    f"{r['achieved_gflop_per_s']:8.1f} {r['efficiency']:5.2f}")
    rows.append(f"matmul {result['matmul']['shape']}: {result['matmul']['gflop_per_s']:.1f} "
                f"GFLOP/s (2 FLOPs per multiply-add)")
    xla_flags = result.get("machine", {}).get("xla_flags")
    if xla_flags:
        rows.append(f"XLA_FLAGS={xla_flags}")
    rows.append(f"exact GFLOPs ratio {result['exact_flop_ratio']:.2f}, paper ratio "
                f"{result['paper_flop_ratio']:.2f}, speedup/exact ratio "
                f"{result['speedup_over_exact_ratio']:.2f}")
    for name, t in result["targets"].items():
        rows.append(f"target {name} >= {t['target']}: {'met' if t['met'] else 'NOT met'}")
    rows.append(summary_line(result))
    return "\n".join(rows)


def summary_line(result):
    return (f"speedup={result['speedup']:.2f} flop_ratio={result['exact_flop_ratio']:.2f} "
            f"baseline_efficiency={result['baseline_efficiency']:.2f}")


def _load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None
