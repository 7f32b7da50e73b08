"""Claims about memory and size: the memory at scale (the memory model, calibrated on GPU records), the
trainable share, its linearity in the rank, and the adapter's file size."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from harness.predict.calibration import measured_peak
from harness.predict.presets import architecture_of
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


def memory_at_scale(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    """A memory claim about a 7B-70B model, at the stated conditions: against a GPU record of exactly those
    conditions where one exists (the scale sweep); else against the exact count of what must be resident (weights,
    gradients, optimizer states: a lower bound, which can decide a claim on its own), else against the memory
    model's prediction where its method family is calibrated. Otherwise inconclusive, saying what is missing."""
    from harness.predict import memory_model as mm

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
    return decide(text, verdict, f"{why}; {source}", wait)


# components of a prediction that are not counted tensors resident at the peak
_NOT_RESIDENT = ("activations", "logits_gradient", "allocator_and_workspaces", "cuda_context")


def trainable_share(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    adapters = variants[variants["method"].isin(["lora", "qlora"])].drop_duplicates("r").sort_values("r")
    if adapters.empty:
        return judged("-", UNTESTABLE, "needs a LoRA or QLoRA run")
    low, high = params["low_pct"], params["high_pct"]
    inside = [(low <= p <= high) for p in adapters["trainable_pct"]]
    parts = [f"r{int(r)}: {p:.2f} %" for r, p in zip(adapters["r"], adapters["trainable_pct"], strict=True)]
    verdict = HOLDS if all(inside) else FAILS if not any(inside) else PARTLY
    modules = adapters.iloc[0]["target_modules"]
    return judged(
        "trainable share: " + ", ".join(parts),
        verdict,
        f"range claimed {low:g}-{high:g} %; adapters on {modules} of a {adapters.iloc[0]['params_total'] / 1e6:.0f}M "
        "model (the share grows with r and with the number of adapted layers, and falls as the model grows).",
    )


def rank_linear(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    lora = variants[variants["method"] == "lora"].sort_values("r")
    if lora["r"].nunique() < 3:
        return judged("-", UNTESTABLE, "needs LoRA at three or more ranks (the ranks sweep)")
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
    return decide(
        "; ".join(out) + f" (r = {', '.join(str(int(x)) for x in r)}; memory source {source})",
        verdict,
        f"linear if peak memory rises with r with R² >= {min_r2}; the adapter's own size is linear by construction. "
        "On CPU the peak is the process RSS, which allocator and loader noise can swamp at small ranks.",
        evidence_gaps(runs[runs["method"] == "lora"], gpu=True),
    )


def adapter_size(runs: pd.DataFrame, variants: pd.DataFrame, params: dict) -> dict:
    """Adapters against full checkpoints at the model size the claim speaks of ("GB of weights": 7B), counted
    exactly on the meta device with the runs' ranks and adapted layers; the runs' own saved sizes are shown beside.

    Why not the runs' sizes alone: at 135M the full checkpoint is 0.5 GB and every adapter a larger share of it
    than at 7B, so the sweep's model would judge a claim about another size."""
    from harness.predict import memory_model as mm

    adapters = variants[variants["method"].isin(["lora", "qlora"])]
    if adapters.empty:
        return judged("-", UNTESTABLE, "needs a LoRA or QLoRA run (its rank and adapted layers)")
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
    return judged(
        f"at {name}: adapters "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items())
        + f" vs a bf16 checkpoint of {checkpoint / 1024:.1f} GiB (largest adapter {ratio:.2f} % of it){here}",
        HOLDS if ratio <= params["max_ratio_pct"] else FAILS,
        f"holds if the largest adapter is at most {params['max_ratio_pct']} % of the full checkpoint; counted "
        f"exactly at {name} with the runs' ranks and adapted layers (adapters in fp32, as saved here).",
    )
