"""The documents' claims checked against run records: measured value(s) and a verdict for each.

The claims are data (claims.yaml); each names a check here. A check gets the per-run frame and the
per-variant frame (runs of one method label averaged over seeds, see report.py) and returns what was
measured and one of the verdicts below, with the reason. Nothing here knows a result in advance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml

from harness.calibration import calibrate, measured_peak

if TYPE_CHECKING:
    from harness import memory_model as mm

CLAIMS_FILE = Path(__file__).resolve().parent / "claims.yaml"

HOLDS, FAILS, PARTLY, INCONCLUSIVE, UNTESTABLE = (
    "holds",
    "does not hold",
    "partly holds",
    "inconclusive",
    "not testable here",
)


def load_claims() -> dict:
    return yaml.safe_load(CLAIMS_FILE.read_text(encoding="utf-8"))


def _result(measured: str, verdict: str, why: str) -> dict:
    return {"measured": measured, "verdict": verdict, "why": why}


def _score_se(row: pd.Series, metric: str = "score") -> float:
    """Standard error of a variant's mean score: across seeds when there are several, else binomial over
    test examples (for field accuracy too: fields of one example are not independent draws)."""
    if metric == "score" and row.get("n_seeds", 1) > 1 and not math.isnan(row.get("score_std", float("nan"))):
        return row["score_std"] / math.sqrt(row["n_seeds"])
    p, n = row[metric], max(row["n_test"], 1)
    return math.sqrt(max(p * (1 - p), 1 / n) / n)  # at least one example's worth, so 0 % or 100 % is not exact


def memory_at_scale(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    """A memory claim about a 7B-70B model, checked at the stated conditions: against a GPU record of exactly
    those conditions where one exists (the scale sweep), else against the memory model's prediction, whose
    arithmetic is shown and whose calibration (or lack of it) is stated."""
    from harness import budget
    from harness import memory_model as mm

    calibration = params.get("_calibration") or mm.Calibrations()
    name, arch = budget.architecture_of(params["model"])
    setting = mm.Setting(
        method=params["method"],
        batch=params.get("batch", 1),
        seq_len=params.get("seq_len", 512),
        gradient_checkpointing=params.get("gradient_checkpointing", False),
        optim=params.get("optim", "adamw_torch"),
        quant_type=params.get("quant_type", "nf4"),
        double_quant=params.get("double_quant", False),
    )
    conditions = (
        f"{name} {setting.label}, batch {setting.batch} x {setting.seq_len} tokens, checkpointing "
        f"{'on' if setting.gradient_checkpointing else 'off'}, {setting.optim}"
    )
    measured = measured_peak(params.get("_records") or [], name, setting)
    prediction = mm.predict(arch, setting, calibration)
    if measured and measured[1] == "ok":
        peak, source = measured[0] / mm.GIB, "measured on a GPU"
    else:
        peak, source = prediction.peak_gib, f"memory model, {prediction.calibration.describe()}"
    text = f"{conditions}: {peak:.1f} GiB" + ("" if measured else f" = {prediction.arithmetic()}")
    kind = params["kind"]
    if kind == "above":
        verdict = HOLDS if peak >= params["low_gib"] else FAILS
        why = f"needs {peak:.1f} GiB, claim: more than {params['low_gib']} GB"
    elif kind == "range":
        low, high = params["low_gib"], params["high_gib"]
        best = dataclasses.replace(setting, batch=1, gradient_checkpointing=True)
        best_peak = mm.predict(arch, best, calibration).peak_gib
        text += f"; at batch 1 with checkpointing: {best_peak:.1f} GiB"
        if low * 0.9 <= peak <= high * 1.1:
            verdict = HOLDS
        elif best_peak <= high * 1.1:
            verdict = PARTLY
        else:
            verdict = FAILS
        why = (
            f"claim: {low}-{high} GB (10 % tolerance): holds if the prediction at these conditions is in range, "
            "partly if only at batch 1 with checkpointing"
        )
    elif kind == "fits":
        gpu = params["gpu_gib"]
        verdict = HOLDS if peak <= gpu else FAILS
        weights = mm.static_bytes(mm.cached_shapes(arch), setting)["weights"] / mm.GIB
        why = f"needs {peak:.1f} GiB of a {gpu} GB card (4-bit weights alone: {weights:.1f} GiB)"
    elif kind == "sharded":
        gpu, max_gpus = params["gpu_gib"], params["max_gpus"]
        per_gpu_fixed = sum(v for k, v in prediction.components.items() if k in ("activations", "logits_gradient"))
        sharded = prediction.peak_bytes - per_gpu_fixed
        room = gpu * mm.GIB - per_gpu_fixed
        gpus = math.ceil(sharded / room) if room > 0 else None
        text += f"; fully sharded (ZeRO-3/FSDP) over {gpus} x {gpu} GB" if gpus else "; does not fit even sharded"
        verdict = HOLDS if gpus and gpus <= max_gpus else FAILS
        why = (
            f"weights, gradients and optimizer states ({sharded / mm.GIB:.0f} GiB) split over the cards, activations "
            f"({per_gpu_fixed / mm.GIB:.1f} GiB) on each; 'comfortable' read as at most {max_gpus} cards (one node)"
        )
    else:
        raise ValueError(f"memory_at_scale: unknown kind {kind!r}")
    return _result(text, verdict, f"{why}; {source}" if not measured else f"{why}; {source}")


def score_gap(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    methods = params["method"] if isinstance(params["method"], list) else [params["method"]]
    max_gap = float(params["max_gap_pct"])
    full = variants[variants["method"] == "full"]
    others = variants[variants["method"].isin(methods)]
    if full.empty or others.empty:
        return _result("-", UNTESTABLE, f"needs a full-FT run and a {'/'.join(methods)} run on the same data")
    f = full.iloc[0]
    metric = "score"
    if f["score"] <= 0 and f.get("field_acc", 0) > 0:
        metric = "field_acc"  # no exact match at all (e.g. a few steps): compare per-field accuracy instead
    if f[metric] <= 0:
        return _result(f"full FT score {f['score']:.3f}", UNTESTABLE, "full FT scored 0: no baseline to compare with")
    parts, verdicts = [], []
    for _, o in others.iterrows():
        gap = (f[metric] - o[metric]) / f[metric] * 100
        se = math.hypot(_score_se(f, metric), _score_se(o, metric)) / f[metric] * 100
        parts.append(f"{o['label']}: {gap:+.1f} % (±{2 * se:.1f})")
        if gap <= max_gap:
            verdicts.append(HOLDS)
        elif gap - 2 * se > max_gap:
            verdicts.append(FAILS)
        else:
            verdicts.append(INCONCLUSIVE)
    verdict = verdicts[0] if len(set(verdicts)) == 1 else PARTLY if HOLDS in verdicts else INCONCLUSIVE
    return _result(
        f"{'exact match' if metric == 'score' else 'field accuracy (full FT had no exact match)'} gap below "
        f"full FT ({f[metric]:.3f}), relative: " + "; ".join(parts),
        verdict,
        f"holds where the gap is at most {max_gap:g} %; does not hold where it exceeds that by more than twice "
        f"its standard error (±2 SE shown; test set of {int(f['n_test'])} examples"
        f"{', spread over seeds' if f.get('n_seeds', 1) > 1 else ''}). A negative gap: better than full FT.",
    )


def trainable_share(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    adapters = variants[variants["method"].isin(["lora", "qlora"])].drop_duplicates("r").sort_values("r")
    if adapters.empty:
        return _result("-", UNTESTABLE, "needs a LoRA or QLoRA run")
    low, high = params["low_pct"], params["high_pct"]
    inside = [(low <= p <= high) for p in adapters["trainable_pct"]]
    parts = [f"r{int(r)}: {p:.2f} %" for r, p in zip(adapters["r"], adapters["trainable_pct"], strict=True)]
    verdict = HOLDS if all(inside) else FAILS if not any(inside) else PARTLY
    modules = adapters.iloc[0]["target_modules"]
    return _result(
        "trainable share: " + ", ".join(parts),
        verdict,
        f"range claimed {low:g}-{high:g} %; adapters on {modules} of a {adapters.iloc[0]['params_total'] / 1e6:.0f}M "
        "model (the share grows with r and with the number of adapted layers, and falls as the model grows).",
    )


def rank_linear(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    lora = variants[variants["method"] == "lora"].sort_values("r")
    if lora["r"].nunique() < 3:
        return _result("-", UNTESTABLE, "needs LoRA at three or more ranks (the ranks sweep)")
    r = lora["r"].to_numpy(float)
    out, fits = [], []
    for col, name in (("artifact_mib", "adapter MiB"), ("peak_mem_mib", "peak memory MiB")):
        y = lora[col].to_numpy(float)
        slope, intercept = np.polyfit(r, y, 1)
        pred = slope * r + intercept
        ss_tot = float(((y - y.mean()) ** 2).sum())
        r2 = 1 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
        fits.append((name, slope, r2))
        out.append(f"{name}: {slope:+.3g} per unit of r, R² {r2:.3f}")
    mem_name, mem_slope, mem_r2 = fits[1]
    min_r2 = params["min_r2"]
    verdict = HOLDS if mem_r2 >= min_r2 and mem_slope > 0 else FAILS if mem_slope <= 0 else INCONCLUSIVE
    source = lora.iloc[0]["mem_source"]
    return _result(
        "; ".join(out) + f" (r = {', '.join(str(int(x)) for x in r)}; memory source {source})",
        verdict,
        f"linear if peak memory rises with r with R² >= {min_r2}; the adapter's own size is linear by construction. "
        "On CPU the peak is the process RSS, which allocator and loader noise can swamp at small ranks.",
    )


def speed_order(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    best = {}
    for method in ("full", "lora", "qlora"):
        sub = variants[variants["method"] == method]
        if not sub.empty:
            best[method] = sub.sort_values("tokens_per_s").iloc[-1]
    if len(best) < 3:
        return _result("-", UNTESTABLE, "needs full FT, LoRA and QLoRA runs with the same batch and sequence length")
    order = sorted(best, key=lambda m: best[m]["tokens_per_s"])
    measured = ", ".join(f"{best[m]['label']} {best[m]['tokens_per_s']:.0f}" for m in order)
    claimed = ["full", "lora", "qlora"]
    verdict = HOLDS if order == claimed else PARTLY if order[0] == "full" else FAILS
    return _result(
        f"non-padding tokens/s, slowest first (fastest variant of each method): {measured}",
        verdict,
        "claimed order, slowest first: full, LoRA, QLoRA. QLoRA dequantises every 4-bit weight in each "
        "forward and backward pass, so it trades speed for memory.",
    )


def _spikes(losses: list[float], ratio: float, window: int) -> int:
    """Logged losses above `ratio` times the median of the `window` before them."""
    count = 0
    for i in range(window, len(losses)):
        if losses[i] > ratio * float(np.median(losses[i - window : i])):
            count += 1
    return count


def nf4_vs_fp4(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    q = runs[runs["method"] == "qlora"]
    if set(q["quant_type"]) < {"nf4", "fp4"}:
        return _result("-", UNTESTABLE, "needs QLoRA runs with nf4 and with fp4")
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
    # -1: nf4 better (fewer spikes / less forgetting), 1: worse, 0: no measurable difference
    compare = [int(np.sign(n["spikes"] - f["spikes"]))]
    if n["forgetting"] is not None and f["forgetting"] is not None:
        diff = n["forgetting"] - f["forgetting"]
        compare.append(0 if abs(diff) < params["forgetting_tie"] else int(np.sign(diff)))
    if all(c == 0 for c in compare):
        verdict = INCONCLUSIVE
    elif all(c <= 0 for c in compare):
        verdict = HOLDS
    elif all(c >= 0 for c in compare):
        verdict = FAILS
    else:
        verdict = PARTLY

    def describe(s: dict) -> str:
        forgetting = f"{s['forgetting']:+.4f}" if s["forgetting"] is not None else "n/a"
        return f"{s['spikes']:.1f} loss spikes/run, forgetting {forgetting}, score {s['score']:.3f} ({s['runs']} runs)"

    return _result(
        f"nf4: {describe(n)}; fp4: {describe(f)}",
        verdict,
        f"a spike is a logged loss above {params['spike_ratio']}x the median of the {params['window']} before it; "
        "forgetting is the rise in loss on general text (not the task) from before to after training. "
        f"Holds if nf4 is better on one and no worse on the other (forgetting differences under "
        f"{params['forgetting_tie']} count as ties); inconclusive when they tie on both.",
    )


def adapter_size(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    full = variants[variants["method"] == "full"]
    adapters = variants[variants["method"].isin(["lora", "qlora"])]
    if full.empty or adapters.empty or full["artifact_mib"].isna().all():
        return _result("-", UNTESTABLE, "needs a full-FT run and a LoRA/QLoRA run with saved sizes")
    ckpt = float(full.iloc[0]["artifact_mib"])
    lo, hi = adapters["artifact_mib"].min(), adapters["artifact_mib"].max()
    ratio = hi / ckpt * 100
    verdict = HOLDS if ratio <= params["max_ratio_pct"] else FAILS
    return _result(
        f"adapters {lo:.2f}-{hi:.2f} MiB vs full checkpoint {ckpt:.0f} MiB (largest adapter {ratio:.1f} % of it)",
        verdict,
        f"holds if the largest adapter is at most {params['max_ratio_pct']} % of the full checkpoint. The full "
        "checkpoint reaches GB from about 0.5B parameters (fp32) or 1B (bf16); the adapter grows with r and the "
        "number of adapted layers.",
    )


def merge_latency(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    lora = runs[(runs["method"] == "lora") & runs["latency_merged"].notna()]
    if lora.empty:
        return _result("-", UNTESTABLE, "needs LoRA runs with inference latency measured (eval.latency_prompts > 0)")
    merged = (lora["latency_merged"] / lora["latency_base"] - 1).mean() * 100
    unmerged = (lora["latency_unmerged"] / lora["latency_base"] - 1).mean() * 100
    q = runs[(runs["method"] == "qlora") & runs["latency_unmerged"].notna()]
    qpart = (
        f"; QLoRA (4-bit base + adapter) {((q['latency_unmerged'] / q['latency_base'] - 1).mean() * 100):+.1f} %"
        if not q.empty
        else ""
    )
    neg = params["negligible_pct"]
    ok_merged = merged <= neg
    ok_unmerged = unmerged > merged + neg
    verdict = HOLDS if ok_merged and ok_unmerged else FAILS if not ok_merged and not ok_unmerged else PARTLY
    return _result(
        f"latency vs the base model, mean over {len(lora)} LoRA run(s): merged {merged:+.1f} %, "
        f"unmerged {unmerged:+.1f} %{qpart}",
        verdict,
        f"negligible = within {neg:g} % of the base; 'unmerged slower' = more than {neg:g} points above merged. "
        f"Greedy generation, batch 1, {int(lora.iloc[0]['latency_new_tokens'])} new tokens per prompt.",
    )


def grad_accum(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    groups = runs.groupby("grad_accum")
    if runs["grad_accum"].nunique() < 2:
        return _result(
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
    return _result("; ".join(parts), INCONCLUSIVE, "compare at equal examples seen; shown for reading, no verdict")


CHECKS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, dict], dict]] = {
    f.__name__: f
    for f in (
        memory_at_scale,
        score_gap,
        trainable_share,
        rank_linear,
        speed_order,
        nf4_vs_fp4,
        adapter_size,
        merge_latency,
        grad_accum,
    )
}


def check_claims(
    runs: pd.DataFrame,
    variants: pd.DataFrame,
    records: list[dict] | None = None,
    calibration: mm.Calibrations | None = None,
) -> pd.DataFrame:
    """One row per claim: id, claim, source, measured, verdict, why. `records` (GPU ones) calibrate the memory
    model (unless `calibration` is given) and stand as measurements for the claims at scale."""

    records = records or []
    extra = {"_records": records, "_calibration": calibration or calibrate(records)}
    rows = []
    for claim in load_claims()["claims"]:
        result = CHECKS[claim["check"]](runs, variants, {**claim.get("params", {}), **extra})
        rows.append({"id": claim["id"], "claim": claim["claim"], "source": claim["source"], **result})
    return pd.DataFrame(rows)
