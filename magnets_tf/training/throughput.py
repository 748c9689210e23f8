"""Training throughput, measured side by side in one process: steps/s of one train
function called with steps_per_loop 1 vs N, of variants of a config (their own train
functions), and the token-shard input pipeline's examples/s against what the train step
consumes.

All loop sizes share one `distribute.make_train_function` (num_steps is a tensor, one
trace), so they differ only in what steps_per_loop changes: host syncs, the Python
iteration and the `float()` of every log, as in `loop.run`. Repeats are interleaved
(the order alternates) so machine noise hits every variant; compilation and warm-up are
excluded; medians and the spread (min, max) are reported.
"""
import statistics
import time

import keras

from magnets_tf.training import distribute


def summarize(values):
    """{"median", "min", "max", "values"} of a list of rates."""
    return dict(median=statistics.median(values), min=min(values), max=max(values),
                values=list(values))


def run_steps(train_function, iterator, steps, steps_per_loop=1):
    """`steps` steps in loops of steps_per_loop (a shorter last loop), syncing the host
    at every boundary as `loop.run` does; returns the seconds taken."""
    started = time.perf_counter()
    done = 0
    while done < steps:
        count = min(steps_per_loop, steps - done)
        {k: float(v) for k, v in train_function(iterator, count).items()}
        done += count
    return time.perf_counter() - started


def parse_variants(specs):
    """[(name, [gin binding, ...])] of "NAME:BINDING;BINDING..." specs (the variants of a
    config that scripts/measure_train_variants.py times); ValueError names a bad one."""
    variants = []
    for spec in specs:
        name, colon, bindings = spec.partition(":")
        name = name.strip()
        if not colon or not name:
            raise ValueError(f"{spec!r}: expected NAME:BINDING;BINDING... "
                             f"(e.g. nodropout:build_transformer.dropout=0.0)")
        if name in (n for n, _ in variants):
            raise ValueError(f"the name {name!r} is given twice")
        variants.append((name, [b.strip() for b in bindings.split(";") if b.strip()]))
    if not variants:
        raise ValueError("no variant given")
    return variants


def time_interleaved(runners, repeats, on_round=None):
    """{name: summary of rates} of `runners` ({name: () -> one rate}) over `repeats`
    rounds, each runner once per round, the order alternating. on_round(round, {name:
    rates so far}) is called after every round (progress lines)."""
    names = list(runners)
    rates = {name: [] for name in names}
    for repeat in range(int(repeats)):
        for name in (names if repeat % 2 == 0 else names[::-1]):
            rates[name].append(runners[name]())
        if on_round:
            on_round(repeat, rates)
    return {name: summarize(values) for name, values in rates.items()}


def time_steps_per_loop(train_function, iterator, steps, loop_sizes, repeats):
    """{steps_per_loop: summary of steps/s} over `repeats` interleaved runs of `steps`
    steps each (one warm-up call per loop size first)."""
    loop_sizes = [int(n) for n in loop_sizes]
    for size in loop_sizes:
        run_steps(train_function, iterator, size, size)
    return time_interleaved(
        {size: (lambda size=size: steps / run_steps(train_function, iterator, steps, size))
         for size in loop_sizes}, repeats)


def time_pipeline(dataset_fn, batches, repeats):
    """Summary of the examples/s of `dataset_fn()` (a fresh pipeline each repeat, first
    batch excluded: it fills the shuffle buffer), read alone on the host."""
    rates = []
    for _ in range(int(repeats)):
        iterator = iter(dataset_fn())
        first = next(iterator)
        batch_size = int(first["tokens"].shape[0])
        started = time.perf_counter()
        for _ in range(int(batches)):
            next(iterator)["tokens"].numpy()
        rates.append(batches * batch_size / (time.perf_counter() - started))
    return summarize(rates)


def build_train_function(task, strategy, train_steps, jit_compile=False):
    """Builds `task` as `loop.run` does; returns (train_function, iterator) over its
    data from step 0."""
    keras.utils.set_random_seed(task.seed)
    with strategy.scope():
        task.build(strategy, train_steps)
    iterator = iter(distribute.distribute_dataset(strategy,
                                                  lambda context: task.dataset(context, 0)))
    return distribute.make_train_function(task.train_step, strategy, jit_compile), iterator


def measure(task, strategy, steps=20, loop_sizes=(1, 10), repeats=3, pipeline_batches=50,
            jit_compile=False):
    """The report of docs/performance.md for one task (a `TransformerTask` on token
    shards): steps/s per loop size fed by the real pipeline, and the pipeline's
    examples/s read alone against the examples/s the largest loop consumes."""
    train_function, iterator = build_train_function(task, strategy, 10 ** 6, jit_compile)
    loops = time_steps_per_loop(train_function, iterator, steps, loop_sizes, repeats)
    largest = max(int(n) for n in loop_sizes)
    batch = task.global_batch_size
    pipeline = time_pipeline(lambda: task.tokens.dataset(batch, task.seed), pipeline_batches,
                             repeats)
    consumed = loops[largest]["median"] * batch
    return dict(global_batch_size=batch, steps=steps, repeats=repeats,
                jit_compile=bool(jit_compile),
                steps_per_second={str(n): s for n, s in loops.items()},
                pipeline_examples_per_second=pipeline,
                step_examples_per_second=consumed,
                pipeline_headroom=pipeline["median"] / consumed)
