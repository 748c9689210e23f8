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
from magnets_tf.models.transformer import with_compute_dtype

TARGET_SPEEDUP = 2.5
TARGET_FLOP_RATIO_FRACTION = 0.95
TARGET_BASELINE_EFFICIENCY = 0.5
TARGET_DTYPE_SPEEDUP = 1.5  # bfloat16 over float32 decoding, where the hardware has bf16 units


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


def _time_interleaved(decoders, probe, class_ids, seed, repeats, probe_seconds, progress):
    """Compiles and warms up every decoder, then times `repeats` rounds of each decoder
    and the matmul probe, the order alternating per round. Returns (times, compile_s)."""
    compile_s = {}
    for name, decoder in decoders.items():  # compile + warm-up, not timed in results
        compile_s[name] = _time_decode(decoder, class_ids, [seed, 0])
        _time_decode(decoder, class_ids, [seed, 1])
    probe.time_once()
    probe.time_once()
    names = [*decoders, "matmul"]
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(probe.seconds_per_call(probe_seconds) if name == "matmul"
                               else _time_decode(decoders[name], class_ids, [seed, 2 + r]))
        if progress:
            progress(r + 1, repeats)
    return times, compile_s


def _pair_result(arch, plans, times, compile_s, batch_size, matmul_flops):
    """Sides, speedup, FLOP ratios and targets of one (baseline, MaGNeTS) decoder pair."""
    exact = {name: sum(flops.exact_gflops(arch, p)) for name, p in plans.items()}
    paper = {name: sum(flops.paper_gflops_for_plan(arch, p)) for name, p in plans.items()}
    latency = {name: float(np.median(times[name])) for name in plans}
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
    return dict(
        **sides,
        speedup=speedup, exact_flop_ratio=exact_ratio,
        paper_flop_ratio=paper["baseline"] / paper["magnets"],
        speedup_over_exact_ratio=speedup / exact_ratio,
        baseline_efficiency=baseline_efficiency,
        targets=dict(
            speedup=dict(target=TARGET_SPEEDUP, met=bool(speedup >= TARGET_SPEEDUP)),
            speedup_vs_exact_ratio=dict(target=TARGET_FLOP_RATIO_FRACTION,
                                        met=bool(speedup >= TARGET_FLOP_RATIO_FRACTION
                                                 * exact_ratio)),
            baseline_efficiency=dict(target=TARGET_BASELINE_EFFICIENCY,
                                     met=bool(baseline_efficiency
                                              >= TARGET_BASELINE_EFFICIENCY))))


def _run_fields(model, plan, batch_size, repeats, jit_compile, probe, times, load_before):
    """What every benchmark result records: the plan, the run and the machine."""
    return dict(
        preset=getattr(model, "name", ""), num_tokens=plan.num_tokens,
        sequence_length=plan.sequence_length, num_steps=plan.num_steps,
        guidance_steps=plan.guidance_steps, guidance_scale=plan.guidance_scale,
        model_schedule=[list(s) for s in plan.model_schedule], refresh=plan.refresh,
        batch_size=batch_size, repeats=repeats, jit_compile=bool(jit_compile),
        matmul=dict(shape=list(probe.shape),
                    gflop_per_s=probe.flops_per_call / float(np.median(times["matmul"])) / 1e9,
                    times_s=times["matmul"]),
        flop_convention="GFLOPs = 1e9 multiply-adds; FLOP/s = 2 FLOPs per multiply-add",
        machine=dict(cpus=os.cpu_count(), platform=platform.platform(),
                     tensorflow=tf.__version__, xla_flags=os.environ.get("XLA_FLAGS", ""),
                     load_average_before=load_before,
                     load_average_after=_load_average()))


def _time_pairs(models, plan, batch_size, repeats, seed, progress, jit_compile,
                probe_seconds):
    """Times the MaskGIT++ and MaGNeTS decoders of `plan` for each of `models` (a dict),
    all interleaved in one run; returns ({key: pair result}, run fields)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    plans = {"baseline": flops.uncached_baseline_plan(plan), "magnets": plan}
    decoders = {(key, name): Decoder(model, p, batch_size, jit_compile=jit_compile)
                for key, model in models.items() for name, p in plans.items()}
    first = next(iter(models.values()))
    probe = MatmulProbe(batch_size * plan.sequence_length, first.hidden_size, first.mlp_dim)
    class_ids = np.arange(batch_size, dtype=np.int32) % max(first.num_classes, 1)
    load_before = _load_average()
    times, compile_s = _time_interleaved(decoders, probe, class_ids, seed, repeats,
                                         probe_seconds, progress)
    matmul_flops = probe.flops_per_call / float(np.median(times["matmul"]))
    arch = flops.ArchSpec.from_model(first)
    pairs = {key: _pair_result(arch, plans, {name: times[key, name] for name in plans},
                               {name: compile_s[key, name] for name in plans}, batch_size,
                               matmul_flops)
             for key in models}
    return pairs, _run_fields(first, plan, batch_size, repeats, jit_compile, probe, times,
                              load_before)


@gin.configurable(denylist=["model", "plan"])
def run_benchmark(model, plan: DecodePlan, batch_size=8, repeats=3, seed=0, progress=None,
                  jit_compile=True, probe_seconds=2.0):
    """Times MaskGIT++ and MaGNeTS decodes of `plan`; returns a JSON-ready dict.

    `jit_compile=False` times TF's kernels instead of the XLA decoders (quick tests, and
    bfloat16 on CPUs whose XLA backend converts bf16 dots to float32). The decoders
    compute in the model's compute dtype (`with_compute_dtype`); the matmul probe stays
    float32, the machine's reference."""
    pairs, result = _time_pairs({"model": model}, plan, batch_size, repeats, seed, progress,
                                jit_compile, probe_seconds)
    result.update(compute_dtype=tf.as_dtype(model.compute_dtype).name, **pairs["model"])
    return result


def compare_compute_dtypes(model, plan: DecodePlan, compute_dtypes=("float32", "bfloat16"),
                           batch_size=8, repeats=3, seed=0, progress=None, jit_compile=True,
                           probe_seconds=2.0):
    """Times MaskGIT++ and MaGNeTS decodes of `plan` in each compute dtype, all
    interleaved in one run; returns a JSON-ready dict with one `run_benchmark`-like
    entry per dtype under `by_dtype` and, per decoder, each dtype's speedup over the
    first dtype under `dtype_speedup`."""
    compute_dtypes = list(dict.fromkeys(compute_dtypes))
    if len(compute_dtypes) < 2:
        raise ValueError(f"compare at least two compute dtypes, got {compute_dtypes}")
    models = {dtype: with_compute_dtype(model, dtype) for dtype in compute_dtypes}
    by_dtype, result = _time_pairs(models, plan, batch_size, repeats, seed, progress,
                                   jit_compile, probe_seconds)
    reference = compute_dtypes[0]
    dtype_speedup = {
        dtype: {name: by_dtype[reference][name]["latency_s"] / by_dtype[dtype][name]["latency_s"]
                for name in ("baseline", "magnets")}
        for dtype in compute_dtypes[1:]}
    result.update(compute_dtypes=compute_dtypes, by_dtype=by_dtype,
                  dtype_speedup=dtype_speedup)
    return result


def _pair_rows(pair, rows_after_decoders=()):
    """Table rows of one (baseline, MaGNeTS) pair; `rows_after_decoders` go between the
    decoder rows and the FLOP-ratio and target rows."""
    rows = [f"{'decoder':<10} {'latency_s':>10} {'images/s':>9} {'exact_GF':>9} "
            f"{'paper_GF':>9} {'GFLOP/s':>8} {'eff':>5}"]
    for name in ("baseline", "magnets"):
        r = pair[name]
        rows.append(f"{name:<10} {r['latency_s']:10.3f} {r['images_per_s']:9.2f} "
                    f"{r['exact_gflops_per_image']:9.1f} {r['paper_gflops_per_image']:9.1f} "
                    f"{r['achieved_gflop_per_s']:8.1f} {r['efficiency']:5.2f}")
    rows += rows_after_decoders
    rows.append(f"exact GFLOPs ratio {pair['exact_flop_ratio']:.2f}, paper ratio "
                f"{pair['paper_flop_ratio']:.2f}, speedup/exact ratio "
                f"{pair['speedup_over_exact_ratio']:.2f}")
    for name, t in pair["targets"].items():
        rows.append(f"target {name} >= {t['target']}: {'met' if t['met'] else 'NOT met'}")
    return rows


def _machine_rows(result):
    rows = [f"matmul {result['matmul']['shape']}: {result['matmul']['gflop_per_s']:.1f} "
            f"GFLOP/s float32 (2 FLOPs per multiply-add)"]
    xla_flags = result.get("machine", {}).get("xla_flags")
    if xla_flags:
        rows.append(f"XLA_FLAGS={xla_flags}")
    return rows


def format_table(result):
    """Human-readable table of a `run_benchmark` result, ending with the summary line."""
    if "by_dtype" in result:
        return format_dtype_table(result)
    rows = _pair_rows(result, _machine_rows(result))
    rows.append(summary_line(result))
    return "\n".join(rows)


def format_dtype_table(result):
    """Human-readable table of a `compare_compute_dtypes` result: one block per dtype,
    then each dtype's speedup over the first one per decoder."""
    rows = []
    for dtype, pair in result["by_dtype"].items():
        rows += [f"-- compute_dtype={dtype} (jit_compile={result['jit_compile']})",
                 *_pair_rows(pair), f"speedup={pair['speedup']:.2f}"]
    rows += _machine_rows(result)
    reference = result["compute_dtypes"][0]
    for dtype, per_decoder in result["dtype_speedup"].items():
        parts = " ".join(f"{name}={value:.2f}x" for name, value in per_decoder.items())
        met = all(value >= TARGET_DTYPE_SPEEDUP for value in per_decoder.values())
        rows.append(f"{dtype} over {reference}: {parts} (target >= {TARGET_DTYPE_SPEEDUP} for "
                    f"both: {'met' if met else 'NOT met'})")
    return "\n".join(rows)


def summary_line(result):
    return (f"speedup={result['speedup']:.2f} flop_ratio={result['exact_flop_ratio']:.2f} "
            f"baseline_efficiency={result['baseline_efficiency']:.2f}")


def _load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None
