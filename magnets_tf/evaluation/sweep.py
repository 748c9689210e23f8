"""Schedule sweeps: which decode plans to try, a resumable CSV of results, the FID-GFLOPs plot.

Families of points (paper Figure 7 and its ablations):
- `compositions`: every (k_8, k_4, k_2, k_1) with k_p >= min_steps summing to K (the
  steps given to each nested model, smallest first);
- `scaling`: (8:k, 4:k, 2:k, 1:k) for several k, i.e. scaling the total steps up and down;
- `cache`: the default schedule with the cache off, refreshed at model changes, at every
  step, or never;
- `baseline`: the MaskGIT++ counterpart, the full model (p=1) for K steps without cache;
- `nested`: every nested model alone for K steps without cache (paper Tables 7/8);
- `scale_down`: schedules that shrink the model over the steps, each next to its scaling-up
  mirror with the same per-model steps, i.e. the same compute (paper Figure 7b);
- `sampling`: the given schedule (cache, refreshed at model changes) and its MaskGIT++
  baseline with as many steps under every combination of a grid of sampling settings (guidance scale,
  temperatures, ...), so that both are tuned alike before they are compared.

Each finished point is one CSV row, rewritten atomically, so a sweep can be interrupted
(Ctrl-C) at any time and rerun: points already in the CSV are not recomputed.
"""
import csv
import dataclasses
import itertools
import pathlib

import tqdm

from magnets_tf.decoding.schedule import DEFAULT_MODEL_SCHEDULE, format_model_schedule
from magnets_tf.decoding.schedule import parse_model_schedule
from magnets_tf.utils import files, images

FAMILIES = ("compositions", "scaling", "cache", "baseline", "nested", "scale_down",
            "sampling")
# Plan settings a `sampling` grid may vary (make_plan parameters that leave the schedule).
SAMPLING_SETTINGS = ("guidance_scale", "guidance_steps", "temperature_bias",
                     "temperature_scale", "mask_temperature")


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One decode configuration of a sweep."""

    family: str
    schedule: tuple          # ((p, k), ...)
    use_cache: bool = True
    refresh: str = "model_change"
    sampling: tuple = ()     # ((plan setting, value), ...): overrides of the flags

    @property
    def steps(self):
        return sum(k for _, k in self.schedule)

    @property
    def schedule_text(self):
        return format_model_schedule((p, k) for p, k in self.schedule if k)

    @property
    def sampling_text(self):
        return ";".join(f"{name}={value:g}" for name, value in self.sampling)

    @property
    def key(self):
        """Identity of a point's result (the family is only a label)."""
        key = f"{self.schedule_text}|cache={int(self.use_cache)}|refresh={self.refresh}"
        return f"{key}|{self.sampling_text.replace(';', '|')}" if self.sampling else key

    def plan_kwargs(self):
        return dict(model_schedule=tuple((p, k) for p, k in self.schedule if k),
                    num_steps=self.steps, use_cache=self.use_cache, refresh=self.refresh,
                    **dict(self.sampling))


def composition_points(total=12, factors=(8, 4, 2, 1), min_steps=1):
    """All schedules giving each factor >= min_steps steps, summing to `total`."""
    if min_steps < 0 or total < min_steps * len(factors):
        raise ValueError(f"total={total} cannot give {len(factors)} factors >= {min_steps} steps")
    points = []
    for ks in itertools.product(range(min_steps, total + 1), repeat=len(factors)):
        if sum(ks) == total:
            points.append(SweepPoint("compositions", tuple(zip(factors, ks))))
    return points


def scaling_points(steps_per_model=(1, 2, 3, 4, 5, 6), factors=(8, 4, 2, 1)):
    """(8:k, 4:k, 2:k, 1:k) for each k: total steps 4k."""
    return [SweepPoint("scaling", tuple((p, k) for p in factors)) for k in steps_per_model]


def cache_points(schedule=DEFAULT_MODEL_SCHEDULE):
    """`schedule` without cache, and with each refresh policy."""
    schedule = parse_model_schedule(schedule)
    return [SweepPoint("cache", schedule, use_cache=False),
            SweepPoint("cache", schedule, True, "model_change"),
            SweepPoint("cache", schedule, True, "every_step"),
            SweepPoint("cache", schedule, True, "never")]


def baseline_points(steps=(12,)):
    """MaskGIT++: the full model (p=1) for K steps, no cache."""
    return [SweepPoint("baseline", ((1, k),), use_cache=False) for k in steps]


def nested_points(total=12, factors=(8, 4, 2, 1)):
    """Each nested model p alone for `total` steps, no cache."""
    return [SweepPoint("nested", ((p, total),), use_cache=False) for p in factors]


def scale_down_points(schedule=DEFAULT_MODEL_SCHEDULE, total=12):
    """Scaling-up schedules and their reversed (scaling-down) mirrors, cache + refresh.

    The pairs: `schedule`, and two-model schedules splitting `total` in halves between
    the largest nested model and the full one, and between p=2 and p=1.
    """
    half = total // 2
    ups = [parse_model_schedule(schedule)]
    if half and total % 2 == 0:
        ups += [((8, half), (1, half)), ((2, half), (1, half))]
    points = []
    for up in ups:
        points.append(SweepPoint("scale_down", up))
        points.append(SweepPoint("scale_down", tuple(reversed(up))))
    return points


def parse_sampling_grid(specs):
    """["guidance_scale=1,2,4", "temperature_bias=0.5,1"] -> {name: (values...)}.

    ValueError naming the spec that is not NAME=V1,V2,... of a known setting."""
    grid = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or name not in SAMPLING_SETTINGS:
            raise ValueError(f"bad sampling grid {spec!r}: expected NAME=V1,V2,... with NAME "
                             f"one of {SAMPLING_SETTINGS}")
        if name in grid:
            raise ValueError(f"bad sampling grid {spec!r}: {name} is given twice")
        try:
            grid[name] = tuple(float(v) for v in values.split(","))
        except ValueError:
            raise ValueError(f"bad sampling grid {spec!r}: the values are not numbers") from None
        if name == "guidance_steps":
            if any(v != int(v) or v < 0 for v in grid[name]):
                raise ValueError(f"bad sampling grid {spec!r}: guided steps are counts >= 0")
            grid[name] = tuple(int(v) for v in grid[name])
    return grid


def sampling_points(grid, schedule=DEFAULT_MODEL_SCHEDULE):
    """`schedule` (cache, model-change refresh) and the baseline with as many steps (1:K,
    no cache) under every combination of the `grid` ({setting: values}) of sampling
    settings."""
    if not grid:
        raise ValueError("the sampling family needs a grid of sampling settings "
                         "(e.g. guidance_scale=1,2,4)")
    schedule = parse_model_schedule(schedule)
    plans = [(schedule, True), (((1, sum(k for _, k in schedule)),), False)]
    names = sorted(grid)
    points = []
    for plan, use_cache in plans:
        for values in itertools.product(*(grid[name] for name in names)):
            points.append(SweepPoint("sampling", plan, use_cache=use_cache,
                                     sampling=tuple(zip(names, values))))
    return points


def best_sampling(rows):
    """{schedule text: its sampling-family row with the lowest FID}."""
    best = {}
    for row in rows:
        if row.get("family") != "sampling" or row.get("fid") in (None, ""):
            continue
        current = best.get(row["schedule"])
        if current is None or float(row["fid"]) < float(current["fid"]):
            best[row["schedule"]] = row
    return best


def build_points(families, total=12, min_steps=1, steps_per_model=(1, 2, 3, 4, 5, 6),
                 schedule=DEFAULT_MODEL_SCHEDULE, factors=(8, 4, 2, 1), sampling_grid=None):
    """Points of the named families in order, duplicates (same key) dropped."""
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown sweep families {unknown}; known: {FAMILIES}")
    if sampling_grid and "sampling" not in families:
        raise ValueError("a sampling grid is only used by the sampling family: add it to "
                         "the families")
    points = []
    for family in families:
        if family == "compositions":
            points += composition_points(total, factors, min_steps)
        elif family == "scaling":
            points += scaling_points(steps_per_model, factors)
        elif family == "cache":
            points += cache_points(schedule)
        elif family == "nested":
            points += nested_points(total, factors)
        elif family == "scale_down":
            points += scale_down_points(schedule, total)
        elif family == "sampling":
            points += sampling_points(sampling_grid, schedule)
        else:
            points += baseline_points((total,))
    seen, unique = set(), []
    for point in points:
        if point.key not in seen:
            seen.add(point.key)
            unique.append(point)
    return unique


CSV_FIELDS = ["key", "family", "schedule", "steps", "cache", "refresh", "sampling", "fid",
              "n", "n_reference", "precision", "recall", "inception_score", "gflops_exact",
              "gflops_paper", "decode_seconds_per_image", "feature_seconds_per_image"]


def read_rows(path):
    """Rows of an existing sweep CSV ([] if there is none); ValueError if it is not one."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "key" not in reader.fieldnames:
            raise ValueError(f"{path} is not a sweep CSV (no 'key' column): refusing to "
                             f"overwrite it")
        return list(reader)


def write_rows(path, rows):
    """Writes all rows to `path` via a temp file + rename (never a half-written CSV)."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    files.atomic_write(path, write, suffix=".csv")


def run_sweep(points, evaluate_fn, csv_path, progress=True, on_row=None):
    """Evaluates the points missing from `csv_path`, saving the CSV after each one.

    `evaluate_fn(point) -> metrics dict`. Returns (rows, interrupted): on Ctrl-C the
    finished rows are already saved and `interrupted` is True.
    """
    rows = read_rows(csv_path)
    done = {row["key"] for row in rows}
    todo = [p for p in points if p.key not in done]
    interrupted = False
    with tqdm.tqdm(total=len(points), initial=len(points) - len(todo), desc="sweep",
                   unit="point", disable=not progress) as bar:
        try:
            for point in todo:
                bar.set_postfix_str(point.key)
                metrics = evaluate_fn(point)
                row = dict(metrics, key=point.key, family=point.family,
                           schedule=point.schedule_text, steps=point.steps,
                           cache=int(point.use_cache), refresh=point.refresh,
                           sampling=point.sampling_text)
                rows.append(row)
                write_rows(csv_path, rows)
                if on_row:
                    on_row(row)
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
    return rows, interrupted


def plot_sweep(rows, png_path, title="FID vs inference GFLOPs"):
    """Scatter of FID against exact GFLOPs/image per family (like the paper's Figure 7)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png_path = pathlib.Path(png_path)
    fig, ax = plt.subplots(figsize=(7, 5))
    markers = {"compositions": "o", "scaling": "s", "cache": "^", "baseline": "*",
               "nested": "D", "scale_down": "v", "sampling": "x"}
    for family in FAMILIES:
        pts = [r for r in rows if r["family"] == family and r.get("fid") not in (None, "")]
        if not pts:
            continue
        x = [float(r["gflops_exact"]) for r in pts]
        y = [float(r["fid"]) for r in pts]
        ax.scatter(x, y, marker=markers[family], s=90 if family == "baseline" else 30,
                   label=family, alpha=0.8)
        if family in ("baseline", "scaling", "cache", "nested", "scale_down", "sampling"):
            for r, xi, yi in zip(pts, x, y):
                label = {"cache": f"cache={r['cache']} {r['refresh']}",
                         "sampling": f"{r['schedule']} {r.get('sampling')}"}.get(
                             family, r["schedule"])
                ax.annotate(label, (xi, yi), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    n = sorted({str(r.get("n")) for r in rows})
    ax.set_xlabel("GFLOPs per image (exact count of the decoder)")
    ax.set_ylabel(f"FID (n={'/'.join(n)} generated; biased upward at small n)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    images.write_figure(png_path, fig)
    return png_path
