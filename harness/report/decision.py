"""The trade-off report's first section: what a reader came for. For each method of the sweep, whether it fits
the common GPU sizes, its peak, its speed and its score with two standard errors.

Why first and why these columns: the reader is choosing a method for a card; the details (conditions, every
run, claims, plots) follow for whoever wants to check the answer. A peak is the run's own NVML process peak
where the sweep ran on a GPU; on a CPU the process's RSS says nothing about a GPU, so the memory model's
prediction for the same model and settings stands in, marked as predicted with its error band.
"""

from __future__ import annotations

import pandas as pd

from harness.predict import memory_model as mm
from harness.predict.memory_model import GIB, MIB, Calibrations, Setting
from harness.report.frames import variant_se

GPU_SIZES_GIB = (24, 40, 48, 80, 141)
HEADROOM = 0.9  # share of a card a run may use: the rest for the framework, fragmentation, another process


def _setting(row: pd.Series, train: dict) -> Setting:
    return Setting(
        method=row["method"],
        batch=int(train.get("batch_size", 1)),
        seq_len=int(train.get("max_seq_len", 512)),
        gradient_checkpointing=bool(train.get("gradient_checkpointing", False)),
        optim=str(train.get("optim", "adamw_torch")),
        r=int(row["r"]) if pd.notna(row.get("r")) else 16,
        target_modules=tuple(str(row["target_modules"]).split(","))
        if row.get("target_modules")
        else Setting.target_modules,
        quant_type=row.get("quant_type") or "nf4",
        double_quant=bool(row.get("double_quant")),
        weights_dtype=row.get("weights_dtype") or "fp32",
        use_dora="dora" in str(row.get("adapter_variant") or "").split("-"),
    )


def decision_table(records: list[dict], variants: pd.DataFrame, calibration: Calibrations) -> tuple[pd.DataFrame, str]:
    """One row per method variant: fits per GPU size, peak and its source, tokens/s, score ± 2 SE."""
    if variants.empty or not records:
        return pd.DataFrame(), "No run finished ok: nothing to choose from."
    train = records[0]["config"]["train"]
    arch = records[0]["config"]["model"].get("architecture") or {}
    device = records[0].get("run", {}).get("device")
    gpu_name = (records[0].get("environment") or {}).get("gpu_name")
    rows = []
    for _, v in variants.iterrows():
        row: dict = {"method": v["label"]}
        band = None
        if device == "cuda" and pd.notna(v.get("nvml_process_mib")):
            peak, source = float(v["nvml_process_mib"]) * MIB, f"measured (NVML, {gpu_name})"
        else:
            try:
                p = mm.predict(arch, _setting(v, train), calibration)
            except (ValueError, KeyError, TypeError):
                p = None
            if p is None:
                peak, source = None, "not measured on a GPU, no prediction"
            else:
                cal = p.calibration
                band = cal.heldout_max_error_pct if cal.calibrated else None
                peak = p.peak_bytes
                source = f"predicted ±{band:.1f} %" if band is not None else "predicted (not calibrated)"
        row["peak GiB"] = round(peak / GIB, 2) if peak else None
        row["peak from"] = source
        for size in GPU_SIZES_GIB:
            if peak is None:
                row[f"{size} GB"] = "?"
            elif peak > size * GIB * HEADROOM:
                row[f"{size} GB"] = "no"
            elif band is not None and peak * (1 + band / 100) > size * GIB * HEADROOM:
                row[f"{size} GB"] = "edge"
            else:
                row[f"{size} GB"] = "yes"
        row["tokens/s"] = round(float(v["tokens_per_s"]), 1) if v.get("tokens_per_s") else None
        se = variant_se(v)
        row["exact match ± 2 SE"] = "not scored" if pd.isna(v.get("score")) else f"{v['score']:.3f} ± {2 * se:.3f}"
        rows.append(row)
    where = f"on {gpu_name}" if device == "cuda" else "on a CPU (tokens/s is the CPU's; GPU peaks predicted)"
    note = (
        f"Measured {where}, batch {train.get('batch_size')} x {train.get('max_seq_len')} tokens at most, "
        f"checkpointing {'on' if train.get('gradient_checkpointing') else 'off'}, {train.get('optim')}. "
        f"A method fits a card when its peak is at most {HEADROOM:.0%} of it; 'edge': inside that only without "
        "the prediction's error band. tokens/s: the fastest seed's (another job on the machine only slows a "
        "run). Scores: exact match on the test examples, two standard errors (binomial over "
        "the examples, or over seeds where there are several). Details follow."
    )
    return pd.DataFrame(rows), note
