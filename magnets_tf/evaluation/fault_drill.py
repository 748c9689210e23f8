"""The fault drill: injects each fault of issue #24 into real tiny runs of the tools and
checks that it ends in one clear `error:` line or a safe recovery, with nothing lost.

A `Drill` trains one tiny base model (tools/train.py, 1-layer tiny preset, 4 steps on
random 2x2 token shards, a checkpoint every step); every fault works on a copy of it.
A fault returns an `Outcome`: exit code, the first error line, whether it survived (the
expected code and message, one error line, no traceback) and `data_lost`: how many files
written before the fault are gone or changed afterwards (`snapshot` / `count_lost`,
content-addressed so files a recovery moves aside still count as kept).

Disk-full and read-only cases mount a small tmpfs, which needs root (and the mount
capability); elsewhere they are reported as skipped with the reason. `format_report`
prints the table and the last line `faults=N survived=N data_lost=0`.
"""
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GIN = os.path.join(ROOT, "gin", "fashion_mnist", "magnets_tiny.gin")
REFERENCE = os.path.join(ROOT, "checkpoints", "fashion_mnist")
# The committed reference transformer the export/sample drills load.
REFERENCE_MODEL = os.path.join(REFERENCE, "magnets_reference")
BASE_STEPS = 4
# Not a run's data: rewritten by every run on purpose (`checkpoint` is the state file
# listing the checkpoints; train_summary.json keeps earlier runs under "history"), and
# TensorBoard event files (every run appends its own; in model_dir, train/ and eval/).
VOLATILE = ("run.lock", "train_summary.json", "checkpoint")
EVENT_FILE_PREFIX = "events.out.tfevents."


class Skipped(Exception):
    """A fault that cannot be injected here (e.g. tmpfs needs root)."""


@dataclasses.dataclass
class Outcome:
    """One row of the drill's table."""
    fault: str
    expected: str
    code: object = "-"
    observed: str = ""
    survived: object = False  # True / False / None (skipped)
    data_lost: int = 0
    seconds: float = 0.0


def error_lines(stderr):
    """The `error: ...` lines of a tool's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_clear_error(result, codes, pattern):
    """(ok, first error line): the run ended with an exit code in `codes`, exactly one
    `error:` line matching `pattern` (a regex) and no traceback."""
    lines = error_lines(result.stderr)
    first = lines[0] if lines else (result.stderr.strip().splitlines() or [""])[-1]
    ok = (result.returncode in codes and len(lines) == 1 and "Traceback" not in result.stderr
          and re.search(pattern, lines[0]) is not None)
    return ok, first


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot(directory, everything=False):
    """{relative path: sha256} of the files under `directory` that hold a run's data
    (all files with `everything`)."""
    found = {}
    for root, dirs, names in os.walk(directory):
        for name in names:
            if not everything and (name in VOLATILE or name.startswith(EVENT_FILE_PREFIX)):
                continue
            path = os.path.join(root, name)
            found[os.path.relpath(path, directory)] = _digest(path)
    return found


def count_lost(before, directory, only=None):
    """How many files of the snapshot `before` (paths starting with `only`, if given)
    have no identical copy left anywhere under `directory` (set aside or archived
    copies count as kept)."""
    now = set(snapshot(directory, everything=True).values()) if os.path.isdir(directory) \
        else set()
    return sum(1 for path, digest in before.items()
               if (only is None or path.startswith(only)) and digest not in now)


def flip_bytes(path, count=40, offset=None):
    """Inverts `count` bytes of `path` in place (same size), from `offset` (middle)."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        start = len(data) // 2 if offset is None else offset
        for i in range(start, min(start + count, len(data))):
            data[i] ^= 0xFF
        f.seek(0)
        f.write(bytes(data))


def truncate_half(path):
    """Cuts `path` to half its size (a write killed half-way)."""
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def format_report(outcomes, width=150):
    """The table (one row per fault; observed lines cut to `width` characters) and the
    last line `faults=N survived=N data_lost=K` (plus `skipped=K` when faults could not
    be injected here)."""
    header = ("fault", "expected", "rc", "observed (first error line)", "survived",
              "data_lost")
    rows = [header]
    for o in outcomes:
        survived = "skipped" if o.survived is None else ("yes" if o.survived else "NO")
        observed = o.observed if len(o.observed) <= width else o.observed[:width - 3] + "..."
        rows.append((o.fault, o.expected, str(o.code), observed, survived,
                     str(o.data_lost)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + " | " + row[-1]
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    ran = [o for o in outcomes if o.survived is not None]
    last = (f"faults={len(ran)} survived={sum(1 for o in ran if o.survived)} "
            f"data_lost={sum(o.data_lost for o in outcomes)}")
    skipped = len(outcomes) - len(ran)
    return "\n".join(lines + [last + (f" skipped={skipped}" if skipped else "")])


def passed(outcomes):
    """True if every fault that ran survived and nothing was lost."""
    return all(o.survived is not False and o.data_lost == 0 for o in outcomes)


def can_mount():
    """None if a tmpfs can be mounted here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "not root: tmpfs disk-full/read-only cases need `mount`"
    probe = tempfile.mkdtemp(prefix="drill-mount-")
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
                                capture_output=True, text=True)
        if result.returncode:
            return f"mount failed: {result.stderr.strip()}"
        subprocess.run(["umount", probe], check=True)
        return None
    except OSError as error:
        return f"mount failed: {error}"
    finally:
        os.rmdir(probe)


@contextlib.contextmanager
def tmpfs(path, size_bytes):
    """A tmpfs of `size_bytes` mounted at `path` for the block (needs root)."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size_bytes)}", "tmpfs", path],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


def fill_disk(directory, leave_bytes):
    """Writes a filler file so that about `leave_bytes` stay free on `directory`'s disk."""
    free = shutil.disk_usage(directory).free
    with open(os.path.join(directory, "filler.bin"), "wb") as f:
        chunk = b"\0" * (1 << 20)
        remaining = max(0, free - int(leave_bytes))
        while remaining > 0:
            f.write(chunk[:min(len(chunk), remaining)])
            remaining -= len(chunk)


def directory_bytes(directory):
    """Total size of the files under `directory`."""
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(directory) for name in names)


class Drill:
    """Tiny real runs in `work_dir` with faults injected (see the module docstring)."""

    def __init__(self, work_dir, log=None, timeout=1800):
        import tqdm
        self.work_dir = os.path.abspath(work_dir)
        self.log = log or tqdm.tqdm.write  # Lines above the progress bar.
        self.timeout = timeout
        self.tokens_dir = os.path.join(self.work_dir, "tokens")
        self.base_dir = os.path.join(self.work_dir, "base")
        self.mount_problem = can_mount()

    # -- runs -------------------------------------------------------------------------
    def env(self):
        path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
        return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def tool(self, name, *args):
        return [sys.executable, os.path.join(ROOT, "tools", f"{name}.py"), *map(str, args)]

    def train_command(self, model_dir, steps, *bindings, tokens_dir=None):
        bindings = [f"TOKENS_DIR='{tokens_dir or self.tokens_dir}'",
                    "build_transformer.num_layers=1", "train.batch_size=8",
                    "train.checkpoint_every=1", "train.keep_checkpoints=10",
                    "train.log_every=5", "train.sample_every=0",
                    "make_optimizer.warmup_steps=0", *bindings]
        return self.tool("train", f"--gin_file={GIN}", f"--model_dir={model_dir}",
                         f"--train_steps={steps}", "--noprogress",
                         *[f"--gin_bindings={b}" for b in bindings])

    def run(self, command):
        return subprocess.run(command, env=self.env(), capture_output=True, text=True,
                              timeout=self.timeout, cwd=ROOT)

    def train(self, model_dir, steps, *bindings, tokens_dir=None):
        return self.run(self.train_command(model_dir, steps, *bindings,
                                           tokens_dir=tokens_dir))

    def prepare(self):
        """Writes the token shards and trains the base model every fault starts from."""
        if not os.path.isdir(self.tokens_dir):
            import numpy as np

            from magnets_tf.data import tokenized
            rng = np.random.default_rng(0)
            tokenized.write_token_shards(
                self.tokens_dir, [(rng.integers(0, 16, (256, 2, 2)), rng.integers(0, 10, 256))],
                dict(codebook_size=16, grid=[2, 2], num_classes=10, tokenizer=""),
                num_shards=2)
        if not os.path.exists(os.path.join(self.base_dir, "transformer.weights.h5")):
            result = self.train(self.base_dir, BASE_STEPS)
            if result.returncode:
                raise RuntimeError(f"the base run of the drill failed:\n{result.stderr[-3000:]}")

    def copy_base(self, name, parent=None):
        target = os.path.join(parent or self.work_dir, name)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.base_dir, target)
        return target

    def newest_checkpoint(self, model_dir):
        steps = [int(m.group(1)) for name in os.listdir(os.path.join(model_dir, "checkpoints"))
                 if (m := re.match(r"ckpt-(\d+)\.index$", name))]
        return os.path.join(model_dir, "checkpoints", f"ckpt-{max(steps)}")

    # -- the faults -------------------------------------------------------------------
    def faults(self):
        """[(fault, expected behaviour, method, needs the base model)] in drill order."""
        return [
            ("learning rate 1e30, checkpoint every step",
             "diverged: stops before saving, names ckpt-4; restart resumes there",
             self.exploding_learning_rate, True),
            ("two train.py on one model_dir", "second refused: in use by pid",
             self.two_runs, True),
            ("SIGKILL leftovers + stale lock", "swept, lock taken over, run resumes",
             self.leftovers_and_stale_lock, True),
            ("resume with factors=(1,)", "refused, differences listed, nothing rewritten",
             self.config_drift, True),
            ("checkpoint of another preset", "refused in one line, no TF noise",
             self.other_preset, True),
            ("newest checkpoint truncated", "falls back to ckpt-3, names the skipped one",
             self.truncated_checkpoint, True),
            ("shard with 40 flipped bytes", "error names the shard", self.flipped_shard,
             True),
            ("train.batch_size='abc'", "error names train.batch_size", self.bad_gin_value,
             True),
            ("model_dir is a file", "error before work", self.model_dir_is_file, False),
            ("export base is a file", "error before work", self.export_base_is_file, False),
            ("PNG output inside a file", "error before work", self.png_inside_file, False),
            ("disk full during a checkpoint", "no space left, old files intact",
             self.disk_full_checkpoint, True),
            ("disk full during the .h5 write", "no space left (no segfault), old .h5 intact",
             self.disk_full_weights, True),
            ("read-only model_dir", "read-only file system, one line", self.read_only, True),
            ("killed export's temp dir + wrong serving dtypes",
             "swept; float/int64/string class ids rejected", self.serving, False),
        ]

    def exploding_learning_rate(self):
        model_dir = self.copy_base("lr")
        before = snapshot(model_dir)
        result = self.train(model_dir, 8, "make_optimizer.learning_rate=1e30")
        ok, line = one_clear_error(result, (1,), r"diverged at step 5.*ckpt-4\b")
        lost = count_lost(before, model_dir)
        exploded = os.path.exists(os.path.join(model_dir, "checkpoints", "ckpt-5.index"))
        restart = self.train(model_dir, 6)
        resumed = restart.returncode == 0 and "ckpt-4 at step 4" in restart.stdout
        return dict(code=result.returncode, observed=line, data_lost=lost,
                    survived=ok and not exploded and resumed)

    def two_runs(self):
        model_dir = self.copy_base("two")
        self._first = subprocess.Popen(
            self.train_command(model_dir, 100000, "train.checkpoint_every=100000"),
            env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        lock = os.path.join(model_dir, "run.lock")
        deadline = time.time() + self.timeout
        while time.time() < deadline and self._first.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                with open(lock) as f:
                    owner = json.load(f)
                if owner.get("pid") == self._first.pid and not owner.get("released"):
                    break
            time.sleep(0.2)
        before = snapshot(model_dir)
        result = self.train(model_dir, 6)
        ok, line = one_clear_error(result, (1,), rf"in use by pid {self._first.pid}\b")
        return dict(code=result.returncode, observed=line, survived=ok,
                    data_lost=count_lost(before, model_dir))

    def leftovers_and_stale_lock(self):
        model_dir = os.path.join(self.work_dir, "two")
        first = getattr(self, "_first", None)
        if first is None:
            raise Skipped("needs the run of the previous fault")
        first.send_signal(signal.SIGKILL)
        first.wait()
        debris = [os.path.join(model_dir, ".transformer.weights.h5.tmp-x1.weights.h5"),
                  os.path.join(model_dir, "checkpoints", "ckpt-9_temp", "part-00000"),
                  os.path.join(model_dir, ".operative_config.gin.tmp-x2")]
        for path in debris:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(b"half-written")
        before = snapshot(model_dir)
        result = self.train(model_dir, 6)
        swept = not any(os.path.exists(p) for p in debris)
        took_over = "took over the stale lock" in result.stderr and str(first.pid) in \
            result.stderr
        ok = result.returncode == 0 and swept and took_over and \
            result.stderr.count("removed debris") == len(debris)
        observed = next((l for l in result.stderr.splitlines() if "took over" in l), "")
        observed = re.sub(r"^.*took over", "took over", observed)
        return dict(code=result.returncode, observed=observed[:90], survived=ok,
                    data_lost=count_lost({k: v for k, v in before.items()
                                          if "tmp-" not in k and "_temp" not in k},
                                         model_dir, only="checkpoints"))

    def _refused_resume(self, name, pattern, *bindings):
        model_dir = self.copy_base(name)
        stored = {n: _digest(os.path.join(model_dir, n)) for n in
                  ("transformer_config.json", "operative_config.gin", "train_summary.json")}
        before = snapshot(model_dir)
        result = self.train(model_dir, 6, *bindings)
        ok, line = one_clear_error(result, (1,), pattern)
        unchanged = all(_digest(os.path.join(model_dir, n)) == d for n, d in stored.items())
        noise = [l for l in result.stderr.splitlines() if l.strip() and
                 not l.startswith("error:")]
        return dict(code=result.returncode, observed=line,
                    survived=ok and unchanged and not noise,
                    data_lost=count_lost(before, model_dir))

    def config_drift(self):
        return self._refused_resume("factors", r"another configuration.*factors.*"
                                               r"\[1, 2, 4, 8\] -> \[1\]",
                                    "build_transformer.factors=(1,)")

    def other_preset(self):
        return self._refused_resume("preset", r"another configuration.*preset",
                                    "build_transformer.preset='mini'")

    def truncated_checkpoint(self):
        model_dir = self.copy_base("truncated")
        newest = self.newest_checkpoint(model_dir)
        truncate_half(newest + ".data-00000-of-00001")
        before = snapshot(model_dir)
        result = self.train(model_dir, 6)
        warned = [l for l in result.stderr.splitlines() if "skipped checkpoint" in l]
        ok = (result.returncode == 0 and len(warned) == 1 and "ckpt-4" in warned[0]
              and "ckpt-3 at step 3" in result.stdout)
        observed = re.sub(r"^.*?skipped", "warning: skipped", warned[0]) if warned else \
            (error_lines(result.stderr) or [""])[0]
        return dict(code=result.returncode, observed=observed[:110], survived=ok,
                    data_lost=count_lost(before, model_dir, only="checkpoints"))

    def flipped_shard(self):
        tokens = os.path.join(self.work_dir, "flipped_tokens")
        shutil.rmtree(tokens, ignore_errors=True)
        shutil.copytree(self.tokens_dir, tokens)
        shard = sorted(n for n in os.listdir(tokens) if n.endswith(".tfrecord"))[0]
        flip_bytes(os.path.join(tokens, shard), 40)
        result = self.train(os.path.join(self.work_dir, "flipped"), 4, tokens_dir=tokens)
        ok, line = one_clear_error(result, (1,), rf"{re.escape(shard)} is corrupted")
        return dict(code=result.returncode, observed=line, survived=ok)

    def bad_gin_value(self):
        result = self.train(os.path.join(self.work_dir, "abc"), 4, "train.batch_size='abc'")
        ok, line = one_clear_error(result, (1, 2), r"train\.batch_size must be an integer")
        return dict(code=result.returncode, observed=line, survived=ok)

    def _output_is_a_file(self, name, command, pattern):
        """Runs `command(path)` where `path` is a regular file used as an output."""
        path = os.path.join(self.work_dir, name)
        with open(path, "w") as f:
            f.write("a file, not a directory\n")
        result = self.run(command(path))
        ok, line = one_clear_error(result, (1, 2), pattern)
        return dict(code=result.returncode, observed=line, survived=ok)

    def model_dir_is_file(self):
        return self._output_is_a_file("model_dir_file", lambda path: self.train_command(
            path, 4), r"model_dir.* is a file")

    def export_base_is_file(self):
        return self._output_is_a_file("export_base_file", lambda path: self.tool(
            "export", f"--export_base={path}", *self._reference_model_flags()),
            r"export_base.* is a file")

    def png_inside_file(self):
        return self._output_is_a_file("png_parent_file", lambda path: self.tool(
            "sample", f"--model_dir={REFERENCE_MODEL}",
            f"--tokenizer_dir={os.path.join(REFERENCE, 'tokenizer')}",
            f"--output={os.path.join(path, 'grid.png')}"), r"--output .* is inside .*, a file")

    def _reference_model_flags(self):
        return (f"--transformer_dir={REFERENCE_MODEL}",
                f"--tokenizer_dir={os.path.join(REFERENCE, 'tokenizer')}")

    def _on_full_disk(self, name, leave_bytes):
        if self.mount_problem:
            raise Skipped(self.mount_problem)
        mount = os.path.join(self.work_dir, f"mnt_{name}")
        base_bytes = directory_bytes(self.base_dir)
        with tmpfs(mount, base_bytes + (8 << 20)):
            model_dir = self.copy_base("model", parent=mount)
            before = snapshot(model_dir)
            fill_disk(mount, leave_bytes(model_dir))
            result = self.train(model_dir, 6)
            lost = count_lost(before, model_dir)
        ok, line = one_clear_error(result, (1,), r"no space left on the device")
        return dict(code=result.returncode, observed=line, survived=ok, data_lost=lost)

    def _sizes(self, model_dir):
        newest = self.newest_checkpoint(model_dir)
        checkpoint = sum(os.path.getsize(newest + ext)
                         for ext in (".index", ".data-00000-of-00001"))
        return checkpoint, os.path.getsize(os.path.join(model_dir, "transformer.weights.h5"))

    def disk_full_checkpoint(self):
        return self._on_full_disk("checkpoint", lambda d: self._sizes(d)[0] // 2)

    def disk_full_weights(self):
        return self._on_full_disk("weights", lambda d: sum(self._sizes(d)) - self._sizes(d)[1]
                                  // 2 + (64 << 10))

    def read_only(self):
        if self.mount_problem:
            raise Skipped(self.mount_problem)
        mount = os.path.join(self.work_dir, "mnt_ro")
        with tmpfs(mount, directory_bytes(self.base_dir) + (8 << 20)):
            model_dir = self.copy_base("model", parent=mount)
            before = snapshot(model_dir)
            subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
            result = self.train(model_dir, 6)
            lost = count_lost(before, model_dir)
        ok, line = one_clear_error(result, (1,), r"read-only file system")
        return dict(code=result.returncode, observed=line, survived=ok, data_lost=lost)

    def serving(self):
        """Exports a tiny random model in-process over the temp dir of a killed export,
        then sends the model server's way (`ServerSession`) what the Python session
        would cast: 3.7, int64 2**32+3 and "3" as class ids."""
        import keras
        import numpy as np
        import tensorflow as tf

        from magnets_tf.decoding.schedule import make_plan
        from magnets_tf.export import saved_model
        from magnets_tf.export.server_path import ServerSession
        from magnets_tf.models.presets import build_transformer
        from magnets_tf.models.vqgan import build_vqgan

        base = os.path.join(self.work_dir, "export")
        shutil.rmtree(base, ignore_errors=True)
        killed = os.path.join(base, f".tmp-export-pid999999999@{socket.gethostname()}-x")
        os.makedirs(killed)
        with open(os.path.join(killed, "saved_model.pb"), "wb") as f:
            f.write(b"half")
        keras.utils.set_random_seed(0)
        tokenizer = build_vqgan("tiny_test", image_shape=(8, 8, 1))
        h, w = tokenizer.grid_shape
        transformer = build_transformer("tiny", codebook_size=tokenizer.codebook_size,
                                        num_classes=10, num_tokens=h * w, num_layers=1)
        plan = make_plan(h * w, num_steps=2, model_schedule="2:1,1:1")
        version = saved_model.export_saved_model(transformer, tokenizer, plan, base,
                                                  jit_compile=False, warmup=False)
        swept = sorted(os.listdir(base)) == ["1"]
        seed = np.array([1, 2], np.int32)
        rejected, first = [], ""
        with ServerSession(version) as session:
            exact = session.run("serving_default", dict(class_ids=np.array([3], np.int32),
                                                        seed=seed))
            for loose in (np.array([3.7]), np.array([2 ** 32 + 3], np.int64),
                          np.array([b"3"])):
                try:
                    session.run("serving_default", dict(class_ids=loose, seed=seed))
                except tf.errors.InvalidArgumentError as error:
                    rejected.append(loose.dtype)
                    first = first or error.message.strip().splitlines()[0]
        ok = swept and len(rejected) == 3 and exact["tokens"].shape == (1, h, w)
        return dict(code="-", observed=f"InvalidArgument x{len(rejected)}: {first}"[:110],
                    survived=ok)

    # -- driver -----------------------------------------------------------------------
    def run_all(self, only=None):
        """Runs every fault (or those whose name contains one of `only`); returns the
        outcomes. A fault's unexpected exception is a row that did not survive."""
        import tqdm
        faults = [f for f in self.faults()
                  if not only or any(o.lower() in f[0].lower() for o in only)]
        if any(needs_base for *_, needs_base in faults):
            self.log("training the base model of the drill ...")
            self.prepare()
        outcomes = []
        try:
            for name, expected, method, _ in tqdm.tqdm(faults, desc="faults", unit="fault"):
                started = time.time()
                try:
                    row = Outcome(name, expected, **method())
                except Skipped as reason:
                    row = Outcome(name, expected, observed=f"skipped: {reason}", survived=None)
                except Exception as error:  # noqa: BLE001 (a drill failure is a row)
                    row = Outcome(name, expected, observed=f"drill failed: {error!r}")
                row.seconds = time.time() - started
                self.log(f"{name}: survived={row.survived} rc={row.code} {row.observed} "
                         f"({row.seconds:.0f}s)")
                outcomes.append(row)
        finally:
            first = getattr(self, "_first", None)
            if first is not None and first.poll() is None:
                first.kill()
                first.wait()
        return outcomes
