r"""Checks what TensorBoard serves for a directory of training runs, the way a user sees it.

python scripts/check_tensorboard.py --logdir=runs/quickstart_smoke --screenshot_dir=/tmp/tb

Starts TensorBoard on a free port, then
  1. asserts through TensorBoard's own HTTP data API (/data/runs, /data/plugin/scalars/...,
     /data/plugin/images/tags, /data/plugin/text/tags, /data/plugin/hparams/experiment and
     /session_groups) that every run dir holding event files is a run, that every tag in
     the event files on disk is served with points (at the steps written), that each kind
     of model dir has its expected tags (`EXPECTED`), and that the hparams experiment
     has a session per model dir, named after it, with metric columns from its train and
     eval runs;
  2. with --screenshot_dir, takes headless Chromium screenshots of the Time Series,
     Images, Text and HParams tabs (timeseries.png, images.png, text.png, hparams.png)
     once each has rendered (`headless_chromium`: real-time polling over the DevTools
     protocol; --virtual-time-budget leaves the charts blank on a loaded machine).
Prints one line per check and exits 1 if any fails (2 on bad arguments). Run by
scripts/check_tensorboard.sh (which trains a tiny run first and installs chromium).
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

# Tags every model dir of a kind must serve: {kind: {run: {plugin: [tags]}}}. The kind is
# told by the train run's tags (sample grids or token maps: transformer; reconstructions:
# tokenizer).
TRANSFORMER_SCALARS = ["loss", "grad_norm", "learning_rate", "loss/loss_p1",
                       "accuracy/accuracy_p1", "throughput/steps_per_second",
                       "throughput/examples_per_second"]
EXPECTED = {
    "transformer": {"train": {"scalars": TRANSFORMER_SCALARS,
                              "text": ["config/operative_gin"]}},
    "tokenizer": {"train": {"scalars": ["loss", "l2_loss", "grad_norm", "learning_rate",
                                        "batch_codebook_usage", "batch_codebook_perplexity",
                                        "codebook_alive_fraction"],
                            "images": ["inputs_over_reconstructions"],
                            "text": ["config/operative_gin"]}},
}
NESTED_SCALARS = ["alpha", "loss/loss_p2", "accuracy/accuracy_p2"]  # MaGNeTS, not MaskGIT++
EVAL_SCALARS = ["accuracy/accuracy_p1", "gt_loss/gt_loss_p1"]  # A transformer's eval run.
TABS = ("timeseries", "images", "text", "hparams")


class Report:
    """Check lines, printed as they come; `failed` counts the failures."""

    def __init__(self):
        self.failed = 0
        self.passed = 0

    def check(self, ok, message):
        print(f"{'ok  ' if ok else 'FAIL'} {message}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


def free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def start_tensorboard(logdir, port, log_path):
    """A TensorBoard process serving logdir on localhost:port (loads everything once)."""
    command = [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}",
               f"--port={port}", "--host=localhost", "--reload_interval=0",
               "--load_fast=false"]
    log = open(log_path, "w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def get_json(base, path, **query):
    url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read().decode())


def wait_until_served(base, process, expected_runs, timeout=180):
    """Waits until TensorBoard answers and lists every expected run."""
    deadline = time.time() + timeout
    runs = []
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"TensorBoard exited with code {process.returncode}")
        try:
            runs = get_json(base, "/data/runs")
            if set(expected_runs) <= set(runs):
                return runs
        except OSError:
            pass
        time.sleep(1.0)
    return runs


def runs_on_disk(logdir):
    """{run name as TensorBoard names it: directory} of every dir holding event files."""
    found = {}
    for root, _, names in os.walk(logdir):
        if any(name.startswith("events.out.tfevents") for name in names):
            relative = os.path.relpath(root, logdir)
            found[relative.replace(os.sep, "/")] = root
    return found


def model_dirs(runs):
    """{model dir run name: kind} of the runs with a "train" sub-run."""
    found = {}
    for run in runs:
        if run == "train" or run.endswith("/train"):
            found[run[:-len("train")].rstrip("/") or "."] = None
    return found


def check_logdir(base, logdir, report):
    from magnets_tf.utils import event_files

    disk = runs_on_disk(logdir)
    runs = get_json(base, "/data/runs")
    report.check(set(disk) <= set(runs), f"runs served: {sorted(runs)} (on disk: "
                                         f"{sorted(set(disk) - set(runs)) or 'all served'})")
    scalar_tags = get_json(base, "/data/plugin/scalars/tags")
    image_tags = get_json(base, "/data/plugin/images/tags")
    text_tags = get_json(base, "/data/plugin/text/tags")
    served = {"scalars": {run: set(tags) for run, tags in scalar_tags.items()},
              "images": {run: set(tags) for run, tags in image_tags.items()},
              "text": {run: set(tags) for run, tags in text_tags.items()}}

    # Everything written is served, with its points.
    for run, directory in sorted(disk.items()):
        written = event_files.scalar_steps(directory)
        for tag, steps in sorted(written.items()):
            points = get_json(base, "/data/plugin/scalars/scalars", run=run, tag=tag)
            served_steps = [point[1] for point in points]
            report.check(served_steps == steps,
                         f"scalar {run}:{tag} served at steps {served_steps}"
                         + ("" if served_steps == steps else f", written at {steps}"))
        for plugin in ("images", "text"):
            for tag in event_files.plugin_tags(directory, plugin):
                report.check(tag in served[plugin].get(run, ()),
                             f"{plugin[:-1] if plugin == 'images' else plugin} {run}:{tag} "
                             f"served")
        for tag in event_files.plugin_tags(directory, "images"):
            if tag in served["images"].get(run, ()):
                shown = get_json(base, "/data/plugin/images/images", run=run, tag=tag,
                                 sample=0)
                report.check(bool(shown), f"image {run}:{tag} has {len(shown)} step(s)")

    # Each model dir has what its kind must show.
    models = model_dirs(disk)
    for model in sorted(models):
        prefix = "" if model == "." else model + "/"
        train = prefix + "train"
        train_images = served["images"].get(train, set())
        kind = ("tokenizer" if "inputs_over_reconstructions" in train_images
                else "transformer")
        models[model] = kind
        for run_suffix, plugins in EXPECTED[kind].items():
            run = prefix + run_suffix
            for plugin, tags in plugins.items():
                for tag in tags:
                    report.check(tag in served[plugin].get(run, ()),
                                 f"{kind} {run} has {plugin} tag {tag}")
        if kind == "transformer":
            nested = "loss/loss_p2" in served["scalars"].get(train, ())
            if nested:
                for tag in NESTED_SCALARS:
                    report.check(tag in served["scalars"][train], f"magnets {train} has {tag}")
            report.check(any(t.startswith(("samples/p", "sample_tokens/p"))
                             for t in train_images),
                         f"transformer {train} has sample grids: {sorted(train_images)}")
            eval_run = prefix + "eval"
            if eval_run in disk:
                for tag in EVAL_SCALARS:
                    report.check(tag in served["scalars"].get(eval_run, ()),
                                 f"transformer {eval_run} has scalar {tag}")
    has_eval = any(kind == "transformer" and ("eval" if model == "." else model + "/eval")
                   in disk for model, kind in models.items())
    check_hparams(base, models, has_eval, report)
    return models


def check_hparams(base, models, has_eval, report):
    """One hparams session per model dir, named after it, with metric columns from its
    train (and eval) runs."""
    request = json.dumps({"experimentName": "", "includeMetrics": True})
    experiment = get_json(base, "/data/plugin/hparams/experiment", request=request)
    hparams = [info["name"] for info in experiment.get("hparamInfos", [])]
    metrics = {(info["name"].get("group", ""), info["name"]["tag"])
               for info in experiment.get("metricInfos", [])}
    report.check(bool(hparams), f"hparams: {len(hparams)} hyperparameters "
                                f"({', '.join(sorted(hparams)[:8])}, ...)")
    groups = sorted({group for group, _ in metrics})
    report.check(("train", "loss") in metrics,
                 f"hparams metric columns: {len(metrics)} in groups {groups}")
    if has_eval:
        report.check(("eval", "accuracy/accuracy_p1") in metrics,
                     "hparams metric column eval accuracy/accuracy_p1")
    request = json.dumps({"experimentName": "", "startIndex": 0, "sliceSize": 100,
                          "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS",
                                              "STATUS_FAILURE", "STATUS_RUNNING"],
                          "colParams": []})
    session_groups = get_json(base, "/data/plugin/hparams/session_groups", request=request)
    names = sorted(group["name"] for group in session_groups.get("sessionGroups", []))
    wanted = sorted(os.path.basename(m) if m != "." else None for m in models)
    report.check(set(w for w in wanted if w) <= set(names),
                 f"hparams sessions named after the runs: {names}")


# When a tab has rendered (a JavaScript condition polled by `headless_chromium`), then a
# few more seconds for charts drawn by worker threads and images decoded.
READY = {
    "timeseries": "document.querySelectorAll('scalar-card line-chart').length > 0",
    "images": "document.readyState === 'complete'",
    "text": "document.readyState === 'complete'",
    "hparams": "document.readyState === 'complete'",
}


def take_screenshots(chromium, base, screenshot_dir, timeseries_filter, report):
    """Headless Chromium screenshots of the TABS into screenshot_dir/<tab>.png."""
    from headless_chromium import Browser

    browser = Browser(chromium)
    try:
        for tab in TABS:
            query = (f"?tagFilter={urllib.parse.quote(timeseries_filter)}"
                     if tab == "timeseries" and timeseries_filter else "")
            path = os.path.join(screenshot_dir, f"{tab}.png")
            ready = browser.screenshot(f"{base}/{query}#{tab}", path, READY[tab],
                                       settle=15.0)
            report.check(ready and os.path.getsize(path) > 0,
                         f"screenshot {path}" + ("" if ready else " (never rendered)"))
    finally:
        browser.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logdir", required=True, help="Directory of training runs.")
    parser.add_argument("--screenshot_dir", default=None, help="Where the PNGs go.")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--timeseries_filter", default="",
                        help="Tag filter of the Time Series screenshot (regex).")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.logdir) or not runs_on_disk(args.logdir):
        print(f"error: --logdir {args.logdir} holds no TensorBoard event files",
              file=sys.stderr)
        return 2
    port = free_port()
    base = f"http://localhost:{port}"
    log_path = os.path.join(args.screenshot_dir or args.logdir, "tensorboard_check.log") \
        if args.screenshot_dir else os.devnull
    if args.screenshot_dir:
        os.makedirs(args.screenshot_dir, exist_ok=True)
    process = start_tensorboard(args.logdir, port, log_path)
    report = Report()
    try:
        runs = wait_until_served(base, process, runs_on_disk(args.logdir))
        print(f"TensorBoard {base} (logdir {args.logdir}) serves {len(runs)} runs", flush=True)
        models = check_logdir(base, args.logdir, report)
        print("model dirs: " + ", ".join(f"{m} ({k})" for m, k in sorted(models.items())))
        if args.screenshot_dir:
            take_screenshots(args.chromium, base, args.screenshot_dir,
                             args.timeseries_filter, report)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    print(f"{report.passed} checks passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
