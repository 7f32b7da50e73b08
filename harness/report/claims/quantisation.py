"""The claim about QLoRA's two 4-bit types, nf4 against fp4: quality, stability of the loss and memory, side
by side on one quantisation configuration."""

from __future__ import annotations

import math

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
from harness.report.paired import seeds_to_decide, t_quantile


def _spikes(losses: list[float], ratio: float, window: int) -> int:
    """Logged losses above `ratio` times the median of the `window` before them."""
    count = 0
    for i in range(window, len(losses)):
        if losses[i] > ratio * float(np.median(losses[i - window : i])):
            count += 1
    return count


def _one_quant_configuration(q: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The QLoRA runs of the one (rank, double quantisation) setting that has nf4 and fp4 runs with the most seeds
    of the scarcer format (without double quantisation on a tie), and its name: runs that differ in nothing but
    the format, so their seeds are replicates. Runs with and without double quantisation are not seeds of one
    another (before 2026-12-03 they were pooled as if they were)."""
    dq = q["double_quant"] if "double_quant" in q else pd.Series(False, index=q.index)
    q = q.assign(double_quant=dq.fillna(False).astype(bool))
    best, best_key = q.iloc[0:0], (-1, 0)
    for (r, dq), group in q.groupby(["r", "double_quant"], sort=True):
        seeds = [group[group["quant_type"] == quant]["seed"].nunique() for quant in ("nf4", "fp4")]
        key = (min(seeds), 0 if dq else 1)
        if min(seeds) > 0 and key > best_key:
            best, best_key, name = group, key, f"r{int(r)}{', double quantisation' if dq else ''}"
    return (best, name) if best_key[0] > 0 else (best, "")


def _welch(samples: list[pd.Series]) -> tuple[float, float]:
    """The standard error of the difference of two means and its Welch-Satterthwaite degrees of freedom: with
    three seeds each, two standard errors would call a difference that t's quantile (2.8 at 4 df) does not."""
    parts = [float(v.var(ddof=1)) / len(v) for v in samples]
    se = math.sqrt(sum(parts))
    denominator = sum(p**2 / (len(v) - 1) for p, v in zip(parts, samples, strict=True))
    return se, (se**4 / denominator if denominator > 0 else float(sum(len(v) - 1 for v in samples)))


def nf4_vs_fp4(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    q = runs[runs["method"] == "qlora"]
    if set(q["quant_type"]) < {"nf4", "fp4"}:
        return judged("-", UNTESTABLE, "needs QLoRA runs with nf4 and with fp4")
    q, configuration = _one_quant_configuration(q)
    if q.empty:
        return judged("-", UNTESTABLE, "needs nf4 and fp4 runs of one rank and one double-quantisation setting")
    stats = {}
    for quant in ("nf4", "fp4"):
        sub = q[q["quant_type"] == quant]
        spikes = [_spikes(losses, params["spike_ratio"], params["window"]) for losses in sub["losses"]]
        stats[quant] = {
            "spikes": float(np.mean(spikes)),
            "score": float(sub["score"].mean()),
            "forgetting": float(sub["forgetting_delta"].mean()) if sub["forgetting_delta"].notna().any() else None,
            "runs": len(sub),
        }
    n, f = stats["nf4"], stats["fp4"]
    missing = evidence_gaps(q, gpu=False)
    logged = min((len(losses) for losses in q["losses"]), default=0)
    if logged < 2 * params["window"]:
        missing.append(
            f"longer runs: a spike is judged against the {params['window']} losses before it, and the shortest run "
            f"logged {logged} (at least {2 * params['window']} needed)"
        )
    # -1: nf4 better (fewer spikes / less forgetting), 1: worse, 0: no measurable difference
    compare = [int(np.sign(n["spikes"] - f["spikes"]))]
    forgetting_error, forgetting_needs = "", ""
    if n["forgetting"] is not None and f["forgetting"] is not None:
        diff = n["forgetting"] - f["forgetting"]
        by_quant = {quant: q[q["quant_type"] == quant]["forgetting_delta"].dropna() for quant in ("nf4", "fp4")}
        if min(len(v) for v in by_quant.values()) < 2:
            # one run each: the seed-to-seed spread of forgetting is unknown, so no difference of it is evidence
            missing.append(
                f"two or more seeds of nf4 and of fp4: their forgetting differs by {diff:+.4f} in one run each, "
                "with no seed-to-seed error"
            )
        else:
            se, df = _welch(list(by_quant.values()))
            half = t_quantile(0.975, df) * se if se > 0 else 0.0
            forgetting_error = (
                f"; forgetting nf4 - fp4: {diff:+.4f} ± {half:.4f} (95 %, Welch's t over seeds, {df:.1f} df)"
            )
            measurable = abs(diff) >= params["forgetting_tie"] and abs(diff) > half
            compare.append(int(np.sign(diff)) if measurable else 0)
            if not measurable and abs(diff) >= params["forgetting_tie"] and se > 0:
                # the interval shrinks as 1/sqrt(seeds), and t's quantile with the degrees of freedom they bring: how
                # many seeds each would put this difference outside it, were the spread to stay
                each = min(len(v) for v in by_quant.values())
                needed = seeds_to_decide(se, each, abs(diff), df_per_seed=df / (each - 1))
                forgetting_needs = (
                    f"more seeds: forgetting differs by {diff:+.4f}, inside its 95 % interval (± {half:.4f}, "
                    f"{each} seeds each); at this seed-to-seed spread about {needed} seeds of each would take a "
                    "difference of this size outside it"
                )
            elif not measurable:
                forgetting_needs = (
                    f"forgetting: nf4 and fp4 differ by {diff:+.4f}, under the {params['forgetting_tie']} tie, which "
                    "more seeds would not change"
                )
    if all(c == 0 for c in compare):
        verdict = INCONCLUSIVE
        if not missing:
            # a tie on both: say what could separate them, not only that they tie
            missing.append(
                f"loss spikes: none to compare (nf4 {n['spikes']:.1f}, fp4 {f['spikes']:.1f} per run over "
                f"{logged}+ logged losses): longer or less stable runs (a higher learning rate) could show some"
                if n["spikes"] == f["spikes"] == 0
                else f"loss spikes: the same rate in both ({n['spikes']:.1f} per run)"
            )
            if forgetting_needs:
                missing.append(forgetting_needs)
    elif all(c <= 0 for c in compare):
        verdict = HOLDS
    elif all(c >= 0 for c in compare):
        verdict = FAILS
    else:
        verdict = PARTLY

    def describe(s: dict) -> str:
        forgetting = f"{s['forgetting']:+.4f}" if s["forgetting"] is not None else "n/a"
        return f"{s['spikes']:.1f} loss spikes/run, forgetting {forgetting}, score {s['score']:.3f} ({s['runs']} runs)"

    quality = params.get("_quality")
    paired_text = ""
    if quality is not None and not quality.table.empty:
        rows = quality.table[quality.table["comparison"] == "nf4 minus fp4"]
        paired_text = "".join(
            f"; {row['metric']} nf4 - fp4 ({row['a']} - {row['b']}), paired: "
            f"{100 * row['gap']:+.1f} ± {100 * row['half_width']:.1f} points"
            for _, row in rows.iterrows()
        )
    return decide(
        f"{configuration}: nf4: {describe(n)}; fp4: {describe(f)}{forgetting_error}{paired_text}",
        verdict,
        f"a spike is a logged loss above {params['spike_ratio']}x the median of the {params['window']} before it; "
        "forgetting is the rise in loss on general text (not the task) from before to after training. "
        f"Holds if nf4 is better on one and no worse on the other (forgetting differences under "
        f"{params['forgetting_tie']} or within their 95 % interval over seeds count as ties; with one seed of "
        "either, forgetting is not compared); inconclusive when they tie on both.",
        missing,
    )
