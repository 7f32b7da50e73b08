"""The verdicts a claim can get, and the rules shared by the checks that give them."""

from __future__ import annotations

import pandas as pd

HOLDS, FAILS, PARTLY, INCONCLUSIVE, UNTESTABLE = (
    "holds",
    "does not hold",
    "partly holds",
    "inconclusive",
    "not testable here",
)


def judged(measured: str, verdict: str, why: str) -> dict:
    """A claim's row: what was measured, its verdict, and why."""
    return {"measured": measured, "verdict": verdict, "why": why}


def decide(measured: str, verdict: str, why: str, missing: list[str]) -> dict:
    """The verdict, or "inconclusive" naming what the evidence lacks."""
    if missing:
        return judged(measured, INCONCLUSIVE, "missing: " + "; ".join(missing) + f". {why}")
    return judged(measured, verdict, why)


def evidence_gaps(runs: pd.DataFrame, *, gpu: bool) -> list[str]:
    """What every measured claim needs: runs at the full profile (a smoke profile trains a few steps and scores
    a handful of examples), and for speed, memory and latency, runs on a GPU."""
    missing = []
    smoke = sorted(set(runs["profile"].dropna()) - {"full"}) if "profile" in runs else []
    if smoke:
        missing.append(f"runs at the full profile (these use the reduced profile {', '.join(smoke)})")
    if gpu and not (runs["device"] == "cuda").all():
        missing.append("runs on a GPU (CPU timings and memory do not carry over to one)")
    return missing


def gap_verdict(gap: float, half_width: float, max_gap: float) -> str:
    if gap + half_width <= max_gap:
        return HOLDS
    if gap - half_width > max_gap:
        return FAILS
    return INCONCLUSIVE


def combine_verdicts(verdicts: list[str]) -> str:
    if not verdicts:
        return INCONCLUSIVE
    if len(set(verdicts)) == 1:
        return verdicts[0]
    return PARTLY if HOLDS in verdicts else INCONCLUSIVE
