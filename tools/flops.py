r"""GFLOPs of MaskGIT++ (full model, no cache) vs a MaGNeTS decode plan.

python tools/flops.py --preset=L --num_steps=12 --guidance_steps=4 --model=paper

The MaGNeTS plan defaults to the paper's schedule (decoding.schedule.DEFAULT_MODEL_SCHEDULE).
First (unless --nopaper_rows) the paper's published GFLOPs (Table 1: ImageNet; Table 2:
UCF101 class-conditional video and K600 frame prediction) next to the same settings
counted with the paper's formula here.
"""
from absl import flags

from magnets_tf.cli import app, plan_flags
from magnets_tf.evaluation import flops
from magnets_tf.models.presets import PRESETS

flags.DEFINE_enum("preset", "L", sorted(PRESETS), "Architecture preset.")
flags.DEFINE_integer("tokens", 256, "Grid tokens N (the class token is added).")
flags.DEFINE_integer("condition_tokens", 0, "Leading grid tokens given as condition.")
flags.DEFINE_enum("model", "paper", ["paper", "exact"], "FLOPs model.")
flags.DEFINE_integer("codebook_size", 1024, "VQ codebook size.")
flags.DEFINE_integer("num_classes", 1000, "Class count (for parameter counts).")
flags.DEFINE_bool("paper_rows", True, "Print the paper's Table 1 and 2 GFLOPs next to ours.")
# Any positive scale: guidance costs the same whatever its weight.
plan_flags.define_plan_flags(guidance_scale=1.0)
FLAGS = flags.FLAGS


def print_paper_rows():
    """The paper's published GFLOPs and ours for the same settings (paper model)."""
    print("paper Tables 1 and 2: published GFLOPs vs this formula (12 steps unless noted; "
          "video = 4x16x16 tokens, K600 = 512 condition tokens)")
    print(f"{'table':>5} {'setting':<32} {'preset':>6} {'schedule':>16} {'cache':>5} "
          f"{'ours':>6} {'paper':>6}")
    for row in flops.PAPER_ROWS:
        print(f"{row.table:5d} {row.name:<32} {row.preset:>6} {row.model_schedule:>16} "
              f"{int(row.use_cache):5d} {flops.paper_row_gflops(row):6.0f} {row.published:>6}")
    rows = {row.name: flops.paper_row_gflops(row) for row in flops.PAPER_ROWS}
    ratio = rows["K600 MAGVIT-L g2"] / rows["K600 MaGNeTS g2"]
    print(f"K600 g2 MAGVIT-L / MaGNeTS = {ratio:.2f} (paper: ~3.7x)\n")


def main():
    if FLAGS.paper_rows:
        print_paper_rows()
    arch = flops.ArchSpec.from_preset(FLAGS.preset, FLAGS.codebook_size)
    ours = plan_flags.decode_plan(num_tokens=FLAGS.tokens,
                                  num_condition_tokens=FLAGS.condition_tokens)
    base = flops.uncached_baseline_plan(ours)
    count = flops.paper_gflops_for_plan if FLAGS.model == "paper" else flops.exact_gflops
    base_steps, our_steps = count(arch, base), count(arch, ours)

    print(f"preset={FLAGS.preset} tokens={FLAGS.tokens}+1 steps={ours.num_steps} "
          f"cfg_last={ours.guidance_steps} model={FLAGS.model} (GFLOPs = 1e9 multiply-adds)")
    vocab = FLAGS.codebook_size + FLAGS.num_classes + 2
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


def run():
    app.run(main)


if __name__ == "__main__":
    run()
