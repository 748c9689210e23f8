"""Automatic decode-plan search under a compute budget (beyond the paper).

The paper picks its model schedules by hand; this module searches them for a model and a
budget (exact GFLOPs per image, or a measured latency):

1. `search_space`: every plan of the given step counts K, splits of the K steps over the
   model's nested factors (a factor may get none; blocks run from the smallest sub-model
   to the full one, or in any order), refresh policies and guided-step counts G <= K.
   Candidates whose plans run the same computation (say `never` and `model_change` for a
   one-model schedule) are kept once.
2. Cost: the exact GFLOPs per image of `evaluation/flops.py`, guided steps' unconditional
   branch included; `within_budget` compares it with the budget.
3. `select_pool`: the budget-maximal candidates (no step can move to a wider sub-model
   without leaving the budget), sampled with a seed and stratified over (K, refresh, G).
4. `successive_halving`: round r scores the survivors by FID at n_r samples with seed
   (seed + r); the best fraction go on to the next round, at a larger n. Anchor plans
   (the paper's, MaskGIT++) are scored in every round for comparison.
5. `EvaluationCache`: one JSON file per (plan, n, seed) evaluation, so a search resumes
   where it stopped and reruns nothing; it refuses a folder made in another setting.
6. `pareto_front`, `plot_search`, `plan_gin_text`: the outputs.
"""
import dataclasses
import hashlib
import itertools
import json
import math
import pathlib
import random

import tqdm

from magnets_tf.decoding.schedule import DEFAULT_MODEL_SCHEDULE, REFRESH_POLICIES
from magnets_tf.decoding.schedule import format_model_schedule, parse_model_schedule
from magnets_tf.evaluation import flops
from magnets_tf.utils import files, images

ORDERS = ("ascending", "any")
# evaluate_plan's precision/recall need each sample's 3rd nearest other sample.
MIN_SAMPLES = 4
# A budget read off a printed figure (2.62 for 2.6200032 GF) still admits the plan it was
# read from: costs are compared with this relative tolerance.
BUDGET_TOLERANCE = 1e-4
# The plan settings a search varies; everything else (guidance scale, temperatures, mask
# schedule) is fixed by the caller's plan function and recorded with the cache.
SEARCHED_SETTINGS = ("num_steps", "model_schedule", "use_cache", "refresh", "guidance_steps")
# The fixed settings a written gin file binds besides the searched ones.
FIXED_SETTINGS = ("mask_schedule", "guidance_scale", "guidance_lambda", "temperature_bias",
                  "temperature_scale", "mask_temperature")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One decode configuration the search may choose (with the cache on)."""

    num_steps: int
    schedule: tuple          # ((p, k), ...), every k > 0, in decode order
    refresh: str = "model_change"
    guidance_steps: int = 0

    @property
    def schedule_text(self):
        return format_model_schedule(self.schedule)

    @property
    def key(self):
        return (f"K={self.num_steps}|{self.schedule_text}|refresh={self.refresh}"
                f"|G={self.guidance_steps}")

    @property
    def group(self):
        """What the pool is stratified over: the settings other than the schedule."""
        return (self.num_steps, self.refresh, self.guidance_steps)

    def plan_kwargs(self):
        return dict(num_steps=self.num_steps, model_schedule=self.schedule, use_cache=True,
                    refresh=self.refresh, guidance_steps=self.guidance_steps)

    @classmethod
    def from_plan(cls, plan):
        """The candidate of a cached plan (an uncached one has no candidate: ValueError)."""
        if not plan.use_cache:
            raise ValueError("an uncached plan is a candidate only as refresh='every_step'")
        return cls(plan.num_steps, tuple(plan.model_schedule), plan.refresh,
                   plan.guidance_steps)


def paper_candidate():
    """The paper's Table 1 plan: 12 steps of 8:3,4:3,2:3,1:3, refresh at model changes,
    guidance on the last 4 (gin/decoding/magnets_12_steps.gin)."""
    return Candidate(12, parse_model_schedule(DEFAULT_MODEL_SCHEDULE), "model_change", 4)


def maskgit_pp_candidate(reference=None):
    """The full model every step without reusing the cache (refresh at every step computes
    exactly what no cache does), with `reference`'s K and guided steps (default: the
    paper plan's)."""
    reference = reference or paper_candidate()
    return Candidate(reference.num_steps, ((1, reference.num_steps),), "every_step",
                     reference.guidance_steps)


@dataclasses.dataclass(frozen=True)
class CostedPlan:
    """A candidate with its `DecodePlan` and exact GFLOPs per image."""

    candidate: Candidate
    plan: object
    gflops: float

    @property
    def key(self):
        return self.candidate.key


def cost_candidate(candidate, plan_fn, arch):
    """CostedPlan of one candidate."""
    plan = plan_fn(**candidate.plan_kwargs())
    return CostedPlan(candidate, plan, plan_cost(arch, plan))


def plan_identity(plan):
    """What fixes a decode's computation given the fixed settings: two plans with equal
    identities draw the same tokens from the same seed."""
    return (plan.num_steps, plan.factors, plan.refresh_steps, plan.guided, plan.use_cache)


def compositions(total, parts):
    """Every tuple of `parts` non-negative ints summing to `total`, in lexicographic order."""
    for cuts in itertools.combinations(range(total + parts - 1), parts - 1):
        bounds = (-1, *cuts, total + parts - 1)
        yield tuple(bounds[i + 1] - bounds[i] - 1 for i in range(parts))


def model_schedules(num_steps, factors, order="ascending"):
    """Every schedule of `num_steps` steps over `factors`, each factor in one block or none.

    ascending: blocks from the smallest sub-model (largest p) to the full one, as the
    paper's; any: every order of the blocks too.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; known: {ORDERS}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    factors = sorted({int(p) for p in factors}, reverse=True)
    if not factors or min(factors) < 1:
        raise ValueError(f"factors must be positive ints, got {factors}")
    schedules = []
    for ks in compositions(num_steps, len(factors)):
        blocks = tuple((p, k) for p, k in zip(factors, ks) if k)
        if order == "ascending":
            schedules.append(blocks)
        else:
            schedules.extend(sorted(set(itertools.permutations(blocks))))
    return schedules


def search_space(plan_fn, arch, num_steps_choices, factors, refresh_choices,
                 guidance_steps_choices, order="ascending", include=()):
    """[CostedPlan] of every candidate, one per distinct computation, in a fixed order.

    plan_fn(**Candidate.plan_kwargs()) -> DecodePlan (the caller fixes the guidance scale,
    temperatures and the model's grid); arch: `flops.ArchSpec`. `include`: candidates that
    must be present (e.g. the paper's plan) even if the choices do not produce them.
    """
    unknown = sorted(set(refresh_choices) - set(REFRESH_POLICIES))
    if unknown:
        raise ValueError(f"unknown refresh policies {unknown}; known: {REFRESH_POLICIES}")
    if not num_steps_choices or not refresh_choices or not guidance_steps_choices:
        raise ValueError("the search space needs at least one step count, refresh policy "
                         "and guided-step count")
    if min(guidance_steps_choices) < 0:
        raise ValueError(f"guided-step counts must be >= 0, got {guidance_steps_choices}")
    candidates = list(include)
    for num_steps in sorted(set(num_steps_choices)):
        for schedule in model_schedules(num_steps, factors, order):
            for refresh in refresh_choices:
                for g in sorted(set(guidance_steps_choices)):
                    if g <= num_steps:
                        candidates.append(Candidate(num_steps, schedule, refresh, g))
    seen, space = set(), []
    for candidate in candidates:
        plan = plan_fn(**candidate.plan_kwargs())
        identity = plan_identity(plan)
        if identity in seen:
            continue
        seen.add(identity)
        space.append(CostedPlan(candidate, plan, plan_cost(arch, plan)))
    return space


def plan_cost(arch, plan):
    """Exact GFLOPs per image our decoder runs for `plan` (both guidance branches)."""
    return float(sum(flops.exact_gflops(arch, plan)))


def within_budget(gflops, budget_gflops):
    return gflops <= budget_gflops * (1 + BUDGET_TOLERANCE)


def budget_from_ratio(full_model_gflops, ratio):
    """GFLOPs budget of a plan that must be `ratio` times cheaper than the full model (the
    'exact GFLOPs ratio' of docs/results.md: 2.55 for the paper plan on the 6 x 128 model)."""
    if not ratio > 0:
        raise ValueError(f"budget ratio must be positive, got {ratio}")
    return full_model_gflops / ratio


def gflops_for_latency(budget_ms, reference_ms, reference_gflops):
    """The GFLOPs a plan running at `reference`'s measured rate does in `budget_ms`: where a
    latency-budgeted search draws its pool before measuring each plan."""
    if not budget_ms > 0 or not reference_ms > 0:
        raise ValueError(f"latencies must be positive, got budget {budget_ms} ms and "
                         f"reference {reference_ms} ms")
    return budget_ms * reference_gflops / reference_ms


def filter_by_latency(pool, measure_ms, budget_ms, cache, batch_size, progress=True):
    """(the pool members whose measured ms/image is within `budget_ms`, {key: ms}).

    measure_ms(costed_plan) -> milliseconds per image; each measurement is cached (kind
    'latency', n = the batch size), so a resumed search times no plan twice.
    """
    kept, measured = [], {}
    for costed in tqdm.tqdm(pool, desc="latency", unit="plan", disable=not progress):
        row = cache.get(costed.key, "latency", batch_size, 0)
        if row is None:
            row = cache.put(costed.key, "latency", batch_size, 0,
                            dict(candidate_row(costed), n=batch_size, seed=0,
                                 latency_ms_per_image=float(measure_ms(costed))))
        measured[costed.key] = float(row["latency_ms_per_image"])
        if measured[costed.key] <= budget_ms:
            kept.append(costed)
    return kept, measured


def wider_moves(candidate, factors, order="ascending"):
    """Candidates with one step moved from a sub-model to a wider one (smaller p), the
    other settings and the block order kept (a new block only in ascending order)."""
    steps = dict(candidate.schedule)
    present = [p for p, _ in candidate.schedule]
    targets = sorted(set(factors)) if order == "ascending" else present
    moves = []
    for p in present:
        for q in targets:
            if q >= p:
                continue
            new = dict(steps)
            new[p] -= 1
            new[q] = new.get(q, 0) + 1
            if order == "ascending":
                blocks = tuple((f, new[f]) for f in sorted(new, reverse=True) if new[f])
            else:
                blocks = tuple((f, new[f]) for f in present if new[f])
            moves.append(dataclasses.replace(candidate, schedule=blocks))
    return moves


def budget_maximal(space, plan_fn, arch, budget_gflops, factors, order="ascending"):
    """The in-budget plans of `space` that cannot move a step to a wider sub-model without
    leaving the budget: under the prior that a wider sub-model decodes a step at least as
    well (the paper's nesting, finding 1 in docs/results.md), only these can be best."""
    cost = {c.key: c.gflops for c in space}

    def cost_of(candidate):
        if candidate.key not in cost:
            cost[candidate.key] = plan_cost(arch, plan_fn(**candidate.plan_kwargs()))
        return cost[candidate.key]

    return [c for c in space if within_budget(c.gflops, budget_gflops)
            and not any(within_budget(cost_of(m), budget_gflops)
                        for m in wider_moves(c.candidate, factors, order))]


def select_pool(candidates, size, seed, include=()):
    """At most `size` plans: `include` ([CostedPlan]) first, then a seeded draw from
    `candidates` stratified over Candidate.group (round robin over the groups in a seeded
    order, a seeded order within each group). Sorted by key; the same for the same seed."""
    if size < 1:
        raise ValueError(f"pool size must be >= 1, got {size}")
    pool = list({c.key: c for c in include}.values())[:size]
    chosen = {c.key for c in pool}
    rng = random.Random(seed)
    groups = {}
    for c in sorted(candidates, key=lambda c: c.key):
        if c.key not in chosen:
            groups.setdefault(c.candidate.group, []).append(c)
    order = sorted(groups)
    rng.shuffle(order)
    for group in order:
        rng.shuffle(groups[group])
    while len(pool) < size and any(groups.values()):
        for group in order:
            if groups[group] and len(pool) < size:
                pool.append(groups[group].pop())
    return sorted(pool, key=lambda c: c.key)


@dataclasses.dataclass(frozen=True)
class Round:
    """One round of successive halving: n samples per plan, decoded with `seed`."""

    index: int
    n: int
    seed: int


def halving_rounds(final_n, num_rounds, seed, growth=2):
    """Rounds with n = final_n / growth^(R-1-r) (so the last scores final_n samples) and
    seeds seed, seed+1, ...: each round draws fresh images, so a plan that was lucky in
    one round is not carried by it."""
    if num_rounds < 1:
        raise ValueError(f"num_rounds must be >= 1, got {num_rounds}")
    rounds = [Round(r, int(round(final_n / growth ** (num_rounds - 1 - r))), seed + r)
              for r in range(num_rounds)]
    if rounds[0].n < MIN_SAMPLES:
        raise ValueError(f"{num_rounds} rounds ending at n={final_n} start at n={rounds[0].n}"
                         f": a round needs at least {MIN_SAMPLES} samples (precision/recall "
                         f"compare each sample with its 3 nearest others)")
    return rounds


def survivors_count(count, keep):
    """How many of `count` plans go on to the next round (at least one)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    return max(1, math.ceil(count * keep))


def rank(results):
    """Rows sorted best first: lower FID, then lower cost, then key (a total order)."""
    return sorted(results, key=lambda r: (float(r["fid"]), float(r["gflops_exact"]), r["key"]))


class StopSearch(Exception):
    """Raised by an evaluation callback to end the search early (the cache keeps what is
    done, so the same search resumes)."""


def successive_halving(pool, rounds, evaluate, keep=0.5, anchors=(), progress=True):
    """Scores the pool round by round; returns the per-round rankings.

    evaluate(costed_plan, round) -> result row (with 'key', 'fid', 'gflops_exact'), cached
    by the caller. Anchors are scored in every round but never advance: they are the
    comparison, not the competition (a pool member that is also an anchor competes while
    it survives and is still scored, as an anchor, once it is out).
    Returns [{'round': Round, 'ranked': [row], 'anchors': {key: row}}].
    """
    survivors = list(pool)
    total, count = 0, len(pool)
    for _ in rounds:  # an upper bound: an anchor that is also a survivor is scored once
        total += count + len(anchors)
        count = survivors_count(count, keep)
    history = []
    with tqdm.tqdm(total=total, desc="search", unit="plan", disable=not progress) as bar:
        for r in rounds:
            survivor_keys = {c.key for c in survivors}
            rows = {}
            for c in [*survivors, *(a for a in anchors if a.key not in survivor_keys)]:
                bar.set_postfix_str(f"n={r.n} {c.key}")
                rows[c.key] = evaluate(c, r)
                bar.update(1)
            ranked = rank([rows[c.key] for c in survivors])
            history.append({"round": r, "ranked": ranked,
                            "anchors": {a.key: rows[a.key] for a in anchors}})
            by_key = {c.key: c for c in survivors}
            survivors = [by_key[row["key"]]
                         for row in ranked[:survivors_count(len(ranked), keep)]]
        bar.total = bar.n
        bar.refresh()
    return history


def run_search(pool, rounds, score_fn, cache, keep=0.5, anchors=(), max_evaluations=None,
               on_row=None, progress=True):
    """Successive halving with every evaluation read from / written to `cache`.

    score_fn(costed_plan, round) -> metrics dict (fid, gflops_exact, ...). At most
    `max_evaluations` new evaluations run (None: no limit); Ctrl-C stops too. Returns
    (history or None when stopped early, number of new evaluations).
    """
    new = 0

    def evaluate(costed, r):
        nonlocal new
        row = cache.get(costed.key, "fid", r.n, r.seed)
        if row is None:
            if max_evaluations is not None and new >= max_evaluations:
                raise StopSearch
            metrics = score_fn(costed, r)
            row = cache.put(costed.key, "fid", r.n, r.seed,
                            dict(metrics, **candidate_row(costed), n=r.n, seed=r.seed))
            new += 1
            if on_row:
                on_row(row)
        return row

    try:
        return successive_halving(pool, rounds, evaluate, keep, anchors, progress), new
    except (StopSearch, KeyboardInterrupt):
        return None, new


def search_rows(cache, rounds, pool, anchors):
    """The cached evaluations of this search as CSV rows: round, role ('candidate' for
    pool members, else 'anchor') and anchor label, ordered by round, then FID.

    anchors: {label: CostedPlan}, e.g. {'paper': ..., 'maskgit_pp': ...}.
    """
    round_of = {(r.n, r.seed): r.index for r in rounds}
    pool_keys = {c.key for c in pool}
    label_of = {a.key: label for label, a in anchors.items()}
    rows = []
    for row in cache.rows("fid"):
        index = round_of.get((int(row["n"]), int(row["seed"])))
        if index is None or (row["key"] not in pool_keys and row["key"] not in label_of):
            continue
        rows.append(dict(row, round=index, anchor=label_of.get(row["key"], ""),
                         role="candidate" if row["key"] in pool_keys else "anchor"))
    return sorted(rows, key=lambda r: (r["round"], float(r["fid"]), r["key"]))


def front_rows(rows):
    """The Pareto front of the candidates of each round."""
    front = []
    for index in sorted({r["round"] for r in rows}):
        front += pareto_front([r for r in rows if r["round"] == index
                               and r["role"] == "candidate"])
    return front


def pareto_front(rows):
    """The rows no other row beats on both FID and exact GFLOPs (lowest cost first)."""
    front, best = [], math.inf
    for row in sorted(rows, key=lambda r: (float(r["gflops_exact"]), float(r["fid"]), r["key"])):
        if float(row["fid"]) < best:
            front.append(row)
            best = float(row["fid"])
    return front


WEIGHT_FILE_PATTERNS = ("*.h5", "*.keras", "*_config.json")


def weights_digest(folder):
    """SHA-1 of a saved model's weights and config files (not of metrics or logs written
    beside them): what a cached evaluation depends on, wherever the folder is checked out."""
    folder = pathlib.Path(folder)
    paths = sorted({p for pattern in WEIGHT_FILE_PATTERNS for p in folder.glob(pattern)})
    if not paths:
        raise ValueError(f"{folder} holds no weights ({', '.join(WEIGHT_FILE_PATTERNS)})")
    digest = hashlib.sha1()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class EvaluationCache:
    """One JSON file per evaluated (plan, n, seed) under `folder`, written atomically.

    `setting` (what every cached number depends on besides the plan, n and seed: model,
    reference, batch size, guidance scale, temperatures, ...) is stored in setting.json;
    opening the folder with another setting raises ValueError naming what differs.
    """

    def __init__(self, folder, setting):
        self.folder = pathlib.Path(folder)
        path = self.folder / "setting.json"
        setting = json.loads(json.dumps(setting))  # as it reads back from disk
        if path.exists():
            stored = json.loads(path.read_text())
            differ = sorted(k for k in set(stored) | set(setting)
                            if stored.get(k) != setting.get(k))
            if differ:
                raise ValueError(
                    f"{self.folder} holds evaluations made with another setting ("
                    + ", ".join(f"{k}: {stored.get(k)!r} there, {setting.get(k)!r} now"
                                for k in differ)
                    + "): give another output folder or the same setting")
        else:
            files.write_json(path, setting)
        self.setting = setting

    def path(self, key, kind, n, seed):
        slug = (key.replace("|", "_").replace(",", "-").replace(":", "x")
                .replace("=", ""))
        digest = hashlib.sha1(f"{key}|{kind}|{n}|{seed}".encode()).hexdigest()[:8]
        return self.folder / f"{slug}_{kind}_n{n}_s{seed}_{digest}.json"

    def get(self, key, kind, n, seed):
        path = self.path(key, kind, n, seed)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, key, kind, n, seed, row):
        files.write_json(self.path(key, kind, n, seed), row)
        return row

    def rows(self, kind="fid"):
        """Every cached row of `kind`, in a fixed order (n, seed, key)."""
        rows = [json.loads(p.read_text()) for p in sorted(self.folder.glob(f"*_{kind}_n*.json"))]
        return sorted(rows, key=lambda r: (int(r["n"]), int(r["seed"]), r["key"]))


def candidate_row(costed):
    """The CSV columns that describe a plan."""
    c = costed.candidate
    return dict(key=c.key, num_steps=c.num_steps, schedule=c.schedule_text,
                use_cache=int(costed.plan.use_cache), refresh=c.refresh,
                guidance_steps=costed.plan.guidance_steps, gflops_exact=costed.gflops)


CSV_FIELDS = ["round", "n", "seed", "key", "role", "anchor", "num_steps", "schedule",
              "use_cache", "refresh", "guidance_steps", "fid", "precision", "recall", "gflops_exact",
              "gflops_paper", "latency_ms_per_image", "decode_seconds_per_image",
              "feature_seconds_per_image"]


def write_csv(path, rows, fields=CSV_FIELDS):
    import csv

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return files.atomic_write(path, write, suffix=".csv")


def plot_search(rows, png_path, budget_gflops=None, best_key=None,
                title="Decode-plan search: FID vs exact GFLOPs"):
    """FID against exact GFLOPs/image of every evaluation, one colour per round (n), the
    Pareto front of each round as a step line, anchors and the best plan marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    rounds = sorted({(int(r["round"]), int(r["n"]), int(r["seed"])) for r in rows})
    colours = plt.cm.viridis([i / max(1, len(rounds) - 1) for i in range(len(rounds))])
    for (index, n, seed), colour in zip(rounds, colours):
        mine = [r for r in rows if int(r["round"]) == index]
        label = f"round {index}: n={n}, seed {seed}"
        plans = [r for r in mine if r["role"] == "candidate"]
        ax.scatter([float(r["gflops_exact"]) for r in plans], [float(r["fid"]) for r in plans],
                   s=14, color=colour, alpha=0.6, label=label)
        front = pareto_front(plans)
        if front:
            ax.step([float(r["gflops_exact"]) for r in front], [float(r["fid"]) for r in front],
                    where="post", color=colour, linewidth=1)
        for r in mine:
            if r["anchor"]:
                marker = "X" if r["anchor"] == "maskgit_pp" else "*"
                ax.scatter([float(r["gflops_exact"])], [float(r["fid"])], marker=marker, s=140,
                           color=colour, edgecolors="black", linewidths=0.6, zorder=3)
            if best_key and r["key"] == best_key:
                ax.scatter([float(r["gflops_exact"])], [float(r["fid"])], marker="o", s=110,
                           facecolors="none", edgecolors="red", linewidths=1.5, zorder=4)
    handles = [plt.Line2D([], [], marker="*", linestyle="", color="gray", markersize=11,
                          markeredgecolor="black", label="paper plan (8:3,4:3,2:3,1:3)"),
               plt.Line2D([], [], marker="X", linestyle="", color="gray", markersize=10,
                          markeredgecolor="black", label="MaskGIT++ (1:K, no cache)"),
               plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                          markeredgecolor="red", markersize=10, label="best plan found")]
    if budget_gflops:
        ax.axvline(budget_gflops, color="red", linestyle="--", linewidth=1)
        handles.append(plt.Line2D([], [], color="red", linestyle="--",
                                  label=f"budget {budget_gflops:.3f} GF"))
    ax.set_xlabel("GFLOPs per image (exact count of the decoder)")
    ax.set_ylabel("FID (biased upward at small n: compare within a round)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + handles, fontsize=7)
    images.write_figure(png_path, fig)
    return png_path


def plan_gin_text(plan, header_lines=()):
    """A gin file of `plan`'s `make_plan.*` bindings after `header_lines` (comments)."""
    values = dict(num_steps=plan.num_steps,
                  model_schedule=format_model_schedule(plan.model_schedule),
                  use_cache=plan.use_cache, refresh=plan.refresh,
                  guidance_steps=plan.guidance_steps,
                  **{name: getattr(plan, name) for name in FIXED_SETTINGS})
    lines = [f"# {line}" if line else "#" for line in header_lines]
    for name, value in values.items():
        lines.append(f"make_plan.{name} = {_gin_literal(value)}")
    return "\n".join(lines) + "\n"


def _gin_literal(value):
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def rank_correlations(rows, final_round):
    """Spearman correlation of each round's FIDs with the final round's, over the plans
    scored in both: how well the cheap rounds rank plans like the final n does."""
    from scipy import stats

    by_round = {}
    for r in rows:
        by_round.setdefault(int(r["round"]), {})[r["key"]] = float(r["fid"])
    final = by_round.get(final_round, {})
    out = {}
    for index, fids in sorted(by_round.items()):
        common = sorted(set(fids) & set(final))
        if index == final_round or len(common) < 3:
            continue
        rho = stats.spearmanr([fids[k] for k in common], [final[k] for k in common])[0]
        out[index] = {"plans": len(common), "spearman": float(rho)}
    return out
