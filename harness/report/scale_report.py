"""The scale sweep's report: measured peak memory and speed per model, method, checkpointing and optimizer,
next to the memory model's prediction for each run made without that run (its held-out error).

Why separate from the trade-off report: a scale sweep has many models and no scores; what it answers is
"what does each setting cost at this size" and "how far can the memory model be trusted".
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.predict import memory_model as mm  # noqa: E402
from harness.predict.calibration import calibrate, configuration_key, gpu_records, setting_of_record  # noqa: E402
from harness.report.claims import check_memory_claims  # noqa: E402
from harness.report.frames import runs_frame, time_table  # noqa: E402
from harness.report.report_page import write_table_page  # noqa: E402
from harness.results import peak_memory  # noqa: E402


def is_scale_record(record: dict) -> bool:
    """A train-only record (eval.enabled=false): what the scale sweep writes."""
    return record.get("config", {}).get("eval", {}).get("enabled", True) is False


def scale_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run; `predicted MiB` uses a calibration fitted on the other GPU runs only."""
    gpu = gpu_records(records)
    calibration = calibrate(records)
    rows = []
    for r in records:
        cfg, m = r["config"], r.get("metrics", {})
        setting = setting_of_record(r)
        mem = m.get("memory", {})
        measured, source = peak_memory(r)
        # a fit without this run's configuration (other seeds of it included) predicts it
        others = [g for g in gpu if configuration_key(g) != configuration_key(r)] if r in gpu else gpu
        row = {
            "model": cfg["model"]["name"],
            "method": r["run"]["method_label"],
            "checkpointing": "on" if setting.gradient_checkpointing else "off",
            "optim": setting.optim,
            "batch x seq": f"{setting.batch} x {setting.seq_len}",
            "status": "does not fit (oom)" if r["status"] == "oom" else r["status"],
            "NVML MiB": mem.get("peak_nvml_process_mib"),
            "torch reserved MiB": mem.get("peak_torch_reserved_mib"),
            "torch allocated MiB": mem.get("peak_torch_allocated_mib"),
            "measured MiB": measured,
            "measured as": source,
            "compile": "on" if cfg["train"].get("torch_compile") else "off",
            # compiling happens inside the first steps: stated apart, since it is paid once per machine when the
            # Inductor cache is reused (fx_graph_cache_hits in the record)
            "compile s": (m.get("compile") or {}).get("compile_seconds"),
            "sync-free steps": "on" if cfg["train"].get("sync_free_steps") else "off",
            "Liger kernels": "on" if cfg["train"].get("liger_kernel") else "off",
            "attention": r["run"].get("attn_implementation") or cfg["train"].get("attn_implementation"),
            "tokens/s": m.get("tokens_per_s"),
            "tokens/s after step 1": m.get("tokens_per_s_after_first_step"),
            "MFU %": m["mfu"] * 100 if m.get("mfu") is not None else None,
            "MFU % after step 1": m["mfu_after_first_step"] * 100
            if m.get("mfu_after_first_step") is not None
            else None,
        }
        try:
            prediction = mm.predict(cfg["model"]["architecture"], setting, calibrate(others))
            row["predicted MiB"] = prediction.peak_bytes / mm.MIB
        except (ValueError, KeyError) as e:
            row["predicted MiB"], row["error"] = None, str(e)
        # an error is stated for the families the fit calibrates (three configurations or more), as budget's band
        on_gpu = r in gpu and r["status"] == "ok" and row["predicted MiB"]
        on_gpu = on_gpu and calibration.for_method(setting.method).calibrated
        row["held-out error %"] = (row["predicted MiB"] - measured) / measured * 100 if on_gpu else None
        rows.append(row)
    return pd.DataFrame(rows)


def write_scale_report(records: list[dict], out_dir: Path, *, title: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = scale_frame(records)
    calibration = calibrate(records)
    errors = frame["held-out error %"].dropna()
    summary = (
        f"{len(frame)} run(s), {int((frame['status'] == 'ok').sum())} ok, "
        f"{int(frame['status'].str.startswith('does not fit').sum())} out of memory. Memory model: "
        f"{calibration.describe()}. "
        + (
            f"Each GPU run predicted by a fit on the other runs: mean |error| {errors.abs().mean():.1f} %, "
            f"worst {errors.abs().max():.1f} %, within 10 % for {int((errors.abs() <= 10).sum())} of {len(errors)}."
            if not errors.empty
            else "No held-out error is computed: "
            + (
                "no run here is on a GPU (a CPU's RSS is not a GPU peak)."
                if not any(r.get("run", {}).get("device") == "cuda" for r in records)
                else "no GPU run here is of a method family with three configurations the model counts (compiled and "
                "Liger runs hold other tensors than eager autograd, and are left out)."
            )
        )
    )
    shown = frame.drop(columns=[c for c in ("error",) if c in frame.columns]).round(1)
    plot = None
    if not errors.empty:
        ok = frame.dropna(subset=["held-out error %"])
        fig, ax = plt.subplots(figsize=(6, 5))
        for method, sub in ok.groupby("method"):
            ax.scatter(sub["measured MiB"], sub["predicted MiB"], label=method, s=18)
        top = float(max(ok["measured MiB"].max(), ok["predicted MiB"].max())) * 1.05
        ax.plot([0, top], [0, top], "k--", linewidth=1, label="prediction = measurement")
        ax.set_xlabel("measured peak, MiB (NVML process)")
        ax.set_ylabel("predicted (fit on the other runs), MiB")
        ax.set_title("Memory model against the scale sweep")
        ax.legend(fontsize=7)
        fig.tight_layout()
        plot = out_dir / "predicted_vs_measured.png"
        fig.savefig(plot, dpi=110)
        plt.close(fig)

    plots = {"predicted vs measured": plot} if plot else {}
    # the sweep's overhead beside the training that MFU measures, a row per run in the table's order
    runs = runs_frame(records)
    runs["label"] = [
        f"{row['model']} {row['method']} ({row['batch x seq']}, compile {row['compile']}, sync-free "
        f"{row['sync-free steps']}, {row['attention']})"
        for _, row in frame.iterrows()
    ]
    time, time_note = time_table(runs)
    claims = check_memory_claims(records, calibration)[["id", "claim", "measured", "verdict", "why"]]
    claims_note = (
        "The source documents' memory claims against these records: a GPU record at a claim's exact conditions "
        "decides it; else the exact count of the tensors that must be resident, else the memory model where this "
        "folder calibrates the method's family; otherwise the verdict is inconclusive and says what is missing."
    )
    sections = [("The documents' memory claims", claims_note, claims)]
    if time is not None:
        sections.append(("Where the time went", time_note, time))
    return write_table_page(out_dir, title=title, note=summary, table=shown, plots=plots, sections=sections)
