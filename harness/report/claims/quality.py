"""Claims about quality: score gaps between methods, ranks and LoRA's variants (decided on the paired
comparisons, example by example), and the ratio of the chosen learning rates."""

from __future__ import annotations

import math

import pandas as pd

from harness.report.claims.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    PARTLY,
    UNTESTABLE,
    combine_verdicts,
    decide,
    evidence_gaps,
    gap_verdict,
    judged,
)
from harness.report.frames import variant_se


def score_gap(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    methods = params["method"] if isinstance(params["method"], list) else [params["method"]]
    full = variants[variants["method"] == "full"]
    others = variants[variants["method"].isin(methods)]
    if full.empty or others.empty:
        return judged("-", UNTESTABLE, f"needs a full-FT run and a {'/'.join(methods)} run on the same data")
    if pd.isna(full.iloc[0].get("score")):
        return judged("-", UNTESTABLE, "needs scored runs (these were trained with eval.enabled=false)")
    quality = params.get("_quality")
    if quality is not None and not quality.table.empty:
        return _paired_score_gap(runs, full.iloc[0], others, float(params["max_gap_pct"]), quality)
    return _unpaired_score_gap(runs, full.iloc[0], others, float(params["max_gap_pct"]), quality)


def _paired_score_gap(runs: pd.DataFrame, f: pd.Series, others: pd.DataFrame, max_gap: float, quality) -> dict:
    """The relative gap below full FT, example by example (harness/report/comparisons.py), on exact match and on field
    accuracy; a verdict per method and metric where the 95 % interval lies inside or outside the band."""
    table = quality.table[(quality.table["comparison"] == "below full FT") & (quality.table["a"] == f["label"])]
    parts, verdicts, missing = [], [], evidence_gaps(runs, gpu=False)
    wide_seeds, wide_examples, few_seeds = [], [], []  # undecided cells: for want of seeds / of test examples
    one_seed: list[str] = []  # cells of one seed, undecided where other comparisons measure the seeds' variance
    for _, o in others.iterrows():
        rows = table[table["b"] == o["label"]]
        if rows.empty:
            missing.append(f"per-example results of {o['label']} and {f['label']} on the same test examples")
            continue
        for _, row in rows.iterrows():
            if row["rel_gap_pct"] is None or pd.isna(row["rel_gap_pct"]):
                parts.append(f"{o['label']} {row['metric']}: full FT scored 0, no relative gap")
                continue
            gap, hw = float(row["rel_gap_pct"]), float(row["rel_half_width_pct"])
            verdict = gap_verdict(gap, hw, max_gap)
            seeds = row["seeds"] if row["seed_variance"] else f"{row['seeds']}, no seed variance"
            if not quality.decides(row):
                verdict = INCONCLUSIVE
                one_seed.append(f"{o['label']} {row['metric']}")
            verdicts.append(verdict)
            parts.append(f"{o['label']} {row['metric']}: {gap:+.1f} % ± {hw:.1f} ({verdict}; seeds {seeds})")
            if verdict == INCONCLUSIVE and 2 * hw > max_gap and quality.decides(row):
                cell = f"{o['label']} {row['metric']} ±{hw:.1f} %"
                if row["seed_variance"] and float(row["df"]) < 10:
                    wide_seeds.append(cell)
                    few_seeds.append(f"{row['seeds']} (t with {float(row['df']):.1f} df)")
                else:
                    wide_examples.append(cell)
    band = f"wider than the claim's {max_gap:g} % band"
    wide = []
    if wide_seeds:
        wide.append(
            f"more seeds: the seeds' variance is estimated from seeds {', '.join(dict.fromkeys(few_seeds))}, so a "
            f"few seeds set the error: the 95 % intervals ({', '.join(wide_seeds)}) are {band}"
        )
    if wide_examples:
        wide.append(
            "more test examples, or seeds of the runs with one (their error is over test examples only): the 95 % "
            f"intervals ({', '.join(wide_examples)}) are {band}"
        )
    if one_seed:
        wide.append(
            f"a second seed or more of {', '.join(one_seed)}: one seed's interval is over test examples only, and "
            f"seeds move these gaps here ({quality.seed_variance_measured()})"
        )
    verdict, undecided = combine_verdicts(verdicts), ""
    if wide and {HOLDS, FAILS} <= set(verdicts):
        # decided both ways elsewhere: the claim partly holds whatever the undecided cells turn out to be
        verdict, undecided = PARTLY, " Undecided, for want of " + "; ".join(wide) + "."
    else:
        missing += wide
    budget = quality.budget_text([f["label"], *others["label"]])
    return decide(
        "relative gap below full FT, paired over the same test examples: " + "; ".join(parts),
        verdict,
        f"holds where the gap plus its 95 % interval is at most {max_gap:g} %, does not hold where the gap less it "
        f"exceeds {max_gap:g} %, per method and metric (exact match, and field accuracy, the finer measure); "
        f"partly holds where it holds for some and does not for others; a negative gap: better than full FT. "
        f"Measured {budget}.{undecided}",
        missing,
    )


def _unpaired_score_gap(runs: pd.DataFrame, f: pd.Series, others: pd.DataFrame, max_gap: float, quality) -> dict:
    """Records without per-example results (written before 2026-12-02): each method's own error, combined as if
    the methods had been scored on different examples, which is far wider than the paired error."""
    metric = "score"
    if f["score"] <= 0 and f.get("field_acc", 0) > 0:
        metric = "field_acc"  # no exact match at all (e.g. a few steps): compare per-field accuracy instead
    no_examples = (
        " The records have no per-example results, so the error is not paired: each method's own error, "
        "combined as if they had been scored on different examples (wider than the paired one)."
    )
    if f[metric] <= 0:
        missing = [*evidence_gaps(runs, gpu=False), "a full-FT score above 0 (training too short to compare)"]
        return decide(
            f"full FT score {f['score']:.3f}", INCONCLUSIVE, "no baseline to compare with." + no_examples, missing
        )
    parts, verdicts, wide = [], [], []
    for _, o in others.iterrows():
        gap = (f[metric] - o[metric]) / f[metric] * 100
        se = math.hypot(variant_se(f, metric), variant_se(o, metric)) / f[metric] * 100
        parts.append(f"{o['label']}: {gap:+.1f} % (±{2 * se:.1f})")
        if 2 * se > max_gap:
            wide.append(f"{o['label']} ±{2 * se:.0f} %")
        verdicts.append(gap_verdict(gap, 2 * se, max_gap))
    verdict = verdicts[0] if len(set(verdicts)) == 1 else PARTLY if HOLDS in verdicts else INCONCLUSIVE
    missing = evidence_gaps(runs, gpu=False)
    if wide:
        missing.append(
            f"more test examples or seeds: two standard errors of the gap ({', '.join(wide)}) are wider than the "
            f"claim's {max_gap:g} % band"
        )
    if metric != "score":
        missing.append("exact-match scores above 0 for full FT (field accuracy stands in)")
    return decide(
        f"{'exact match' if metric == 'score' else 'field accuracy (full FT had no exact match)'} gap below "
        f"full FT ({f[metric]:.3f}), relative: " + "; ".join(parts),
        verdict,
        f"holds where the gap plus two standard errors is at most {max_gap:g} %; does not hold where the gap less "
        f"two standard errors exceeds it (±2 SE shown, unpaired; test set of {int(f['n_test'])} examples"
        f"{', spread over seeds' if f.get('n_seeds', 1) > 1 else ''}). A negative gap: better than full FT."
        + no_examples,
        missing,
    )


def rank_quality(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    """ "Start at r=8; if performance plateaus, bump to 16 or 32": raising the rank above 8 must buy quality for the
    advice to mean anything. Judged on the paired exact-match gain of each rank over the next lower one."""
    lora = variants[variants["method"] == "lora"].sort_values("r")
    if lora["r"].nunique() < 2 or not (lora["r"] >= 8).any():
        return judged("-", UNTESTABLE, "needs LoRA runs at r=8 and at a higher rank")
    quality = params.get("_quality")
    table = quality.table if quality is not None else pd.DataFrame()
    steps = (
        table[(table["comparison"] == "gain from a higher rank") & (table["metric"] == "exact match")]
        if not table.empty
        else table
    )
    missing = evidence_gaps(runs, gpu=False)
    if steps.empty:
        missing.append("per-example results of LoRA runs at two or more ranks on the same test examples")
        return decide("-", INCONCLUSIVE, "the gain of a rank over the next is computed example by example", missing)
    r_of = dict(zip(lora["label"], lora["r"], strict=True))
    worth = float(params["min_gain_points"])
    parts, above_eight, one_seed = [], [], []
    for _, row in steps.iterrows():
        gain, hw = 100 * float(row["gap"]), 100 * float(row["half_width"])
        seeds = f"seeds {row['seeds']}" if row["seed_variance"] else "over test examples only, no seed variance"
        step = f"r{r_of[row['b']]:.0f} -> r{r_of[row['a']]:.0f}"
        parts.append(f"{step}: {gain:+.1f} ± {hw:.1f} points ({seeds})")
        if r_of[row["b"]] >= 8:
            if quality.decides(row):
                above_eight.append((gain, hw))
            else:
                one_seed.append(step)
    if one_seed:
        missing.append(
            f"two or more seeds at each rank of {', '.join(one_seed)}: one seed's interval is over test examples "
            f"only, and seeds move these gaps here ({quality.seed_variance_measured()})"
        )
    if not above_eight:
        if not one_seed:
            missing.append("a LoRA run above r=8")
        verdict = INCONCLUSIVE
    elif any(g - h > 0 for g, h in above_eight):
        verdict = HOLDS  # a rank above 8 measurably better: bumping it pays
    elif all(g + h < worth for g, h in above_eight):
        verdict = FAILS  # no step above 8 can be worth the bump
    else:
        verdict = INCONCLUSIVE
    return decide(
        "paired exact-match gain of each rank over the next lower: " + "; ".join(parts),
        verdict,
        f"holds where a rank above 8 beats the next lower one (95 % interval above 0); does not hold where no step "
        f"above r=8 can gain {worth:g} points (every interval's upper end below it); "
        f"{quality.budget_text(list(lora['label'])) if quality is not None else 'at an unknown budget'}.",
        missing,
    )


def variant_gap(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    """A LoRA variant against plain LoRA of its rank and base, paired over the same test examples and seeds
    (comparisons.VARIANT_VS_PLAIN), on exact match and field accuracy. `expect: gain`: holds where the 95 %
    interval lies above 0, partly where it does but its upper end is below the gain claimed, does not hold where
    its upper end is below the claimed gain and it reaches 0. `expect: tie`: holds where the interval lies inside
    +-tie_points, does not hold where it excludes 0. A variant's gain is a few points at most, within the seeds'
    spread, so a gap with no seed variance decides nothing."""
    from harness.report.comparisons import VARIANT_VS_PLAIN

    names = params["variant"] if isinstance(params["variant"], list) else [params["variant"]]
    variant = ", ".join(names)
    mine = variants[variants["adapter_variant"].fillna("").isin(names)] if "adapter_variant" in variants else variants
    if mine.empty:
        return judged("-", UNTESTABLE, f"needs a {variant} run and a plain LoRA run of its rank on the same data")
    quality = params.get("_quality")
    table = quality.table if quality is not None else pd.DataFrame()
    rows = (
        table[(table["comparison"] == VARIANT_VS_PLAIN) & table["a"].isin(mine["label"])] if not table.empty else table
    )
    missing = evidence_gaps(runs, gpu=False)
    if rows.empty:
        missing.append(f"per-example results of {variant} and plain LoRA of its rank on the same test examples")
        return decide("-", INCONCLUSIVE, "the gap is computed example by example", missing)
    parts, verdicts, no_seeds, undecided = [], [], [], []
    gain, tie = float(params.get("min_gain_points", 0)), float(params.get("tie_points", 0))
    for _, row in rows.iterrows():
        g, h = 100 * float(row["gap"]), 100 * float(row["half_width"])
        if not row["seed_variance"]:
            no_seeds.append(str(row["a"]))
        if float(row["a score"]) == 0 and float(row["b score"]) == 0:
            parts.append(f"{row['a']} - {row['b']} {row['metric']}: both scored 0, nothing to compare")
            continue
        if params.get("tie_pct") is not None:  # a tie relative to plain LoRA's score ("within 1-2 %")
            tie = float(params["tie_pct"]) * float(row["b score"])
        if params["expect"] == "gain":
            verdict = (HOLDS if g + h >= gain else PARTLY) if g - h > 0 else FAILS if g + h < gain else INCONCLUSIVE
        else:
            verdict = HOLDS if abs(g) + h <= tie else FAILS if abs(g) - h > 0 else INCONCLUSIVE
        seeds = row["seeds"]
        if not row["seed_variance"]:  # one seed decides nothing, whatever its interval over the test examples
            seeds, verdict = f"{seeds}, no seed variance", INCONCLUSIVE
        verdicts.append(verdict)
        parts.append(f"{row['a']} - {row['b']} {row['metric']}: {g:+.1f} ± {h:.1f} points ({verdict}; seeds {seeds})")
        if verdict == INCONCLUSIVE and row["seed_variance"]:
            undecided.append((f"{row['a']} {row['metric']} ±{h:.1f}", f"{row['seeds']}", float(row["df"])))
    if undecided and combine_verdicts(verdicts) == INCONCLUSIVE and not no_seeds:
        few = [u for u in undecided if u[2] < 10]
        missing.append(
            (
                f"more seeds: the seeds' variance is estimated from seeds {few[0][1]} (t with {few[0][2]:.1f} df)"
                if few
                else "more test examples or seeds"
            )
            + f", and the 95 % intervals ({', '.join(u[0] for u in undecided)} points) reach across the claim's bounds"
        )
    if not verdicts:
        missing.append("scores above 0 for a variant or its plain LoRA (training too short to compare)")
    if no_seeds:
        missing.append(
            f"two or more seeds of {', '.join(dict.fromkeys(no_seeds))} and of the plain LoRA each is paired with "
            "(with one seed the gap's error leaves the seeds' variance out)"
        )
    if params["expect"] != "gain" and params.get("tie_pct") is not None:
        rule = (
            f"holds where the 95 % interval lies within ±{params['tie_pct']:g} % of plain LoRA's score, does not "
            "hold where it excludes 0"
        )
    elif params["expect"] != "gain":
        rule = f"holds where the 95 % interval lies within ±{tie:g} points, does not hold where it excludes 0"
    elif gain > 0:
        rule = (
            f"holds where the 95 % interval lies above 0 (partly: above 0 but below the claimed {gain:g} points), "
            f"does not hold where it reaches 0 and its upper end is below {gain:g} points"
        )
    else:  # "scores higher", no size claimed
        rule = "holds where the 95 % interval lies above 0, does not hold where it lies below 0"
    labels = list(rows["a"]) + list(rows["b"])
    return decide(
        "paired gap over plain LoRA of the same rank and base: " + "; ".join(parts),
        combine_verdicts(verdicts),
        f"{rule}; per metric (exact match, field accuracy); measured "
        f"{quality.budget_text(list(dict.fromkeys(labels)))}. On this task and model, not the claim's own."
        + (f" {params['note']}" if params.get("note") else ""),
        missing,
    )


def lr_ratio(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    """The ratio of LoRA's chosen learning rate to full FT's, each chosen by its search on validation data. A
    choice on a grid is known to within the grid's step around it, so the ratio lies within the product of the
    two steps either way: holds where that whole range lies inside [low, high], does not hold where it lies
    wholly outside, inconclusive otherwise (a finer grid around both choices would decide it)."""
    rates = params.get("_rates")
    found = rates.choices if rates is not None else {}
    label = params.get("method_label", "lora-r16")
    full = [c for c in found.values() if c.method_label == "full" and len(c.points) > 1]
    lora = [c for c in found.values() if c.method_label == label and len(c.points) > 1]
    low, high = float(params["low"]), float(params["high"])
    rule = (
        f"holds where the ratio, widened by the grid's steps around both choices, lies within {low:g}x-{high:g}x; "
        "does not hold where it lies wholly outside"
    )
    if len(full) != 1 or len(lora) != 1:
        return judged("-", INCONCLUSIVE, f"missing: learning-rate searches of full FT and {label} "
                       "(+sweeps=lr_search) under the same conditions. " + rule)  # fmt: skip
    problems = [c.problem() for c in (full[0], lora[0]) if c.chosen is None]
    if problems:
        return judged("-", INCONCLUSIVE, "missing: " + "; ".join(p for p in problems if p) + ". " + rule)
    f, lo = full[0], lora[0]
    ratio = lo.chosen / f.chosen
    spread = (f.neighbour_ratio or 2.0) ** 0.5 * (lo.neighbour_ratio or 2.0) ** 0.5
    below, above = ratio / spread, ratio * spread
    verdict = HOLDS if low <= below and above <= high else FAILS if above < low or below > high else INCONCLUSIVE
    why = (
        f"{rule}; each choice is the lowest validation loss on its grid, both at the training budget the conditions "
        "state. On this task and model, LoRA with alpha = 2r."
    )
    if verdict == INCONCLUSIVE:
        why = f"missing: {_finer_grids_needed(ratio, spread, low, high)} {why}"
    return judged(
        f"{label} {lo.chosen:.3g} / full FT {f.chosen:.3g} = {ratio:.3g}x "
        f"(within the grids: {below:.3g}x-{above:.3g}x)",
        verdict,
        why,
    )


def _finer_grids_needed(ratio: float, spread: float, low: float, high: float) -> str:
    """What would decide an inconclusive rate ratio: grids fine enough that the ratio's range clears the band's
    edges, if the choices stay where they are; at an edge exactly, no grid does unless a choice moves."""
    # With both grids' neighbours g apart, the ratio is known to within g either way.
    step = min(ratio / low, high / ratio) if low <= ratio <= high else max(ratio / high, low / ratio)
    edge = high if ratio * spread > high and ratio / spread <= high else low
    if step <= 1.0 + 1e-9:
        return (
            f"the ratio lies on the band's edge ({edge:g}x), so a finer grid decides it only if a choice moves off "
            f"it (the grids' steps now put it anywhere in {ratio / spread:.3g}x-{ratio * spread:.3g}x)."
        )
    return (
        f"both grids' neighbours at most {step:.3g}x apart around their choices (now {spread:.3g}x combined), "
        f"if the choices stay; the range now straddles {edge:g}x."
    )
