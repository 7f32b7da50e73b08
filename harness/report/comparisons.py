"""The quality comparisons a sweep's records can make, example by example: every method against full FT, each
LoRA rank against the next, nf4 against fp4, double quantisation against none, QLoRA against LoRA of its rank;
and the learning curves that say at what training budget a gap was measured and whether it could still move.

Why a module: the trade-off report, its claims and `budget` state the same gaps with the same errors
(harness/report/paired.py over the per-example files); computed once here, they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.report.frames import EXAMPLE_METRICS, paired_gap, plain_methods

# Validation loss that fell by more than this share over the last interval of the learning curve: the method was
# still improving when training stopped, so more steps could move its score and any gap it is part of.
STILL_IMPROVING_PCT = 1.0


VARIANT_VS_PLAIN = "LoRA variant minus plain LoRA"


def comparison_pairs(variants: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(what is compared, a, b) for the gap a - b, over the variants present: the documents' comparisons among
    full FT, LoRA and QLoRA as such, then each LoRA variant (DoRA, PiSSA, ...) against plain LoRA (or QLoRA) of
    its rank and base, the one comparison a variant's claims speak of."""
    every = variants
    variants = plain_methods(variants)
    labels = list(variants["label"])
    by = variants.set_index("label")
    pairs = []
    full = [label for label in labels if by.loc[label, "method"] == "full"]
    if full:
        pairs += [("below full FT", full[0], label) for label in labels if label != full[0]]
    lora = variants[variants["method"] == "lora"].sort_values("r")
    for (_, low), (_, high) in zip(lora.iloc[:-1].iterrows(), lora.iloc[1:].iterrows(), strict=True):
        pairs.append(("gain from a higher rank", high["label"], low["label"]))
    qlora = variants[variants["method"] == "qlora"].assign(
        double_quant=lambda v: v["double_quant"].fillna(False).astype(bool)
    )
    for _, q in qlora.iterrows():
        same = qlora[(qlora["r"] == q["r"]) & (qlora["double_quant"] == q["double_quant"])]
        if q["quant_type"] == "nf4":
            fp4 = same[same["quant_type"] == "fp4"]
            pairs += [("nf4 minus fp4", q["label"], f["label"]) for _, f in fp4.iterrows()]
        if q["double_quant"]:
            plain = qlora[(qlora["r"] == q["r"]) & (qlora["quant_type"] == q["quant_type"]) & ~qlora["double_quant"]]
            pairs += [("double quantisation minus none", q["label"], p["label"]) for _, p in plain.iterrows()]
        if q["quant_type"] == "nf4" and not q["double_quant"]:
            twin = lora[lora["r"] == q["r"]]
            pairs += [("LoRA minus QLoRA (the 4-bit base)", t["label"], q["label"]) for _, t in twin.iterrows()]
    plain = variants.assign(double_quant=variants["double_quant"].fillna(False).astype(bool))
    for _, v in every[every["adapter_variant"].fillna("") != ""].iterrows():
        same = (
            (plain["method"] == v["method"])
            & (plain["r"] == v["r"])
            & (plain["quant_type"].fillna("") == ("" if pd.isna(v["quant_type"]) else v["quant_type"]))
            & (plain["double_quant"] == (False if pd.isna(v["double_quant"]) else bool(v["double_quant"])))
        )
        pairs += [(VARIANT_VS_PLAIN, v["label"], p["label"]) for _, p in plain[same].iterrows()]
    return pairs


def comparisons(examples: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """One row per pair and metric with the paired gap (points), its 95 % interval, the relative gap, the
    pairing (seeds, examples), McNemar's p where one seed, and the unpaired error for contrast."""
    rows = []
    for what, a, b in comparison_pairs(variants):
        for metric, name in EXAMPLE_METRICS.items():
            g = paired_gap(examples, a, b, metric)
            if g is None:
                continue
            rows.append(
                {
                    "comparison": what,
                    "a": a,
                    "b": b,
                    "metric": name,
                    "a score": g.a_mean,
                    "b score": g.b_mean,
                    "gap": g.gap,
                    "half_width": g.half_width,
                    "df": g.df,
                    "rel_gap_pct": g.rel_gap_pct,
                    "rel_half_width_pct": g.rel_half_width_pct,
                    "seeds": ",".join(map(str, g.seeds)) or "seed means",
                    "seed_variance": g.seed_variance_included,
                    "n": g.n_examples,
                    "mcnemar_p": g.mcnemar_p,
                    "unpaired_half_width": 2 * g.unpaired_se,
                }
            )
    return pd.DataFrame(rows)


def comparisons_table(table: pd.DataFrame) -> pd.DataFrame:
    """The comparisons as the report prints them (points = score x 100)."""
    if table.empty:
        return table

    def rel(row) -> str:
        if row["rel_gap_pct"] is None or pd.isna(row["rel_gap_pct"]):
            return "-"
        return f"{row['rel_gap_pct']:+.1f} % ± {row['rel_half_width_pct']:.1f}"

    return pd.DataFrame(
        {
            "comparison": table["comparison"],
            "a - b": table["a"] + " - " + table["b"],
            "metric": table["metric"],
            "a": table["a score"].map("{:.3f}".format),
            "b": table["b score"].map("{:.3f}".format),
            "gap, points ± 95 %": [
                f"{g * 100:+.1f} ± {h * 100:.1f}" for g, h in zip(table["gap"], table["half_width"], strict=True)
            ],
            "relative to a": table.apply(rel, axis=1),
            "seeds paired": [
                s + ("" if v else " (no seed variance)")
                for s, v in zip(table["seeds"], table["seed_variance"], strict=True)
            ],
            # the t multiplier's degrees of freedom: few where the seeds' variance carries the error
            "t df": table["df"].map(lambda d: "-" if pd.isna(d) else f"{d:.1f}" if d < 1000 else "inf"),
            "examples": table["n"],
            "McNemar p": table["mcnemar_p"].map(lambda p: "-" if p is None or pd.isna(p) else f"{p:.3g}"),
            "unpaired ± 2 SE": (table["unpaired_half_width"] * 100).map("{:.1f}".format),
        }
    )


def training_budget(records: list[dict]) -> str:
    """The training budget the records share, in words: steps, batch, examples seen and the share of an epoch."""
    if not records:
        return "no records"
    train, dataset = records[0]["config"]["train"], records[0]["config"].get("dataset", {})
    steps = records[0].get("metrics", {}).get("steps") or train.get("max_steps")
    batch = int(train.get("batch_size") or 1) * int(train.get("grad_accum") or 1)
    if steps is None:
        return f"an unrecorded number of steps of {batch} examples"
    seen = int(steps) * batch
    n_train = dataset.get("n_train")
    epochs = f", {seen / n_train:.2f} of an epoch of {n_train}" if n_train else ""
    return f"{steps} steps x {batch} examples = {seen} training examples{epochs}, {train.get('lr_scheduler')} schedule"


def curve_table(records: list[dict]) -> tuple[pd.DataFrame | None, str]:
    """Validation loss along training per method (seeds averaged), the last interval's drop and whether the method
    was still improving; a note naming the budget."""
    from harness.report.frames import learning_curves

    curves = learning_curves(records)
    budget = training_budget(records)
    if curves.empty:
        return None, (
            f"Training budget: {budget}. No learning curve in these records (`eval.curve_points`, written since "
            "2026-12-02): whether the methods had stopped improving is not known."
        )
    rows = []
    for label, group in curves.groupby("label", sort=False):
        points = pd.DataFrame(list(group["curve"])).mean()
        drop = float(group["last_drop_pct"].mean())
        row = {"method": label, "seeds": len(group)}
        row.update({f"val loss @ {int(step)}": round(float(v), 4) for step, v in points.items()})
        low, high = group["last_interval"].iloc[0]
        row[f"drop {low}-{high} %"] = round(drop, 2)
        row["still improving"] = "yes" if drop > STILL_IMPROVING_PCT else "no"
        rows.append(row)
    note = (
        f"Training budget: {budget}. Validation loss on the validation split at evenly spaced steps (timed apart "
        f"from training). 'still improving': it fell by more than {STILL_IMPROVING_PCT:g} % over the last "
        "interval, so more training could still move that method's score and every gap it is part of; the gaps "
        "below hold at this budget."
    )
    return pd.DataFrame(rows), note


def still_improving(curves: pd.DataFrame, labels: list[str]) -> list[str]:
    """Of `labels`, those whose validation loss was still falling at the end (see curve_table); `curves` is
    frames.learning_curves of the records."""
    if curves.empty:
        return []
    means = curves.groupby("label")["last_drop_pct"].mean()
    return [label for label in labels if label in means and means[label] > STILL_IMPROVING_PCT]


@dataclass(frozen=True)
class QualityEvidence:
    """What the claims and `budget` read of a sweep's quality: the paired comparisons, the runs that lack
    per-example results, the training budget and the methods still improving at its end."""

    table: pd.DataFrame
    missing: tuple[str, ...]
    budget: str
    still_improving: tuple[str, ...]
    # the labels whose records have a learning curve: of the others, whether they had stopped is not known
    with_curve: tuple[str, ...] = ()
    # the labels with per-example results
    scored: tuple[str, ...] = ()

    def seed_variance_measured(self) -> str | None:
        """Where any comparison here ran two or more seeds on both sides, the narrowest of their exact-match gaps'
        intervals (below full FT's first), as text; None where none did.

        Once the records measure how far seeds move a gap, a one-seed gap's interval (over test examples only) is
        known to leave that out, and decides nothing: claims and the summary leave such a gap undecided."""
        if self.table.empty or "seed_variance" not in self.table:
            return None
        rows = self.table[self.table["seed_variance"].astype(bool) & (self.table["metric"] == "exact match")]
        if rows.empty:
            return None
        below_full = rows[rows["comparison"] == "below full FT"]
        row = (below_full if not below_full.empty else rows).sort_values("half_width").iloc[0]
        return (
            f"{row['a']} - {row['b']} ±{100 * float(row['half_width']):.1f} points over seeds {row['seeds']}, the "
            "narrowest such interval"
        )

    def decides(self, row: pd.Series) -> bool:
        """Whether a comparison row's interval can carry a verdict: it has the seeds' variance in it, or no
        comparison here measured that variance (see seed_variance_measured)."""
        return bool(row["seed_variance"]) or self.seed_variance_measured() is None

    def budget_text(self, labels: list[str]) -> str:
        """At what budget a comparison of `labels` holds, and whether it could still move."""
        text = f"at {self.budget}"
        improving = [label for label in labels if label in self.still_improving]
        unknown = [label for label in labels if label not in self.with_curve]
        if improving:
            text += f"; still improving at the end: {', '.join(improving)}, so more training could move these gaps"
        if unknown:
            text += f"; no learning curve for {', '.join(unknown)}, so whether they had stopped improving is not known"
        if not improving and not unknown:
            text += (
                "; every compared method's validation loss had levelled off "
                f"(last interval under {STILL_IMPROVING_PCT:g} %)"
            )
        return text


def quality_evidence(records: list[dict], variants: pd.DataFrame) -> QualityEvidence:
    """The paired comparisons and training budget of `records`, each file read once."""
    from harness.report.frames import examples_frame, learning_curves

    examples, missing = examples_frame(records)
    table = comparisons(examples, variants) if not variants.empty else pd.DataFrame()
    labels = list(variants["label"]) if not variants.empty else []
    curves = learning_curves(records)
    return QualityEvidence(
        table,
        tuple(missing),
        training_budget(records),
        tuple(still_improving(curves, labels)),
        tuple(sorted(set(curves["label"]))) if not curves.empty else (),
        tuple(dict.fromkeys(examples["label"])),
    )
