"""`python -m harness budget`: which fine-tuning methods fit a GPU, what each costs, which to pick.

Why a command and not a table: what fits depends on sequence length, batch, gradient checkpointing and the
optimizer as much as on the method, so the answer is computed for the user's conditions. Each method's peak is
the measured one where a GPU record of exactly those conditions exists in results/, else the memory model's
prediction (calibrated on the GPU records found, and saying so). Quality costs come from the sweeps' records.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import pandas as pd

from harness.predict import memory_model as mm
from harness.predict import presets
from harness.predict.calibration import calibrate, measured_peak
from harness.predict.memory_model import GIB, MIB, Calibrations, Setting
from harness.predict.presets import CONF_MODEL_DIR  # noqa: F401 (tests and callers name the presets' folder here)
from harness.report.budget_costs import checkpointing_speed_costs, quality_costs

# GPU vendors' "24GB", "80GB" are binary: an RTX 4090 has 24 GiB, an H100 80GB has 80 GiB.
UNITS = {"tb": 1024**4, "tib": 1024**4, "gb": GIB, "gib": GIB, "g": GIB, "mb": MIB, "mib": MIB, "m": MIB}
COMMON_GPUS_GIB = (24, 40, 48, 80, 141)
METHOD_ORDER = ("full", "full-bf16", "lora", "qlora-nf4", "qlora-nf4-dq", "qlora-fp4", "dora", "qdora-nf4")


class BudgetError(ValueError):
    """Bad input to the budget command: one line for the user, no traceback."""


def parse_memory(text: str) -> float:
    """'24GB', '24 GiB', '80g', '40960MiB' -> bytes. GB is read as GiB, as on GPU spec sheets."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]+)\s*", str(text))
    if not match:
        raise BudgetError(f"--gpu-memory {text!r}: give a number and a unit, e.g. 24GB, 80GiB, 40960MiB")
    value, unit = float(match.group(1)), match.group(2).lower()
    if unit not in UNITS:
        raise BudgetError(f"--gpu-memory {text!r}: unknown unit {match.group(2)!r}; use GB/GiB, MB/MiB or TB")
    if value <= 0:
        raise BudgetError(f"--gpu-memory {text!r}: must be more than 0")
    return value * UNITS[unit]


def architecture_of(model: str) -> tuple[str, dict]:
    """(name, architecture) of a preset; an unknown one is a BudgetError (one line, exit 2)."""
    try:
        return presets.architecture_of(model)
    except presets.UnknownModel as e:
        raise BudgetError(str(e)) from None


def target_modules(model: str, text: str) -> tuple[str, ...]:
    """--target-modules as a tuple, each a linear layer of the model's decoder layers. The default (Llama's seven
    projections, every linear layer of a Llama) on a model without all of those names (Phi-3's fused qkv_proj and
    gate_up_proj, GPT-2's c_attn) means every linear layer of that model: all-linear."""
    _, arch = architecture_of(model)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all-linear"]:
        return ("all-linear",)
    available = sorted({full.rsplit(".", 1)[-1] for full in mm.cached_shapes(arch).linear})
    if tuple(names) == Setting.target_modules and not set(names) <= set(available):
        return ("all-linear",)
    unknown = [n for n in names if n not in available]
    if not names or unknown:
        raise BudgetError(
            f"--target-modules {text!r}: {', '.join(unknown) or 'none given'} not a layer of {model}; "
            f"its linear layers: {', '.join(available)}"
        )
    return tuple(names)


def settings(base: Setting) -> dict[str, Setting]:
    """The methods compared, at the user's conditions."""
    return {
        "full": dataclasses.replace(base, method="full"),
        "full-bf16": dataclasses.replace(base, method="full", weights_dtype="bf16"),
        "lora": dataclasses.replace(base, method="lora"),
        "qlora-nf4": dataclasses.replace(base, method="qlora", quant_type="nf4", double_quant=False),
        "qlora-nf4-dq": dataclasses.replace(base, method="qlora", quant_type="nf4", double_quant=True),
        "qlora-fp4": dataclasses.replace(base, method="qlora", quant_type="fp4", double_quant=False),
        # DoRA holds more than LoRA (a magnitude per output feature, its norm's activations); rsLoRA, PiSSA,
        # OLoRA and LoRA+ hold what LoRA does, so they have no rows of their own
        "dora": dataclasses.replace(base, method="lora", use_dora=True),
        "qdora-nf4": dataclasses.replace(base, method="qlora", quant_type="nf4", double_quant=False, use_dora=True),
    }


# Long on purpose: one row per method, each cell from measured-or-predicted, read top to bottom as the table.
def answer(
    model: str,
    gpu_bytes: float,
    base: Setting,
    *,
    margin: float = 0.1,
    results_dir: Path = Path("results"),
    fsdp_gpus: int = 8,
) -> tuple[pd.DataFrame, list[str]]:
    """The per-method table and the lines of the answer (recommendation, or what would make it fit)."""
    name, arch = architecture_of(model)
    from harness.results import load_records

    records = load_records(results_dir, recursive=True) if results_dir.is_dir() else []
    calibration = calibrate(records)
    usable = gpu_bytes * (1 - margin)
    gaps, gap_note = quality_costs(records, name)
    rows = []
    for label, setting in settings(base).items():
        measured = measured_peak(records, name, setting)
        predicted = mm.predict(arch, setting, calibration)
        is_measured = bool(measured and measured[1] == "ok")
        peak = measured[0] if is_measured else predicted.peak_bytes
        band = None if is_measured else _error_band(predicted.calibration)
        rows.append(
            {
                "method": setting.label if label != "lora" else f"lora-r{setting.r}",
                "peak GiB": round(peak / GIB, 2),
                "from": ("measured" if measured[1] == "ok" else "measured: oom") if measured else "predicted",
                "error band": "measured" if is_measured else (f"±{band:.1f} %" if band is not None else "no fit"),
                "fits": _fits(peak, usable, band, oom=bool(measured and measured[1] == "oom")),
                "headroom GiB": round((usable - peak) / GIB, 2),
                "quality cost (pts vs full)": _gap(gaps, label),
                # the most that fits this card (predicted): a batch at this length, a length at this batch
                f"max batch @ {setting.seq_len}": _largest(
                    lambda b, s=setting: _peak(arch, s, calibration, batch=b) <= usable
                ),
                f"max seq @ batch {setting.batch}": _largest(
                    lambda k, s=setting: _peak(arch, s, calibration, seq_len=64 * k) <= usable,
                    step=64,
                    limit=int(arch.get("max_position_embeddings", 131072)) // 64,  # no longer than the model reads
                ),
                f"FSDP x{fsdp_gpus} GiB/card (pred.)": round(_fsdp_per_card(predicted, fsdp_gpus) / GIB, 2),
                "weights+grads+optim GiB": round(
                    sum(v for k, v in predicted.components.items() if k in STATIC) / GIB, 2
                ),
                "activations GiB": round(
                    (predicted.components["activations"] + predicted.components["logits_gradient"]) / GIB, 2
                ),
                "_family": label,
            }
        )
    table = pd.DataFrame(rows)
    lines = [
        f"{name}: {mm.cached_shapes(arch).total_params / 1e9:.2f}B parameters; GPU {gpu_bytes / GIB:.1f} GiB, "
        f"{margin:.0%} kept free -> {usable / GIB:.1f} GiB usable",
        f"conditions: batch {base.batch} x {base.seq_len} tokens, gradient checkpointing "
        f"{'on' if base.gradient_checkpointing else 'off'}, optimizer {base.optim}, LoRA r={base.r} on "
        f"{','.join(base.target_modules)}; full FT = fp32 weights + bf16 autocast",
        "memory model (NVML process peak; the error band of a predicted figure is the worst error on a "
        f"configuration left out of its family's fit): {calibration.describe()}",
        f"for comparison, `accelerate estimate-memory` (full FT in fp32, batch 1, no activations): "
        f"{mm.accelerate_estimate_bytes(arch) / GIB:.1f} GiB",
        f"quality: {gap_note}",
    ]
    fitting = table[table["fits"].str.startswith("yes")]
    if not fitting.empty:
        lines.append("recommendation: " + _recommend(fitting, gaps))
    else:
        lines.append("nothing fits at these conditions. What would:")
        lines.extend(_what_would_fit(arch, name, base, usable, calibration, records))
    return table.drop(columns="_family"), lines


STATIC = ("weights", "adapter_weights", "gradients", "optimizer_states")


def _peak(arch: dict, setting: Setting, calibration: Calibrations, **change: int) -> float:
    return mm.predict(arch, dataclasses.replace(setting, **change), calibration).peak_bytes


def _largest(fits, *, step: int = 1, limit: int = 4096) -> int | str:
    """The largest n (times step) for which fits(n), by doubling then bisection; "none" if not even 1 fits,
    ">= limit" where everything up to the limit fits. Peaks grow with batch and length, so this is exact."""
    if not fits(1):
        return "none"
    low = 1
    while low * 2 <= limit and fits(low * 2):
        low *= 2
    if low * 2 > limit:
        return f">= {low * step}"
    high = low * 2  # fits(low), not fits(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low * step


def _fsdp_per_card(prediction: mm.Prediction, gpus: int) -> float:
    """Per card under full-shard FSDP (ZeRO-3) over `gpus` cards: weights, gradients and optimizer states split,
    activations and the CUDA context whole on each; the family's factor on the card's tensors. Predicted only:
    no sharded run has been measured."""
    c = prediction.components
    static = sum(v for k, v in c.items() if k in STATIC)
    tensors = static / gpus + c["activations"] + c["logits_gradient"]
    return prediction.calibration.tensors_scale * tensors + prediction.calibration.context_bytes


def _error_band(calibration: mm.Calibration) -> float | None:
    """The share a predicted peak may be off: the worst error on configurations left out of its family's fit;
    None where the family is not calibrated (no such error exists)."""
    return calibration.heldout_max_error_pct if calibration.calibrated else None


def _fits(peak: float, usable: float, band_pct: float | None, *, oom: bool) -> str:
    """yes / no, or "within the error band" where the prediction's band straddles the usable memory."""
    if oom or peak > usable:
        return "no"
    if band_pct is not None and peak * (1 + band_pct / 100) > usable:
        return "yes, within the error band"
    return "yes"


def _gap(gaps: dict[str, tuple[float, float]], family: str) -> str:
    if family == "full":
        return "0 (reference)" if "full" in gaps else "not measured"
    return f"{gaps[family][0]:+.1f} ± {gaps[family][1]:.1f}" if family in gaps else "not measured"


def _recommend(fitting: pd.DataFrame, gaps: dict[str, tuple[float, float]]) -> str:
    """The best-quality method that fits: full FT if it fits; else pure-bf16 full FT where its measured cost is no
    more than LoRA's; else LoRA; else the 4-bit variant with the smallest measured cost (nf4 before fp4 when
    unmeasured, as the QLoRA paper found)."""
    order = {fam: i for i, fam in enumerate(METHOD_ORDER)}
    fam = fitting["_family"].tolist()
    measured_qlora = [f for f in fam if f.startswith("qlora") and f in gaps]
    bf16_pays = "full-bf16" in gaps and gaps["full-bf16"][0] <= gaps.get("lora", (float("inf"), 0))[0]
    if "full" in fam:
        pick = "full"
    elif "full-bf16" in fam and (bf16_pays or "lora" not in fam):
        pick = "full-bf16"
    elif "lora" in fam:
        pick = "lora"
    elif measured_qlora:
        pick = min(measured_qlora, key=lambda f: (gaps[f][0], order[f]))
    else:
        pick = min(fam, key=lambda f: order[f])
    row = fitting[fitting["_family"] == pick].iloc[0]
    reason = (
        f"{row['method']}: fits with {row['headroom GiB']:.1f} GiB to spare ({row['from']} peak {row['peak GiB']} GiB)"
    )
    if pick == "full" and "lora" in fam:
        cost = gaps.get("lora")
        reason += (
            f"; LoRA also fits and costs {cost[0]:+.1f} ± {cost[1]:.1f} points in the sweeps measured"
            if cost is not None
            else "; LoRA also fits (its quality cost is not measured yet: run a sweep)"
        )
    elif pick != "full":
        cost = gaps.get(pick)
        reason += (
            f"; full FT does not fit; measured quality cost {cost[0]:+.1f} ± {cost[1]:.1f} points"
            if cost is not None
            else ("; full FT does not fit; quality cost not measured yet")
        )
    return reason


def _what_would_fit(
    arch: dict, name: str, base: Setting, usable: float, calibration: Calibrations, records: list[dict]
) -> list[str]:
    cheapest = dataclasses.replace(base, method="qlora", quant_type="nf4", double_quant=True)
    changes = [
        ("gradient checkpointing on", {"gradient_checkpointing": True}),
        ("batch 1", {"batch": 1}),
        ("8-bit paged optimizer", {"optim": "paged_adamw_8bit"}),
        ("LoRA rank 8", {"r": 8}),
    ]
    seq = base.seq_len
    while seq > 128:
        seq //= 2
        changes.append((f"sequence length {seq}", {"seq_len": seq}))
    speed_costs = checkpointing_speed_costs(records, name)
    out = []
    for label, change in changes:
        for family, s in settings(dataclasses.replace(base, **change)).items():
            if family == "full-bf16":
                continue  # a method of its own in the table, not a change of conditions
            p = mm.predict(arch, s, calibration)
            if p.peak_bytes <= usable:
                line = f"  - {label}: {s.label} would need {p.peak_gib:.1f} GiB"
                if "gradient_checkpointing" in change and family in speed_costs:
                    ratio, where = speed_costs[family]
                    line += f" (measured price: {ratio:.2f}x the tokens/s without it, {where})"
                out.append(line)
                break
    # changes applied one after another, cheapest method first, until one fits
    applied, current = [], cheapest
    for label, change in changes:
        current = dataclasses.replace(current, **change)
        applied.append(label)
        p = mm.predict(arch, current, calibration)
        if p.peak_bytes <= usable:
            out.append(f"  - all of: {current.label}, " + ", ".join(applied) + f": {p.peak_gib:.1f} GiB")
            break
    if not out:
        weights = mm.static_bytes(mm.cached_shapes(arch), cheapest)["weights"]
        out.append(
            f"  - no single-GPU setting: the 4-bit weights alone take {weights / GIB:.1f} GiB "
            f"(of {usable / GIB:.1f} GiB usable); shard over GPUs or choose a smaller model"
        )
    return out


def fits_on_table(
    models: list[str], base: Setting, calibration: Calibrations | None = None, gpus: tuple[int, ...] = COMMON_GPUS_GIB
) -> pd.DataFrame:
    """Predicted peak per (model, method) and whether it fits each common GPU (10% kept free)."""
    rows = []
    for model in models:
        name, arch = architecture_of(model)
        for label, setting in settings(base).items():
            if label == "qlora-fp4":
                continue  # same bytes as nf4
            p = mm.predict(arch, setting, calibration)
            row = {"model": name, "params (B)": round(mm.cached_shapes(arch).total_params / 1e9, 2), "method": label}
            row["peak GiB"] = round(p.peak_gib, 1)
            for g in gpus:
                row[f"{g} GB"] = "fits" if p.peak_bytes <= g * GIB * 0.9 else "-"
            rows.append(row)
    return pd.DataFrame(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness budget",
        description="Which fine-tuning methods fit a GPU: peak memory per method (measured where a GPU record "
        "exists in --results, else predicted by the memory model), quality cost from the sweeps, a recommendation.",
    )
    p.add_argument("--gpu-memory", required=True, help="the GPU's memory, e.g. 24GB, 80GiB, 40960MiB (GB = GiB)")
    p.add_argument(
        "--model",
        required=True,
        help="a preset in conf/model/ (e.g. llama-3-8b), a folder holding config.json, a config.json, or a hub id "
        "(ORG/NAME, read with AutoConfig; offline where cached)",
    )
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per example (default 1024)")
    p.add_argument("--batch", type=int, default=4, help="examples per step on the GPU (default 4)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward")
    p.add_argument("--optim", default="adamw_torch", help=f"one of {', '.join(mm.OPTIMIZER_STATE_BYTES)}")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16)")
    p.add_argument(
        "--target-modules",
        default=",".join(Setting.target_modules),
        help="the layers LoRA adapts, comma-separated, or all-linear (default: all seven projections; the "
        "documents' recipe: q_proj,v_proj)",
    )
    p.add_argument("--margin", type=float, default=0.1, help="share of GPU memory kept free (default 0.1)")
    p.add_argument("--fsdp-gpus", type=int, default=8, help="cards for the full-shard FSDP column (default 8)")
    p.add_argument("--results", default="results", help="folder of run records (measured peaks, quality)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        gpu_bytes = parse_memory(args.gpu_memory)
        checked = (
            ("--seq-len", args.seq_len),
            ("--batch", args.batch),
            ("--rank", args.rank),
            ("--fsdp-gpus", args.fsdp_gpus),
        )
        for flag, value in checked:
            if value <= 0:
                raise BudgetError(f"{flag} {value}: must be a positive integer")
        if not 0 <= args.margin < 1:
            raise BudgetError(f"--margin {args.margin}: must be in [0, 1)")
        if args.optim not in mm.OPTIMIZER_STATE_BYTES:
            raise BudgetError(f"--optim {args.optim!r}: one of {', '.join(mm.OPTIMIZER_STATE_BYTES)}")
        base = Setting(
            method="full",
            batch=args.batch,
            seq_len=args.seq_len,
            gradient_checkpointing=args.gradient_checkpointing,
            optim=args.optim,
            r=args.rank,
            target_modules=target_modules(args.model, args.target_modules),
        )
        table, lines = answer(
            args.model, gpu_bytes, base, margin=args.margin, results_dir=Path(args.results), fsdp_gpus=args.fsdp_gpus
        )
    except BudgetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(lines[0])
    print(lines[1])
    print()
    print(table.to_markdown(index=False))
    print()
    for line in lines[2:]:
        print(line)
    return 0
