"""The documents' claims checked against run records: measured value(s) and a verdict for each.

The claims are data (claims.yaml); each names a check, in this package's modules by what it is about
(memory.py, quality.py, speed.py, quantisation.py; verdicts.py holds the verdicts and the rules they share).
A check gets the per-run frame and the per-variant frame (runs of one method label averaged over seeds,
frames.py) and returns what was measured and one of the verdicts, with the reason. Nothing here knows a result
in advance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from harness.predict.calibration import calibrate
from harness.report.claims.memory import adapter_size, memory_at_scale, rank_linear, trainable_share
from harness.report.claims.quality import lr_ratio, rank_quality, score_gap, variant_gap
from harness.report.claims.quantisation import _spikes, nf4_vs_fp4
from harness.report.claims.speed import grad_accum, merge_latency, speed_order
from harness.report.claims.verdicts import FAILS, HOLDS, INCONCLUSIVE, PARTLY, UNTESTABLE, judged
from harness.report.comparisons import QualityEvidence
from harness.report.frames import plain_methods
from harness.report.lr_report import UNTUNED

if TYPE_CHECKING:
    from harness.predict import memory_model as mm
    from harness.report.lr_report import RateSelection

__all__ = [
    "FAILS",
    "HOLDS",
    "INCONCLUSIVE",
    "PARTLY",
    "UNTESTABLE",
    "_spikes",
    "check_claims",
    "check_memory_claims",
    "load_claims",
]

CLAIMS_FILE = Path(__file__).resolve().parent / "claims.yaml"


def load_claims() -> dict:
    return yaml.safe_load(CLAIMS_FILE.read_text(encoding="utf-8"))


# The checks that read LoRA's variants; the others see full FT, LoRA and QLoRA as such (frames.plain_methods).
VARIANT_CHECKS = {"variant_gap"}


# The checks that compare scores: no verdict from runs whose learning rates were not tuned (lr_report.py).
QUALITY_CHECKS = {"score_gap", "rank_quality", "nf4_vs_fp4", "variant_gap"}


NOT_TUNED = (
    "Learning rates not tuned: each method ran at its config's rate, none chosen by a search on validation data, "
    "so the gap measures the rates as much as the methods; no verdict until the rates are searched "
    "(+sweeps=lr_search, then train.learning_rate_scale=tuned)."
)


CHECKS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, dict], dict]] = {
    f.__name__: f
    for f in (
        memory_at_scale,
        score_gap,
        rank_quality,
        trainable_share,
        rank_linear,
        speed_order,
        nf4_vs_fp4,
        adapter_size,
        merge_latency,
        grad_accum,
        variant_gap,
        lr_ratio,
    )
}


def check_claims(
    runs: pd.DataFrame,
    variants: pd.DataFrame,
    records: list[dict] | None = None,
    calibration: mm.Calibrations | None = None,
    quality: QualityEvidence | None = None,
    rates: RateSelection | None = None,
) -> pd.DataFrame:
    """One row per claim: id, claim, source, measured, verdict, why. `records` (GPU ones) calibrate the memory
    model (unless `calibration` is given) and stand as measurements for the claims at scale; `quality` (the
    paired comparisons of the compared records) decides the quality claims, and `rates` (which runs are at their
    chosen learning rate, lr_report.py) whether they may: runs whose rates were not tuned give no verdict."""

    records = records or []
    extra = {
        "_records": records,
        "_calibration": calibration or calibrate(records),
        "_quality": quality,
        "_rates": rates,
    }
    return _claim_rows(load_claims()["claims"], runs, variants, extra)


def check_memory_claims(records: list[dict], calibration: mm.Calibrations | None = None) -> pd.DataFrame:
    """The memory claims at scale alone (id, claim, source, needs, measured, verdict, why): what a scale sweep's
    GPU records can decide, with no trained scores needed."""
    extra = {"_records": records, "_calibration": calibration or calibrate(records)}
    memory = [c for c in load_claims()["claims"] if CHECKS[c["check"]] is memory_at_scale]
    return _claim_rows(memory, pd.DataFrame(), pd.DataFrame(), extra)


def _left_out_for_rates(rates: RateSelection) -> str:
    """Where a quality claim finds none of the runs it needs among the compared ones, the runs the records do hold
    but the comparison left out for their learning rates: "needs a DoRA run" is not the whole story when DoRA ran,
    at a rate no search chose."""
    untuned = sorted(set(rates.left_out.get(UNTUNED, [])))
    if not untuned:
        return ""
    return (
        f" (the records hold runs of {', '.join(untuned)}, left out of every comparison: no search chose their rates)"
    )


def _claim_rows(claims: list[dict], runs: pd.DataFrame, variants: pd.DataFrame, extra: dict) -> pd.DataFrame:
    """Each claim checked on the runs it speaks of: LoRA's variants only for the claims about them, so a DoRA run
    never stands for "LoRA" in the documents' claims."""
    rows = []
    plain_runs, plain_variants = plain_methods(runs), plain_methods(variants)
    for claim in claims:
        on_variants = claim["check"] in VARIANT_CHECKS
        result = CHECKS[claim["check"]](
            runs if on_variants else plain_runs,
            variants if on_variants else plain_variants,
            {**claim.get("params", {}), **extra},
        )
        rates = extra.get("_rates")
        if claim["check"] in QUALITY_CHECKS and rates is not None and not rates.tuned:
            result = judged(result["measured"], INCONCLUSIVE, f"{NOT_TUNED} {result['why']}")
        elif claim["check"] in QUALITY_CHECKS and result["verdict"] == UNTESTABLE and rates is not None:
            result = {**result, "why": result["why"] + _left_out_for_rates(rates)}
        rows.append(
            {"id": claim["id"], "claim": claim["claim"], "source": claim["source"], "needs": claim["needs"], **result}
        )
    return pd.DataFrame(rows)
