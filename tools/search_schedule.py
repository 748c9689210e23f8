r"""Searches the decode plan with the best FID under a compute budget: Pareto front + gin file.

python tools/search_schedule.py --model_dir=checkpoints/fashion_mnist/magnets_reference \
  --tokenizer_dir=checkpoints/fashion_mnist/tokenizer --reference=fashion_mnist:test \
  --budget_gflops=2.62 --guidance_scale=2.0 --batch_size=50 --output_dir=runs/search

Budget: exactly one of --budget_gflops (exact GFLOPs per image, guided steps' second
branch included), --budget_ratio (that many times fewer than the full model without cache)
or --budget_latency_ms (milliseconds per image at --batch_size, timed here).
Space: K in --num_steps_choices, every split of K over the model's factors (blocks from the
smallest sub-model to the full one; --order=any for every block order), each policy in
--refresh_choices and each G in --guidance_steps_choices. Of the plans within the budget,
those that cannot move a step to a wider sub-model without leaving it form the candidates;
--pool_size of them (seeded, stratified over K, refresh and G; the paper's plan always) go
into successive halving: --halving_rounds rounds, the last at --num_samples, each at half
the next one's n, round r with seed --seed + r; the best --keep fraction go on. The
paper's plan and MaskGIT++ are scored in every round for comparison.
Plan settings not searched (guidance scale, temperatures) come from their flags or
--gin_file/--gin_bindings, as in tools/evaluate.py.

Writes to --output_dir: evaluations.csv (every scored plan with n and seed), front.csv
(each round's Pareto front), front.png, pool.csv, search.json (setting, budget, rounds,
best plan, rank correlations, CPU and wall time per run) and the best plan as a gin file
(--best_gin, default OUTPUT_DIR/best_plan.gin) for tools/evaluate.py, sample.py and
export.py. Every evaluation is cached in OUTPUT_DIR/evaluations/: Ctrl-C (or
--max_evaluations) stops, the same command resumes.

Worker processes: every XLA-compiled decode loop leaves ~840 memory maps in its process
even after the decoder is freed, and Linux refuses new maps past `vm.max_map_count`
(65530 by default): one process that compiles ~70 plans dies in LLVM ("Cannot allocate
memory"). So by default this command only supervises: it runs the search in a child
process (this tool with --evaluations_per_process=0 --max_evaluations=E) again and again,
each resuming from the cache, until the search is done. --evaluations_per_process=0
searches in this process.
"""
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from magnets_tf import xla_cpu
from magnets_tf.cli import app, gin_flags, plan_flags, scoring_flags
from magnets_tf.decoding.schedule import REFRESH_POLICIES
from magnets_tf.utils import files

scoring_flags.define_scoring_flags(num_samples=2000)
plan_flags.define_plan_flags(exclude=("num_steps", "model_schedule", "use_cache", "refresh",
                                      "guidance_steps"))
gin_flags.define_gin_flags()
flags.DEFINE_float("budget_gflops", None, "Exact GFLOPs per image a plan may cost.")
flags.DEFINE_float("budget_ratio", None, "A plan must cost this many times fewer exact "
                   "GFLOPs than the full model (1:K, no cache; K and G of the paper plan).")
flags.DEFINE_float("budget_latency_ms", None, "Milliseconds per image a plan may take at "
                   "--batch_size, measured here (compilation excluded).")
flags.DEFINE_list("num_steps_choices", ["8", "10", "12", "14", "16"], "Step counts K.")
flags.DEFINE_list("guidance_steps_choices", ["0", "2", "4", "6"],
                  "Guided steps G (the last G of K).")
flags.DEFINE_list("refresh_choices", list(REFRESH_POLICIES), "Cache refresh policies "
                  "(every_step computes exactly what no cache does).")
flags.DEFINE_enum("order", "ascending", ["ascending", "any"], "Block order of the model "
                  "schedules: smallest sub-model first, or every order.")
flags.DEFINE_list("factors", None, "Nested factors to schedule (default: the model's).")
flags.DEFINE_integer("pool_size", 32, "Plans entering the first round.")
flags.DEFINE_integer("halving_rounds", 4, "Rounds of successive halving.")
flags.DEFINE_float("keep", 0.5, "Fraction of the plans that go on to the next round.")
flags.DEFINE_integer("latency_repeats", 3, "Timed decodes per plan (--budget_latency_ms).")
flags.DEFINE_integer("max_evaluations", None, "Stop after this many new evaluations "
                     "(rerun to resume).")
flags.DEFINE_integer("evaluations_per_process", 8, "New evaluations per worker process "
                     "(each compiled plan leaves ~840 memory maps behind: see the module "
                     "docstring); 0: search in this process.")
flags.DEFINE_string("best_gin", None, "Where the best plan's gin file goes "
                    "(default OUTPUT_DIR/best_plan.gin).")
FLAGS = flags.FLAGS


def _budget_flag():
    given = [n for n in ("budget_gflops", "budget_ratio", "budget_latency_ms")
             if FLAGS[n].value is not None]
    if len(given) != 1:
        raise app.UsageError("give exactly one of --budget_gflops, --budget_ratio and "
                             f"--budget_latency_ms (got {len(given)})")
    if not FLAGS[given[0]].value > 0:
        raise app.UsageError(f"--{given[0]} must be positive, got {FLAGS[given[0]].value}")
    return given[0]


def _check_search_flags():
    if FLAGS.pool_size < 1 or FLAGS.halving_rounds < 1:
        raise app.UsageError("--pool_size and --halving_rounds must be >= 1")
    if FLAGS.evaluations_per_process < 0:
        raise app.UsageError(f"--evaluations_per_process must be >= 0, got "
                             f"{FLAGS.evaluations_per_process}")
    if FLAGS.max_evaluations is not None and FLAGS.max_evaluations < 0:
        raise app.UsageError(f"--max_evaluations must be >= 0, got {FLAGS.max_evaluations}")
    if not 0 < FLAGS.keep <= 1:
        raise app.UsageError(f"--keep must be in (0, 1], got {FLAGS.keep}")
    unknown = sorted(set(FLAGS.refresh_choices) - set(REFRESH_POLICIES))
    if unknown:
        raise app.UsageError(f"--refresh_choices: unknown policies {unknown}; known: "
                             f"{REFRESH_POLICIES}")


SUPERVISING_FLAGS = ("evaluations_per_process", "max_evaluations")


def _command(argv):
    """The user's command (a worker's supervising flags left out)."""
    return " ".join(["python tools/search_schedule.py",
                     *app.argv_without(argv[1:], SUPERVISING_FLAGS)])


def worker_argv(argv, max_evaluations):
    """The command line of one worker: argv without the supervising flags, searching in
    its own process for at most `max_evaluations` new evaluations."""
    return app.argv_without(argv, SUPERVISING_FLAGS) + [
        "--evaluations_per_process=0", f"--max_evaluations={max_evaluations}"]


def supervise(argv, per_process, max_evaluations=None):
    """Runs the search in worker processes of at most `per_process` new evaluations each
    until it completes (exit 0), `max_evaluations` are spent (130) or a worker fails."""
    summary_path = Path(FLAGS.output_dir) / "search.json"
    spent, workers = 0, 0
    while True:
        budget = per_process if max_evaluations is None else min(per_process,
                                                                  max_evaluations - spent)
        if budget <= 0:
            print(f"stopped after {spent} new evaluations (--max_evaluations): rerun the same "
                  f"command to resume", flush=True)
            return 130
        workers += 1
        print(f"search worker {workers}: up to {budget} new evaluations", flush=True)
        try:
            code = subprocess.run([sys.executable, os.path.abspath(__file__),
                                   *worker_argv(argv[1:], budget)]).returncode
        except KeyboardInterrupt:  # the worker got the same Ctrl-C and wrote its cache
            return 130
        if code == 0:
            return 0
        new = _last_run_evaluations(summary_path)
        if code != 130 or new is None:
            raise app.RunFailure(f"search worker {workers} exited with status {code}; the "
                                 f"evaluations cached so far are kept: rerun to resume")
        if new == 0:
            raise app.RunFailure(f"search worker {workers} stopped without a new evaluation "
                                 f"(interrupted?); rerun to resume")
        spent += new


def _last_run_evaluations(summary_path):
    """New evaluations of the last run recorded in search.json (None: none recorded)."""
    import json

    try:
        runs = json.loads(summary_path.read_text()).get("runs", [])
    except (OSError, ValueError):
        return None
    return runs[-1].get("new_evaluations") if runs else None


def main():
    budget_flag = _budget_flag()
    _check_search_flags()
    if FLAGS.evaluations_per_process:
        files.check_writable_dir(FLAGS.output_dir, "--output_dir")
        sys.exit(supervise(sys.argv, FLAGS.evaluations_per_process, FLAGS.max_evaluations))
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    scoring_flags.reference()
    gin_flags.parse_gin_flags()
    from magnets_tf.evaluation import fid, flops, generation
    from magnets_tf.evaluation import schedule_search as search

    wall_start, cpu_start = time.time(), _cpu_seconds()
    load_before = list(os.getloadavg())
    out = Path(FLAGS.output_dir)
    model, decode_fn = generation.load_generator(FLAGS.model_dir, FLAGS.tokenizer_dir)
    arch = flops.ArchSpec.from_model(model)
    factors = app.int_list("factors") if FLAGS.factors else tuple(model.factors)
    missing = sorted(set(factors) - set(model.factors))
    if missing:
        raise app.UsageError(f"--factors {missing} are not the model's factors {model.factors}")

    def plan_fn(**settings):
        return plan_flags.decode_plan(model, **settings)

    paper = search.cost_candidate(search.paper_candidate(), plan_fn, arch)
    maskgit_pp = search.cost_candidate(search.maskgit_pp_candidate(), plan_fn, arch)
    anchors = {"paper": paper, "maskgit_pp": maskgit_pp}
    fixed = {name: getattr(paper.plan, name) for name in search.FIXED_SETTINGS}
    setting = dict(model_dir=FLAGS.model_dir,
                   model_digest=search.weights_digest(FLAGS.model_dir),
                   tokenizer_dir=FLAGS.tokenizer_dir,
                   tokenizer_digest=search.weights_digest(FLAGS.tokenizer_dir),
                   reference=FLAGS.reference, reference_n=FLAGS.reference_n,
                   batch_size=FLAGS.batch_size, jit_compile=FLAGS.jit_compile,
                   xla_flags=os.environ.get("XLA_FLAGS", ""), **fixed)
    cache = search.EvaluationCache(out / "evaluations", setting)

    latency_ms = {}
    if budget_flag == "budget_latency_ms":
        from magnets_tf.evaluation import benchmark

        def measure_ms(costed):
            seconds = benchmark.plan_latency(model, costed.plan, FLAGS.batch_size,
                                             FLAGS.latency_repeats, FLAGS.seed,
                                             FLAGS.jit_compile)
            return 1000.0 * seconds / FLAGS.batch_size

        _, latency_ms = search.filter_by_latency([paper, maskgit_pp], measure_ms, float("inf"),
                                                 cache, FLAGS.batch_size)
        budget_gflops = search.gflops_for_latency(FLAGS.budget_latency_ms,
                                                  latency_ms[paper.key], paper.gflops)
    elif budget_flag == "budget_ratio":
        budget_gflops = search.budget_from_ratio(maskgit_pp.gflops, FLAGS.budget_ratio)
    else:
        budget_gflops = FLAGS.budget_gflops

    try:
        space = search.search_space(plan_fn, arch, app.int_list("num_steps_choices"), factors,
                                    FLAGS.refresh_choices, app.int_list("guidance_steps_choices"),
                                    FLAGS.order, include=[paper.candidate])
        rounds = search.halving_rounds(FLAGS.num_samples, FLAGS.halving_rounds, FLAGS.seed)
    except ValueError as e:  # the flags describe no valid search
        raise app.UsageError(str(e)) from None
    feasible = [c for c in space if search.within_budget(c.gflops, budget_gflops)]
    if not feasible:
        cheapest = min(space, key=lambda c: c.gflops)
        raise app.UsageError(f"no plan in the search space costs <= {budget_gflops:.4f} "
                             f"GFLOPs/image; the cheapest, {cheapest.key}, costs "
                             f"{cheapest.gflops:.4f}")
    maximal = search.budget_maximal(space, plan_fn, arch, budget_gflops, factors, FLAGS.order)
    pool = search.select_pool(maximal, FLAGS.pool_size, FLAGS.seed,
                              include=[paper] if search.within_budget(paper.gflops,
                                                                      budget_gflops) else [])
    if budget_flag == "budget_latency_ms":
        pool, measured = search.filter_by_latency(pool, measure_ms, FLAGS.budget_latency_ms,
                                                  cache, FLAGS.batch_size)
        latency_ms.update(measured)
        if not pool:
            raise app.RunFailure(f"no pool plan decodes within {FLAGS.budget_latency_ms} ms/"
                                 f"image here (measured: {sorted(measured.values())[:3]} ...)")
    search.write_csv(out / "pool.csv", [dict(search.candidate_row(c),
                                             latency_ms_per_image=latency_ms.get(c.key, ""))
                                        for c in pool])
    print(f"budget {budget_gflops:.4f} exact GFLOPs/image ({budget_flag}); space "
          f"{len(space)} plans, {len(feasible)} within budget, {len(maximal)} budget-maximal, "
          f"pool {len(pool)}; rounds " + ", ".join(f"n={r.n} seed {r.seed}" for r in rounds)
          + f"; paper plan {paper.gflops:.4f} GF, MaskGIT++ {maskgit_pp.gflops:.4f} GF",
          flush=True)

    extractor = scoring_flags.feature_extractor()
    reference = scoring_flags.reference_statistics(extractor)

    def score(costed, r):
        metrics, _ = generation.evaluate_plan(
            model, costed.plan, decode_fn, extractor, reference, r.n, FLAGS.batch_size,
            seed=r.seed, jit_compile=FLAGS.jit_compile, progress=True)
        return dict(metrics, latency_ms_per_image=latency_ms.get(costed.key, ""))

    def write_tables(row=None):
        if row is not None:
            print(f"  n={row['n']} seed {row['seed']} {row['key']}: FID {row['fid']:.2f}  "
                  f"{row['gflops_exact']:.4f} GF/image", flush=True)
        rows = search.search_rows(cache, rounds, pool, anchors)
        search.write_csv(out / "evaluations.csv", rows)
        return rows

    history, new = search.run_search(pool, rounds, score, cache, FLAGS.keep,
                                     anchors.values(), FLAGS.max_evaluations, write_tables)
    rows = write_tables()
    search.write_csv(out / "front.csv", search.front_rows(rows))
    best = history[-1]["ranked"][0] if history else None
    search.plot_search(rows, out / "front.png", budget_gflops, best and best["key"])
    summary = _summary(out, setting, budget_flag, budget_gflops, space, feasible, maximal,
                       pool, rounds, anchors, history, rows, new,
                       dict(wall_seconds=time.time() - wall_start,
                            cpu_seconds=_cpu_seconds() - cpu_start,
                            load_average_before=load_before,
                            load_average_after=list(os.getloadavg())))
    if best is None:
        print(f"stopped after {new} new evaluations: rerun the same command to resume "
              f"({len(rows)} evaluations in {out / 'evaluations.csv'})")
        sys.exit(130)
    gin_path = Path(FLAGS.best_gin or out / "best_plan.gin")
    best_plan = next(c for c in pool if c.key == best["key"]).plan
    files.write_text(gin_path, search.plan_gin_text(best_plan, _gin_header(
        gin_path, best, summary, budget_gflops)))
    last = history[-1]
    print(f"best plan under {budget_gflops:.4f} GF: {best['key']}  FID {best['fid']:.2f} at "
          f"n={best['n']} (seed {best['seed']}), {best['gflops_exact']:.4f} GF/image; paper "
          f"plan FID {last['anchors'][paper.key]['fid']:.2f}, MaskGIT++ "
          f"{last['anchors'][maskgit_pp.key]['fid']:.2f} in the same round")
    print(f"wrote {gin_path}, {out / 'front.png'}, {out / 'evaluations.csv'}, "
          f"{out / 'front.csv'}, {out / 'search.json'}")


def _cpu_seconds():
    """CPU seconds of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _summary(out, setting, budget_flag, budget_gflops, space, feasible, maximal, pool,
             rounds, anchors, history, rows, new, run):
    """search.json: what was searched, what was found, and every run's cost."""
    from magnets_tf.evaluation import schedule_search as search

    path = out / "search.json"
    previous = []
    if path.exists():
        import json
        previous = json.loads(path.read_text()).get("runs", [])
    summary = dict(
        command=_command(sys.argv), setting=setting,
        budget=dict(flag=budget_flag, value=FLAGS[budget_flag].value,
                    gflops=budget_gflops, tolerance=search.BUDGET_TOLERANCE),
        space=dict(plans=len(space), within_budget=len(feasible), budget_maximal=len(maximal),
                   num_steps=app.int_list("num_steps_choices"), refresh=list(FLAGS.refresh_choices),
                   guidance_steps=app.int_list("guidance_steps_choices"), order=FLAGS.order),
        pool=[c.key for c in pool], keep=FLAGS.keep,
        rounds=[dict(index=r.index, n=r.n, seed=r.seed) for r in rounds],
        anchors={label: dict(key=a.key, gflops_exact=a.gflops) for label, a in anchors.items()},
        rank_correlation_with_last_round=search.rank_correlations(rows, rounds[-1].index),
        complete=history is not None,
        runs=previous + [dict(run, new_evaluations=new)])
    if history:
        summary["per_round"] = [
            dict(n=h["round"].n, seed=h["round"].seed, plans=len(h["ranked"]),
                 best=dict(key=h["ranked"][0]["key"], fid=h["ranked"][0]["fid"],
                           gflops_exact=h["ranked"][0]["gflops_exact"]),
                 anchors={label: h["anchors"][a.key]["fid"] for label, a in anchors.items()})
            for h in history]
        summary["best"] = {k: history[-1]["ranked"][0][k] for k in
                           ("key", "fid", "n", "seed", "gflops_exact", "gflops_paper")}
    summary["total_cpu_seconds"] = sum(r["cpu_seconds"] for r in summary["runs"])
    summary["total_wall_seconds"] = sum(r["wall_seconds"] for r in summary["runs"])
    files.write_json(path, summary)
    return summary


def _gin_header(gin_path, best, summary, budget_gflops):
    """Comment lines: the command that uses the file first, then how it was found."""
    common = f"--model_dir={FLAGS.model_dir} --tokenizer_dir={FLAGS.tokenizer_dir}"
    stem = gin_path.stem
    last = summary["per_round"][-1]
    return [
        f"python tools/evaluate.py {common} --reference={FLAGS.reference} "
        f"--num_samples={FLAGS.num_samples} --batch_size={FLAGS.batch_size} "
        f"--gin_file={gin_path} --output_dir=runs/{stem}_eval",
        f"The decode plan with the best FID under {budget_gflops:.4f} exact GFLOPs/image, "
        f"found by",
        f"  {summary['command']}",
        f"{best['key']}: FID {best['fid']:.2f} at n={best['n']} (seed {best['seed']}), "
        f"{best['gflops_exact']:.4f} GF/image; paper plan {last['anchors']['paper']:.2f}, "
        f"MaskGIT++ {last['anchors']['maskgit_pp']:.2f} in that round.",
        "Also:",
        f"  python tools/sample.py {common} --class_ids=0,1,2,3,4,5,6,7,8,9 "
        f"--gin_file={gin_path} --output=runs/{stem}_samples.png",
        f"  python tools/export.py --transformer_dir={FLAGS.model_dir} "
        f"--tokenizer_dir={FLAGS.tokenizer_dir} --gin_file={gin_path} "
        f"--export_base=runs/serving/{stem}",
        "Flags given on those command lines override these bindings.",
    ]


def run():
    app.run(main)


if __name__ == "__main__":
    run()
