r"""GFLOPs of MaskGIT++ (full model, no cache) vs a MaGNeTS decode plan.

python tools/flops.py --preset=L --steps=12 --cfg_last=4 --schedule=8:3,4:3,2:3,1:3 --model=paper
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app, flags  # noqa: E402

from magnets_tf.decoding.schedule import make_plan  # noqa: E402
from magnets_tf.evaluation import flops  # noqa: E402
from magnets_tf.models.presets import PRESETS  # noqa: E402

flags.DEFINE_enum("preset", "L", sorted(PRESETS), "Architecture preset.")
flags.DEFINE_integer("tokens", 256, "Grid tokens N (the class token is added).")
flags.DEFINE_integer("condition_tokens", 0, "Leading grid tokens given as condition.")
flags.DEFINE_integer("steps", 12, "Decoding steps K.")
flags.DEFINE_integer("cfg_last", 0, "Classifier-free guidance on the last G steps.")
flags.DEFINE_string("schedule", "8:3,4:3,2:3,1:3", "MaGNeTS model schedule p:k,...")
flags.DEFINE_enum("model", "paper", ["paper", "exact"], "FLOPs model.")
flags.DEFINE_bool("cache", True, "MaGNeTS caches keys/values of unmasked tokens.")
flags.DEFINE_enum("refresh", "model_change", ["model_change", "every_step", "never"],
                  "When the MaGNeTS cache is refreshed.")
flags.DEFINE_string("mask_schedule", "cosine", "Masking schedule.")
flags.DEFINE_integer("codebook_size", 1024, "VQ codebook size.")
flags.DEFINE_integer("num_classes", 1000, "Class count (for parameter counts).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    arch = flops.ArchSpec.from_preset(flags.FLAGS.preset, flags.FLAGS.codebook_size)
    common = dict(num_tokens=flags.FLAGS.tokens, num_steps=flags.FLAGS.steps,
                  num_condition_tokens=flags.FLAGS.condition_tokens,
                  mask_schedule=flags.FLAGS.mask_schedule,
                  guidance_scale=1.0 if flags.FLAGS.cfg_last else 0.0,
                  guidance_steps=flags.FLAGS.cfg_last)
    try:
        ours = make_plan(model_schedule=flags.FLAGS.schedule, use_cache=flags.FLAGS.cache,
                         refresh=flags.FLAGS.refresh, **common)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    base = flops.uncached_baseline_plan(ours)
    if flags.FLAGS.model == "paper":
        base_steps = flops.paper_gflops_for_plan(arch, base)
        our_steps = flops.paper_gflops_for_plan(arch, ours)
    else:
        base_steps = flops.exact_gflops(arch, base)
        our_steps = flops.exact_gflops(arch, ours)

    print(f"preset={flags.FLAGS.preset} tokens={flags.FLAGS.tokens}+1 steps={ours.num_steps} "
          f"cfg_last={ours.guidance_steps} model={flags.FLAGS.model} (GFLOPs = 1e9 multiply-adds)")
    vocab = flags.FLAGS.codebook_size + flags.FLAGS.num_classes + 2
    for p in sorted(set(ours.factors) | {1}):
        n = flops.nested_param_count(arch, p, vocab, ours.sequence_length)
        print(f"  sub-model p={p}: {n / 1e6:.1f}M parameters")
    print(f"{'step':>4} {'p':>2} {'processed':>9} {'refresh':>7} {'guided':>6} "
          f"{'baseline':>9} {'magnets':>9}")
    for k in range(ours.num_steps):
        print(f"{k:4d} {ours.factors[k]:2d} {ours.num_processed[k]:9d} "
              f"{int(ours.refresh_steps[k]):7d} {int(ours.guided[k]):6d} "
              f"{base_steps[k]:9.1f} {our_steps[k]:9.1f}")
    b, m = sum(base_steps), sum(our_steps)
    print(f"baseline_gflops={b:.0f} magnets_gflops={m:.0f} ratio={b / m:.2f}")


if __name__ == "__main__":
    app.run(main)
