"""Claims about speed: the methods' throughput order, the latency of a merged adapter, and gradient
accumulation's cost."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.report.claims.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    PARTLY,
    UNTESTABLE,
    decide,
    evidence_gaps,
    judged,
)


def speed_order(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    best = {}
    for method in ("full", "lora", "qlora"):
        sub = variants[variants["method"] == method]
        if not sub.empty:
            best[method] = sub.sort_values("tokens_per_s").iloc[-1]
    if len(best) < 3:
        return judged("-", UNTESTABLE, "needs full FT, LoRA and QLoRA runs with the same batch and sequence length")
    order = sorted(best, key=lambda m: best[m]["tokens_per_s"])
    measured = ", ".join(f"{best[m]['label']} {best[m]['tokens_per_s']:.0f}" for m in order)
    claimed = ["full", "lora", "qlora"]
    verdict = HOLDS if order == claimed else PARTLY if order[0] == "full" else FAILS
    return decide(
        f"non-padding tokens/s, slowest first (fastest variant of each method): {measured}",
        verdict,
        "claimed order, slowest first: full, LoRA, QLoRA. QLoRA dequantises every 4-bit weight in each "
        "forward and backward pass, so it trades speed for memory.",
        evidence_gaps(runs, gpu=True),
    )


def merge_latency(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    lora = runs[(runs["method"] == "lora") & runs["latency_merged"].notna()]
    if lora.empty:
        return judged("-", UNTESTABLE, "needs LoRA runs with inference latency measured (eval.latency_prompts > 0)")
    merged = (lora["latency_merged"] / lora["latency_base"] - 1).mean() * 100
    unmerged = (lora["latency_unmerged"] / lora["latency_base"] - 1).mean() * 100
    q = runs[(runs["method"] == "qlora") & runs["latency_unmerged"].notna()]
    qpart = (
        f"; QLoRA (4-bit base + adapter) {((q['latency_unmerged'] / q['latency_base'] - 1).mean() * 100):+.1f} %"
        if not q.empty
        else ""
    )
    neg = params["negligible_pct"]
    missing = evidence_gaps(lora, gpu=True)
    prompts, tokens = int(lora["latency_prompts"].fillna(1).min()), int(lora["latency_new_tokens"].min())
    if prompts < params["min_prompts"] or tokens < params["min_new_tokens"]:
        missing.append(
            f"latency over at least {params['min_prompts']} prompts x {params['min_new_tokens']} new tokens "
            f"(measured over {prompts} x {tokens}: one slow prompt moves the mean by more than the {neg:g} % band)"
        )
    ok_merged = merged <= neg
    ok_unmerged = unmerged > merged + neg
    verdict = HOLDS if ok_merged and ok_unmerged else FAILS if not ok_merged and not ok_unmerged else PARTLY
    return decide(
        f"latency vs the base model, mean over {len(lora)} LoRA run(s): merged {merged:+.1f} %, "
        f"unmerged {unmerged:+.1f} %{qpart}",
        verdict,
        f"negligible = within {neg:g} % of the base; 'unmerged slower' = more than {neg:g} points above merged. "
        f"Greedy generation, batch 1, {prompts} prompt(s) x {tokens} new tokens.",
        missing,
    )


def grad_accum(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    groups = runs.groupby("grad_accum")
    if runs["grad_accum"].nunique() < 2:
        return judged(
            f"grad_accum values in these runs: {sorted(int(a) for a in runs['grad_accum'].unique())}",
            UNTESTABLE,
            "needs runs that differ in train.grad_accum at equal data, e.g. "
            "`+sweeps=tradeoff train.grad_accum=1,8 train.reference_batch=4 train.max_steps=64` (max_steps in "
            "steps of 4 examples: 64 steps at accumulation 1, 8 at 8, the same 256 examples)",
        )
    parts = []
    for accum, sub in groups:
        cv = [np.std(losses[len(losses) // 2 :]) for losses in sub["losses"] if len(losses) > 3]
        parts.append(f"accum {accum}: loss std (2nd half) {np.mean(cv):.4f}" if cv else f"accum {accum}: -")
    return judged("; ".join(parts), INCONCLUSIVE, "compare at equal examples seen; shown for reading, no verdict")
