"""LoRA's variants (DoRA, rsLoRA, PiSSA, OLoRA, LoRA+, QDoRA) against plain LoRA (or QLoRA) of their rank and base:
the trade-off report's section on them, one row per variant.

Why a section of its own: the documents' claims and matrix speak of full FT, LoRA and QLoRA, so a variant stays
out of those comparisons (frames.plain_methods); what a practitioner weighing one asks is what it buys over the
LoRA it replaces (quality, example by example, with the seeds' variance), what it costs per step, and whether it
still fits a card at the size they train.
"""

from __future__ import annotations

import pandas as pd

from harness.predict import memory_model as mm
from harness.predict.memory_model import GIB, Calibrations, Setting
from harness.predict.presets import architecture_of
from harness.report.comparisons import VARIANT_VS_PLAIN, QualityEvidence

# The memory model's conditions for the 7B column: `python -m harness budget`'s defaults (batch 4 x 1024 tokens,
# no checkpointing, AdamW, all seven projections), on Llama-2-7B, the model of the DoRA paper's claim.
AT_SCALE_MODEL = "llama-2-7b"
AT_SCALE = Setting(method="lora", batch=4, seq_len=1024)


def _gap_text(rows: pd.DataFrame, metric: str) -> str:
    if rows.empty:  # no plain twin with per-example results (a table without columns, too)
        return "-"
    row = rows[rows["metric"] == metric]
    if row.empty:
        return "-"
    g, h = 100 * float(row["gap"].iloc[0]), 100 * float(row["half_width"].iloc[0])
    return f"{g:+.1f} ± {h:.1f}"


def peak_at_scale(v: pd.Series, calibration: Calibrations) -> float:
    """The memory model's peak (bytes) for variant row `v`'s method at AT_SCALE on AT_SCALE_MODEL."""
    _, arch = architecture_of(AT_SCALE_MODEL)
    setting = Setting(
        method=str(v["method"]),
        batch=AT_SCALE.batch,
        seq_len=AT_SCALE.seq_len,
        r=int(v["r"]),
        quant_type=str(v["quant_type"]) if pd.notna(v.get("quant_type")) else "nf4",
        double_quant=bool(v["double_quant"]) if pd.notna(v.get("double_quant")) else False,
        use_dora="dora" in str(v.get("adapter_variant") or "").split("-"),
    )
    return mm.predict(arch, setting, calibration).peak_bytes


def step_time_ratio(runs: pd.DataFrame, variant: str, plain: str | None) -> str:
    """The variant's time per step against its plain twin's: the twin's tokens/s over the variant's (the same
    tokens per step: same data, batch and length), after the first step. Only runs on one machine are compared,
    and of each the fastest: work beside a run only ever slows it, so the fastest run is the cleanest timing."""
    if plain is None:
        return "-"
    ok = runs[(runs["status"] == "ok") & runs["label"].isin([variant, plain])].copy()
    # records from before the steady figure was kept carry only the mean over all steps
    ok["tps"] = ok["steady_tokens_per_s"].fillna(ok["tokens_per_s"])
    ok = ok[ok["tps"].notna() & ok["machine"].notna()]
    fastest = ok.groupby(["machine", "label"])["tps"].agg(["max", "size"])
    both = [m for m in fastest.index.get_level_values(0).unique() if len(fastest.loc[m]) == 2]
    if not both:
        return f"- (no run of {plain} on the machine {variant} ran on)"
    # the machine with the most runs of the pair: the fastest of more runs is the likelier clean one
    machine = max(both, key=lambda m: int(fastest.loc[m]["size"].sum()))
    v, p = fastest.loc[(machine, variant)], fastest.loc[(machine, plain)]
    return f"{float(p['max']) / float(v['max']):.2f}x ({machine}; fastest of {int(v['size'])} / {int(p['size'])} runs)"


def variants_section(
    quality: QualityEvidence, variants: pd.DataFrame, calibration: Calibrations, runs: pd.DataFrame | None = None
) -> tuple[pd.DataFrame | None, str] | None:
    """One row per LoRA variant in `variants` (frames.variants_frame) against its plain twin: the paired gaps on
    exact match and field accuracy, the seeds paired, its time per step and trainable share against the twin's,
    and the memory model's peak at 7B for both. None where the records hold no variant (the section is left out)."""
    if variants.empty or "adapter_variant" not in variants:
        return None
    marked = variants[variants["adapter_variant"].fillna("") != ""]
    if marked.empty:
        return None
    by = variants.set_index("label")
    table = quality.table
    rows, twins = [], []
    for _, v in marked.iterrows():
        pairs = (
            table[(table["comparison"] == VARIANT_VS_PLAIN) & (table["a"] == v["label"])] if not table.empty else table
        )
        twin = pairs["b"].iloc[0] if not pairs.empty else None
        p = by.loc[twin] if twin is not None else None
        seeds = pairs["seeds"].iloc[0] if not pairs.empty else "-"
        if not pairs.empty and not bool(pairs["seed_variance"].iloc[0]):
            seeds += " (no seed variance)"
        row = {
            "variant": v["label"],
            "against": twin or "no plain twin with per-example results",
            "seeds paired": seeds,
            "exact match gap, points ± 95 %": _gap_text(pairs, "exact match"),
            "field accuracy gap, points ± 95 %": _gap_text(pairs, "field accuracy"),
            "time per step vs plain": step_time_ratio(runs, v["label"], twin) if runs is not None else "-",
            "trainable % (plain)": (
                f"{v['trainable_pct']:.3g} ({p['trainable_pct']:.3g})" if p is not None else f"{v['trainable_pct']:.3g}"
            ),
            "7B peak GiB, predicted (plain)": (
                f"{peak_at_scale(v, calibration) / GIB:.1f}"
                + (f" ({peak_at_scale(p, calibration) / GIB:.1f})" if p is not None else "")
            ),
        }
        rows.append(row)
        twins += [twin] if twin is not None and twin not in twins else []
    note = (
        "Each variant against plain LoRA (QDoRA: QLoRA) of its rank and base, on the same test examples and seeds "
        "(a - b in points x 100, 95 % interval as in the paired gaps above; a positive gap: the variant scores "
        f"higher). Measured {quality.budget_text(list(marked['label']) + twins)}. Time per "
        "step: the plain run's tokens/s over the variant's after the first step, the fastest run of each on one "
        "machine (work beside a run only slows it; a CPU's ratio is not a GPU's). 7B peak: the memory model's "
        f"prediction for {AT_SCALE_MODEL} at batch "
        f"{AT_SCALE.batch} x {AT_SCALE.seq_len} tokens, no checkpointing, AdamW, all seven projections (`budget`'s "
        "defaults): DoRA holds a magnitude per output feature and saves its norm's products for backward; rsLoRA, "
        "PiSSA, OLoRA and LoRA+ hold what LoRA does."
    )
    return pd.DataFrame(rows), note
