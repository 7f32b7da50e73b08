"""The documents' claims checked against run records: measured value(s) and a verdict for each.

The claims are data (claims.yaml); each names a check here. A check gets the per-run frame and the
per-variant frame (runs of one method label averaged over seeds, see report.py) and returns what was
measured and one of the verdicts below, with the reason. Nothing here knows a result in advance.
"""

# Over ~350 lines on purpose: one check per claim kind, side by side, so their evidence rules can be compared.

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
from harness.comparisons import QualityEvidence
from harness.frames import plain_methods, variant_se
from harness.presets import architecture_of

if TYPE_CHECKING:
    from harness import memory_model as mm
    from harness.lr_report import RateSelection

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


def memory_at_scale(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    """A memory claim about a 7B-70B model, at the stated conditions: against a GPU record of exactly those
    conditions where one exists (the scale sweep); else against the exact count of what must be resident (weights,
    gradients, optimizer states: a lower bound, which can decide a claim on its own), else against the memory
    model's prediction where its method family is calibrated. Otherwise inconclusive, saying what is missing."""
    from harness import memory_model as mm

    calibration = params.get("_calibration") or mm.Calibrations()
    name, arch = architecture_of(params["model"])
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
    family = prediction.calibration
    # a paged optimizer's states may be evicted to host memory: not counted as resident
    paged = setting.optim.startswith("paged")
    resident = (
        sum(
            v
            for k, v in prediction.components.items()
            if k not in _NOT_RESIDENT and not (paged and k == "optimizer_states")
        )
        / mm.GIB
    )
    if measured:
        peak, source = measured[0] / mm.GIB, "measured on a GPU (NVML process peak)"
        if measured[1] == "oom":
            source = "measured on a GPU: out of memory at this peak"
        text = f"{conditions}: {peak:.1f} GiB ({source})"
    else:
        peak, source = prediction.peak_gib, f"memory model, {family.describe()}"
        text = f"{conditions}: {peak:.1f} GiB predicted = {prediction.arithmetic()}"
    trusted = bool(measured) or family.calibrated
    wait = (
        []
        if trusted
        else [
            f"a GPU record at these conditions, or a memory model calibrated for {setting.method} "
            f"({family.n_configs} of {mm.MIN_CONFIGS} configurations measured)"
        ]
    )
    kind = params["kind"]
    verdict = INCONCLUSIVE
    if kind == "above":
        low = params["low_gib"]
        if resident >= low:
            verdict, wait = HOLDS, []  # what must be resident already exceeds the claim's bound
        elif trusted:
            verdict = HOLDS if peak >= low else FAILS
        why = f"claim: more than {low} GB; weights, gradients and optimizer states alone: {resident:.1f} GiB"
    elif kind == "range":
        low, high = params["low_gib"], params["high_gib"]
        best = dataclasses.replace(setting, batch=1, gradient_checkpointing=True)
        best_peak = mm.predict(arch, best, calibration).peak_gib
        text += f"; at batch 1 with checkpointing: {best_peak:.1f} GiB predicted"
        if resident > high * 1.1:
            verdict, wait = FAILS, []
        elif trusted:
            verdict = HOLDS if low * 0.9 <= peak <= high * 1.1 else PARTLY if best_peak <= high * 1.1 else FAILS
        why = (
            f"claim: {low}-{high} GB (10 % tolerance): holds if the peak at these conditions is in range, partly if "
            f"only at batch 1 with checkpointing; weights, gradients and optimizer states alone: {resident:.1f} GiB"
        )
    elif kind == "fits":
        gpu = params["gpu_gib"]
        weights = mm.static_bytes(mm.cached_shapes(arch), setting)["weights"] / mm.GIB
        if resident > gpu:
            verdict, wait = FAILS, []  # the exact count of what must be resident does not fit
        elif trusted:
            verdict = HOLDS if peak <= gpu else FAILS
        why = (
            f"needs {peak:.1f} GiB of a {gpu} GB card; weights, gradients and optimizer states alone {resident:.1f} "
            f"GiB (4-bit weights: {weights:.1f} GiB)"
        )
    elif kind == "sharded":
        gpu, max_gpus = params["gpu_gib"], params["max_gpus"]
        per_gpu_fixed = sum(v for k, v in prediction.components.items() if k in ("activations", "logits_gradient"))
        sharded = prediction.peak_bytes - per_gpu_fixed
        room = gpu * mm.GIB - per_gpu_fixed
        gpus = math.ceil(sharded / room) if room > 0 else None
        fewest = math.ceil(resident * mm.GIB / (gpu * mm.GIB))
        text += f"; fully sharded (ZeRO-3/FSDP) over {gpus} x {gpu} GB" if gpus else "; does not fit even sharded"
        if fewest > max_gpus:
            verdict, wait = FAILS, []
        elif trusted:
            verdict = HOLDS if gpus and gpus <= max_gpus else FAILS
        why = (
            f"weights, gradients and optimizer states ({sharded / mm.GIB:.0f} GiB) split over the cards, activations "
            f"({per_gpu_fixed / mm.GIB:.1f} GiB) on each; 'comfortable' read as at most {max_gpus} cards (one node)"
        )
    else:
        raise ValueError(f"memory_at_scale: unknown kind {kind!r}")
    return _decide(text, verdict, f"{why}; {source}", wait)


# components of a prediction that are not counted tensors resident at the peak
_NOT_RESIDENT = ("activations", "logits_gradient", "allocator_and_workspaces", "cuda_context")


def _decide(measured: str, verdict: str, why: str, missing: list[str]) -> dict:
    """The verdict, or "inconclusive" naming what the evidence lacks."""
    if missing:
        return _result(measured, INCONCLUSIVE, "missing: " + "; ".join(missing) + f". {why}")
    return _result(measured, verdict, why)


def _evidence_gaps(runs: pd.DataFrame, *, gpu: bool) -> list[str]:
    """What every measured claim needs: runs at the full profile (a smoke profile trains a few steps and scores
    a handful of examples), and for speed, memory and latency, runs on a GPU."""
    missing = []
    smoke = sorted(set(runs["profile"].dropna()) - {"full"}) if "profile" in runs else []
    if smoke:
        missing.append(f"runs at the full profile (these use the reduced profile {', '.join(smoke)})")
    if gpu and not (runs["device"] == "cuda").all():
        missing.append("runs on a GPU (CPU timings and memory do not carry over to one)")
    return missing


def score_gap(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    methods = params["method"] if isinstance(params["method"], list) else [params["method"]]
    full = variants[variants["method"] == "full"]
    others = variants[variants["method"].isin(methods)]
    if full.empty or others.empty:
        return _result("-", UNTESTABLE, f"needs a full-FT run and a {'/'.join(methods)} run on the same data")
    if pd.isna(full.iloc[0].get("score")):
        return _result("-", UNTESTABLE, "needs scored runs (these were trained with eval.enabled=false)")
    quality = params.get("_quality")
    if quality is not None and not quality.table.empty:
        return _paired_score_gap(runs, full.iloc[0], others, float(params["max_gap_pct"]), quality)
    return _unpaired_score_gap(runs, full.iloc[0], others, float(params["max_gap_pct"]), quality)


def _gap_verdict(gap: float, half_width: float, max_gap: float) -> str:
    if gap + half_width <= max_gap:
        return HOLDS
    if gap - half_width > max_gap:
        return FAILS
    return INCONCLUSIVE


def _combine(verdicts: list[str]) -> str:
    if not verdicts:
        return INCONCLUSIVE
    if len(set(verdicts)) == 1:
        return verdicts[0]
    return PARTLY if HOLDS in verdicts else INCONCLUSIVE


def _paired_score_gap(runs: pd.DataFrame, f: pd.Series, others: pd.DataFrame, max_gap: float, quality) -> dict:
    """The relative gap below full FT, example by example (harness/comparisons.py), on exact match and on field
    accuracy; a verdict per method and metric where the 95 % interval lies inside or outside the band."""
    table = quality.table[(quality.table["comparison"] == "below full FT") & (quality.table["a"] == f["label"])]
    parts, verdicts, missing = [], [], _evidence_gaps(runs, gpu=False)
    wide_seeds, wide_examples, few_seeds = [], [], []  # undecided cells: for want of seeds / of test examples
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
            verdict = _gap_verdict(gap, hw, max_gap)
            verdicts.append(verdict)
            seeds = row["seeds"] if row["seed_variance"] else f"{row['seeds']}, no seed variance"
            parts.append(f"{o['label']} {row['metric']}: {gap:+.1f} % ± {hw:.1f} ({verdict}; seeds {seeds})")
            if verdict == INCONCLUSIVE and 2 * hw > max_gap:
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
    verdict, undecided = _combine(verdicts), ""
    if wide and {HOLDS, FAILS} <= set(verdicts):
        # decided both ways elsewhere: the claim partly holds whatever the undecided cells turn out to be
        verdict, undecided = PARTLY, " Undecided, for want of " + "; ".join(wide) + "."
    else:
        missing += wide
    budget = quality.budget_text([f["label"], *others["label"]])
    return _decide(
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
        missing = [*_evidence_gaps(runs, gpu=False), "a full-FT score above 0 (training too short to compare)"]
        return _decide(
            f"full FT score {f['score']:.3f}", INCONCLUSIVE, "no baseline to compare with." + no_examples, missing
        )
    parts, verdicts, wide = [], [], []
    for _, o in others.iterrows():
        gap = (f[metric] - o[metric]) / f[metric] * 100
        se = math.hypot(variant_se(f, metric), variant_se(o, metric)) / f[metric] * 100
        parts.append(f"{o['label']}: {gap:+.1f} % (±{2 * se:.1f})")
        if 2 * se > max_gap:
            wide.append(f"{o['label']} ±{2 * se:.0f} %")
        verdicts.append(_gap_verdict(gap, 2 * se, max_gap))
    verdict = verdicts[0] if len(set(verdicts)) == 1 else PARTLY if HOLDS in verdicts else INCONCLUSIVE
    missing = _evidence_gaps(runs, gpu=False)
    if wide:
        missing.append(
            f"more test examples or seeds: two standard errors of the gap ({', '.join(wide)}) are wider than the "
            f"claim's {max_gap:g} % band"
        )
    if metric != "score":
        missing.append("exact-match scores above 0 for full FT (field accuracy stands in)")
    return _decide(
        f"{'exact match' if metric == 'score' else 'field accuracy (full FT had no exact match)'} gap below "
        f"full FT ({f[metric]:.3f}), relative: " + "; ".join(parts),
        verdict,
        f"holds where the gap plus two standard errors is at most {max_gap:g} %; does not hold where the gap less "
        f"two standard errors exceeds it (±2 SE shown, unpaired; test set of {int(f['n_test'])} examples"
        f"{', spread over seeds' if f.get('n_seeds', 1) > 1 else ''}). A negative gap: better than full FT."
        + no_examples,
        missing,
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
    return _decide(
        "; ".join(out) + f" (r = {', '.join(str(int(x)) for x in r)}; memory source {source})",
        verdict,
        f"linear if peak memory rises with r with R² >= {min_r2}; the adapter's own size is linear by construction. "
        "On CPU the peak is the process RSS, which allocator and loader noise can swamp at small ranks.",
        _evidence_gaps(runs[runs["method"] == "lora"], gpu=True),
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
    return _decide(
        f"non-padding tokens/s, slowest first (fastest variant of each method): {measured}",
        verdict,
        "claimed order, slowest first: full, LoRA, QLoRA. QLoRA dequantises every 4-bit weight in each "
        "forward and backward pass, so it trades speed for memory.",
        _evidence_gaps(runs, gpu=True),
    )


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


def nf4_vs_fp4(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    q = runs[runs["method"] == "qlora"]
    if set(q["quant_type"]) < {"nf4", "fp4"}:
        return _result("-", UNTESTABLE, "needs QLoRA runs with nf4 and with fp4")
    q, configuration = _one_quant_configuration(q)
    if q.empty:
        return _result("-", UNTESTABLE, "needs nf4 and fp4 runs of one rank and one double-quantisation setting")
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
    missing = _evidence_gaps(q, gpu=False)
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
            se = float(np.sqrt(sum(v.var(ddof=1) / len(v) for v in by_quant.values())))
            forgetting_error = f"; forgetting nf4 - fp4: {diff:+.4f} ± {2 * se:.4f} (2 SE over seeds)"
            measurable = abs(diff) >= params["forgetting_tie"] and abs(diff) > 2 * se
            compare.append(int(np.sign(diff)) if measurable else 0)
            if not measurable and abs(diff) >= params["forgetting_tie"] and se > 0:
                # two SE shrink as 1/sqrt(seeds): how many seeds each would put this difference outside them
                each = min(len(v) for v in by_quant.values())
                needed = math.ceil(round(each * (2 * se / abs(diff)) ** 2, 6))
                forgetting_needs = (
                    f"more seeds: forgetting differs by {diff:+.4f}, inside its two standard errors ({2 * se:.4f}, "
                    f"{each} seeds each); at this seed-to-seed spread about {needed} seeds of each would take a "
                    "difference of this size outside them"
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
    return _decide(
        f"{configuration}: nf4: {describe(n)}; fp4: {describe(f)}{forgetting_error}{paired_text}",
        verdict,
        f"a spike is a logged loss above {params['spike_ratio']}x the median of the {params['window']} before it; "
        "forgetting is the rise in loss on general text (not the task) from before to after training. "
        f"Holds if nf4 is better on one and no worse on the other (forgetting differences under "
        f"{params['forgetting_tie']} or within two standard errors over seeds count as ties; with one seed of "
        "either, forgetting is not compared); inconclusive when they tie on both.",
        missing,
    )


def adapter_size(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    """Adapters against full checkpoints at the model size the claim speaks of ("GB of weights": 7B), counted
    exactly on the meta device with the runs' ranks and adapted layers; the runs' own saved sizes are shown beside.

    Why not the runs' sizes alone: at 135M the full checkpoint is 0.5 GB and every adapter a larger share of it
    than at 7B, so the sweep's model would judge a claim about another size."""
    from harness import memory_model as mm

    adapters = variants[variants["method"].isin(["lora", "qlora"])]
    if adapters.empty:
        return _result("-", UNTESTABLE, "needs a LoRA or QLoRA run (its rank and adapted layers)")
    name, arch = architecture_of(params["model"])
    shapes = mm.cached_shapes(arch)
    checkpoint = shapes.total_params * 2 / 2**20  # a bf16 checkpoint, as checkpoints are published
    sizes = {}
    for _, row in adapters.drop_duplicates(["r", "target_modules"]).iterrows():
        targets = tuple(str(row["target_modules"]).split(","))
        # fp32 adapters, as the harness trains and saves them
        sizes[f"r{int(row['r'])}"] = mm.lora_params(shapes, int(row["r"]), targets) * mm.ADAPTER_BYTES / 2**20
    largest = max(sizes.values())
    ratio = largest / checkpoint * 100
    full = variants[variants["method"] == "full"]
    here = ""
    if not full.empty and not full["artifact_mib"].isna().all():
        here = (
            f"; saved in these runs ({adapters.iloc[0]['params_total'] / 1e6:.0f}M model): adapters "
            f"{adapters['artifact_mib'].min():.2f}-{adapters['artifact_mib'].max():.2f} MiB, full checkpoint "
            f"{float(full.iloc[0]['artifact_mib']):.0f} MiB"
        )
    return _result(
        f"at {name}: adapters "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items())
        + f" vs a bf16 checkpoint of {checkpoint / 1024:.1f} GiB (largest adapter {ratio:.2f} % of it){here}",
        HOLDS if ratio <= params["max_ratio_pct"] else FAILS,
        f"holds if the largest adapter is at most {params['max_ratio_pct']} % of the full checkpoint; counted "
        f"exactly at {name} with the runs' ranks and adapted layers (adapters in fp32, as saved here).",
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
    missing = _evidence_gaps(lora, gpu=True)
    prompts, tokens = int(lora["latency_prompts"].fillna(1).min()), int(lora["latency_new_tokens"].min())
    if prompts < params["min_prompts"] or tokens < params["min_new_tokens"]:
        missing.append(
            f"latency over at least {params['min_prompts']} prompts x {params['min_new_tokens']} new tokens "
            f"(measured over {prompts} x {tokens}: one slow prompt moves the mean by more than the {neg:g} % band)"
        )
    ok_merged = merged <= neg
    ok_unmerged = unmerged > merged + neg
    verdict = HOLDS if ok_merged and ok_unmerged else FAILS if not ok_merged and not ok_unmerged else PARTLY
    return _decide(
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


def rank_quality(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    """ "Start at r=8; if performance plateaus, bump to 16 or 32": raising the rank above 8 must buy quality for the
    advice to mean anything. Judged on the paired exact-match gain of each rank over the next lower one."""
    lora = variants[variants["method"] == "lora"].sort_values("r")
    if lora["r"].nunique() < 2 or not (lora["r"] >= 8).any():
        return _result("-", UNTESTABLE, "needs LoRA runs at r=8 and at a higher rank")
    quality = params.get("_quality")
    table = quality.table if quality is not None else pd.DataFrame()
    steps = (
        table[(table["comparison"] == "gain from a higher rank") & (table["metric"] == "exact match")]
        if not table.empty
        else table
    )
    missing = _evidence_gaps(runs, gpu=False)
    if steps.empty:
        missing.append("per-example results of LoRA runs at two or more ranks on the same test examples")
        return _decide("-", INCONCLUSIVE, "the gain of a rank over the next is computed example by example", missing)
    r_of = dict(zip(lora["label"], lora["r"], strict=True))
    worth = float(params["min_gain_points"])
    parts, above_eight = [], []
    for _, row in steps.iterrows():
        gain, hw = 100 * float(row["gap"]), 100 * float(row["half_width"])
        seeds = f"seeds {row['seeds']}" if row["seed_variance"] else "over test examples only, no seed variance"
        parts.append(f"r{r_of[row['b']]:.0f} -> r{r_of[row['a']]:.0f}: {gain:+.1f} ± {hw:.1f} points ({seeds})")
        if r_of[row["b"]] >= 8:
            above_eight.append((gain, hw))
    if not above_eight:
        missing.append("a LoRA run above r=8")
        verdict = INCONCLUSIVE
    elif any(g - h > 0 for g, h in above_eight):
        verdict = HOLDS  # a rank above 8 measurably better: bumping it pays
    elif all(g + h < worth for g, h in above_eight):
        verdict = FAILS  # no step above 8 can be worth the bump
    else:
        verdict = INCONCLUSIVE
    return _decide(
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
    from harness.comparisons import VARIANT_VS_PLAIN

    names = params["variant"] if isinstance(params["variant"], list) else [params["variant"]]
    variant = ", ".join(names)
    mine = variants[variants["adapter_variant"].fillna("").isin(names)] if "adapter_variant" in variants else variants
    if mine.empty:
        return _result("-", UNTESTABLE, f"needs a {variant} run and a plain LoRA run of its rank on the same data")
    quality = params.get("_quality")
    table = quality.table if quality is not None else pd.DataFrame()
    rows = (
        table[(table["comparison"] == VARIANT_VS_PLAIN) & table["a"].isin(mine["label"])] if not table.empty else table
    )
    missing = _evidence_gaps(runs, gpu=False)
    if rows.empty:
        missing.append(f"per-example results of {variant} and plain LoRA of its rank on the same test examples")
        return _decide("-", INCONCLUSIVE, "the gap is computed example by example", missing)
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
        verdicts.append(verdict)
        parts.append(
            f"{row['a']} - {row['b']} {row['metric']}: {g:+.1f} ± {h:.1f} points ({verdict}; seeds {row['seeds']})"
        )
        if verdict == INCONCLUSIVE and row["seed_variance"]:
            undecided.append((f"{row['a']} {row['metric']} ±{h:.1f}", f"{row['seeds']}", float(row["df"])))
    if undecided and _combine(verdicts) == INCONCLUSIVE and not no_seeds:
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
    return _decide(
        "paired gap over plain LoRA of the same rank and base: " + "; ".join(parts),
        _combine(verdicts),
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
        return _result("-", INCONCLUSIVE, f"missing: learning-rate searches of full FT and {label} "
                       "(+sweeps=lr_search) under the same conditions. " + rule)  # fmt: skip
    problems = [c.problem() for c in (full[0], lora[0]) if c.chosen is None]
    if problems:
        return _result("-", INCONCLUSIVE, "missing: " + "; ".join(p for p in problems if p) + ". " + rule)
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
        why = (
            f"missing: a grid finer than {spread**2:.2g}x around the two choices (the range straddles the band). {why}"
        )
    return _result(
        f"{label} {lo.chosen:.3g} / full FT {f.chosen:.3g} = {ratio:.3g}x "
        f"(within the grids: {below:.3g}x-{above:.3g}x)",
        verdict,
        why,
    )


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
            result = _result(result["measured"], INCONCLUSIVE, f"{NOT_TUNED} {result['why']}")
        rows.append(
            {"id": claim["id"], "claim": claim["claim"], "source": claim["source"], "needs": claim["needs"], **result}
        )
    return pd.DataFrame(rows)
