"""The trade-off report's first screen: which method to pick, at what cost, and how sure, in a few sentences.

The rule, stated on the page: among the methods compared with full FT example by example, pick the one with the
least peak (the decision table's: measured on a GPU, else predicted) whose exact match is within TOLERANCE_PCT of
full FT's with 95 % confidence (the upper end of the paired gap's interval inside it: the documents' "> 95 % of
full FT"). Where every method is surely further below, full FT is the pick; where the intervals are too wide to
tell, no pick is made and the page says what would decide it. "How sure" says what the gap rests on: each method at
its own tuned learning rate or not, the seeds, the training budget and whether the methods were still improving.
"""

from __future__ import annotations

import pandas as pd

from harness.report.comparisons import QualityEvidence
from harness.report.lr_report import RateSelection
from harness.report.paired import seeds_to_decide, t_quantile

BELOW_FULL = "below full FT"


def _gaps_below_full(quality: QualityEvidence) -> pd.DataFrame:
    table = quality.table
    if table.empty:
        return table
    rows = table[(table["comparison"] == BELOW_FULL) & (table["metric"] == "exact match")]
    return rows.set_index("b")


TOLERANCE_PCT = 5.0


def _seed_spread(variants: pd.DataFrame) -> str:
    """How much one method's exact match moved between its seeds, where any ran several: the size of what a
    one-seed error leaves out."""
    if "n_seeds" not in variants:
        return ""
    several = variants[variants["n_seeds"].fillna(1) > 1]
    if several.empty:
        return ""
    spread = ", ".join(
        f"{r['label']} {100 * r['score_std']:.1f} points ({int(r['n_seeds'])} seeds)" for _, r in several.iterrows()
    )
    return f"; exact match's standard deviation over seeds, where a method ran several: {spread}"


MAX_SEEDS_NAMED = 30  # beyond this many seeds, "more seeds" is not a plan worth naming a number for


def _what_would_decide(gap: float, half: float, row: pd.Series) -> str:
    """What would take an undecided gap's interval to one side of the tolerance line. Where the seeds' spread is in
    the error and carries it (few degrees of freedom), more test examples barely help: the seeds needed are named,
    were the gap and the spread to stay as measured (the error shrinks as 1/sqrt(seeds), t's quantile with them)."""
    seeds = [s for s in str(row["seeds"]).split(",") if s.strip().isdigit()]
    if not (bool(row["seed_variance"]) and len(seeds) > 1 and float(row["df"]) < 30):
        return "More seeds or test examples would decide"
    tolerance = TOLERANCE_PCT * float(row["a score"])  # in points, as gap and half
    n, se, distance = len(seeds), half / t_quantile(0.975, float(row["df"])), abs(gap - tolerance)
    needed = seeds_to_decide(se, n, distance, limit=MAX_SEEDS_NAMED)
    where = (
        f"about {needed} seeds of each would, were the gap and the spread to stay as measured"
        if needed
        else f"even {MAX_SEEDS_NAMED} seeds would not, were the gap to stay as measured"
    )
    return (
        f"More seeds would decide, not more test examples: the seeds' spread makes this interval wide (t with "
        f"{float(row['df']):.1f} degrees of freedom over {n} seeds); {where}"
    )


def _listed(entries: list[tuple[float, str, float, float]]) -> str:
    """(peak, label, gap, half) entries as 'label +gap ± half', comma-separated."""
    return ", ".join(f"{label} {gap:+.1f} ± {half:.1f}" for _, label, gap, half in entries)


def first_screen(variants: pd.DataFrame, quality: QualityEvidence, rates: RateSelection, decision: pd.DataFrame) -> str:
    """A few sentences: the pick, its cost against full FT, and how sure the evidence makes it."""
    if variants.empty or not (variants["score"].fillna(0) > 0).any():
        return (
            "No pick: no method scored above 0 exact match here (training too short, or nothing scored), so the "
            "methods' quality cannot be told apart. The memory and speed figures below are measured all the same."
        )
    gaps = _gaps_below_full(quality)
    if "full" not in set(variants["label"]) or gaps.empty or decision.empty:
        best = variants.sort_values(["score", "field_acc"]).iloc[-1]
        return (
            f"Highest exact match: **{best['label']}** ({best['score']:.3f}). No full-FT run is paired with the "
            "others on the same test examples, so no method's cost in quality is measured and no pick is made."
        )
    peaks = decision.set_index("method")
    full_peak = float(peaks.loc["full", "peak GiB"]) if "full" in peaks.index else float("nan")
    within, undecided, below = [], [], []
    for label, row in gaps.iterrows():
        if label not in peaks.index:
            continue
        gap, half = 100 * float(row["gap"]), 100 * float(row["half_width"])
        tolerance = TOLERANCE_PCT / 100 * 100 * float(row["a score"])
        entry = (float(peaks.loc[label, "peak GiB"]), label, gap, half)
        if not quality.decides(row):  # one seed, while seeds measurably move gaps here: no side taken
            undecided.append(entry)
            continue
        (within if gap + half <= tolerance else below if gap - half > tolerance else undecided).append(entry)
    source = str(peaks["peak from"].iloc[0]).split(" (")[0]
    if within:
        peak, label, gap, half = min(within)
        text = (
            f"**Pick {label}.** Its peak is {peak:.2f} GiB against full FT's {full_peak:.2f} ({source}), and its "
            f"exact match is within {TOLERANCE_PCT:g} % of full FT's with 95 % confidence (full FT minus it: "
            f"{gap:+.1f} ± {half:.1f} points, paired on the same test examples)."
        )
    elif undecided:
        seeded = [e for e in undecided if quality.decides(gaps.loc[e[1]])]
        one_seed = sorted(e for e in undecided if e not in seeded)
        measured = quality.seed_variance_measured()
        if seeded:
            peak, label, gap, half = min(seeded)
            others = _listed(sorted(seeded)[1:4])
            why = (
                f"an interval that reaches both sides of the {TOLERANCE_PCT:g} % line"
                + (f" (so do {others})" if others else "")
                + f". {_what_would_decide(gap, half, gaps.loc[label])}"
            )
            tail = (
                f" Undecided too, from one seed whatever their interval (over test examples only, while seeds move "
                f"these gaps here: {measured}): {_listed(one_seed[:4])}."
                if one_seed
                else ""
            )
        else:
            peak, label, gap, half = one_seed[0]
            why = (
                "from one seed, over test examples only, while seeds move these gaps here "
                f"({measured}): no side of the {TOLERANCE_PCT:g} % line is taken"
                + (f" (nor for {_listed(one_seed[1:4])})" if len(one_seed) > 1 else "")
                + ". More seeds of each would decide, not more test examples"
            )
            tail = ""
        text = (
            f"**No pick yet.** The cheapest method {'measured over several seeds ' if seeded and one_seed else ''}"
            f"that may be within {TOLERANCE_PCT:g} % of full FT's exact match, {label} ({peak:.2f} GiB against "
            f"{full_peak:.2f}, {source}): full FT minus it is {gap:+.1f} ± {half:.1f} points, {why}; until then full "
            "FT is the safe choice where it fits." + tail
        )
    else:
        peak, label, gap, half = min(below)
        text = (
            f"**Pick full FT where it fits.** Every method compared is more than {TOLERANCE_PCT:g} % below its exact "
            f"match; the cheapest, {label} ({peak:.2f} GiB against {full_peak:.2f}, {source}), by {gap:+.1f} ± "
            f"{half:.1f} points. The table below says which card fits which method."
        )
    row = gaps.loc[label]
    seeds = f"Seeds paired: {row['seeds']}" + (
        "." if row["seed_variance"] else f" (the seeds' spread is not in the error{_seed_spread(variants)})."
    )
    tuned = (
        "Each method ran at its own learning rate, chosen on validation data."
        if rates.tuned
        else "**Not a verdict:** the learning rates were not tuned, so the gaps measure the rates as much as the "
        "methods."
    )
    return " ".join([text, tuned, seeds, f"Measured {quality.budget_text(['full', label])}."])
