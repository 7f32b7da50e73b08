"""The sweep report: report.md and a self-contained report.html, a pure function of run records.

`python -m harness report RESULTS_DIR [--out DIR]` regenerates it from records alone; a sweep writes it
at its end (callbacks.py). Sections: conditions, the runs, the documents' trade-off matrix filled with
measured values, the claims check (claims.py), plots, and a few model outputs per run.
"""

from __future__ import annotations

import argparse
import html
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness import budget  # noqa: E402
from harness.calibration import calibrate  # noqa: E402
from harness.claims import check_claims, load_claims  # noqa: E402
from harness.decision import decision_table, score_se  # noqa: E402
from harness.memory_model import Calibrations, Setting  # noqa: E402
from harness.report_page import GENERATED, html_head, inline_image  # noqa: E402
from harness.results import NOT_IN_KEY, load_records, peak_memory  # noqa: E402
from harness.startup import STARTUP_PARTS  # noqa: E402

PLOTS = ("memory", "speed", "pareto", "ranks", "nf4_fp4", "loss_curves")


def _steps_losses(record: dict) -> list[float]:
    name = record.get("run", {}).get("steps_log")
    if not name or "_path" not in record:
        return []
    path = Path(record["_path"]).parent / name
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["loss"] for r in rows if r.get("loss") is not None]


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record with every figure the report uses (failed and oom runs included)."""
    rows = []
    for r in records:
        cfg, m = r.get("config", {}), r.get("metrics", {})
        method, train = cfg.get("method", {}), cfg.get("train", {})
        mem, score = m.get("memory", {}), m.get("score", {})
        latency = m.get("inference", {})
        peak, source = peak_memory(r)
        rows.append(
            {
                "label": r["run"]["method_label"],
                "method": method.get("name"),
                "r": method.get("r"),
                "quant_type": method.get("quant_type"),
                "double_quant": method.get("double_quant"),
                "target_modules": ",".join(method.get("target_modules") or []),
                "seed": train.get("seed"),
                "grad_accum": train.get("grad_accum"),
                "status": r.get("status"),
                "error": (r.get("error") or "").splitlines()[0] if r.get("error") else "",
                "device": r["run"].get("device"),
                "profile": cfg.get("profile_name", "full"),
                "peak_mem_mib": peak,
                "mem_source": source.split(" (")[0],
                "nvml_process_mib": mem.get("peak_nvml_process_mib"),
                "torch_reserved_mib": mem.get("peak_torch_reserved_mib"),
                "torch_allocated_mib": mem.get("peak_torch_allocated_mib"),
                "rss_mib": mem.get("peak_rss_mib"),
                "tokens_per_s": m.get("tokens_per_s"),
                "train_s": m.get("train_seconds"),
                "total_s": m.get("total_seconds"),
                "process_s": m.get("process_seconds"),
                "startup": m.get("startup_seconds") or None,  # its split (harness/startup.py); older records: None
                "eval_s": m.get("eval_seconds"),
                # the optional probes after training (latency, forgetting); None in records before the split
                "probe_s": (
                    sum(v for k, v in m["eval_parts_seconds"].items() if k in ("latency", "forgetting"))
                    if "eval_parts_seconds" in m
                    else None
                ),
                "base_eval_s": m.get("base_eval_seconds"),
                "mfu": m.get("mfu"),
                "eval_loss": m.get("eval_loss"),
                "score": score.get("exact_match"),
                "field_acc": score.get("field_accuracy"),
                "n_test": score.get("n", 0),
                "base_score": m.get("base_score", {}).get("exact_match"),
                "trainable_pct": m.get("params", {}).get("trainable_pct"),
                "params_total": m.get("params", {}).get("total"),
                "artifact_mib": m["artifact_bytes"] / 2**20 if m.get("artifact_bytes") else None,
                "forgetting_delta": m.get("forgetting", {}).get("delta"),
                "latency_base": latency.get("base", {}).get("mean_latency_s"),
                "latency_unmerged": (latency.get("unmerged") or latency.get("trained") or {}).get("mean_latency_s"),
                "latency_merged": latency.get("merged", {}).get("mean_latency_s"),
                "latency_new_tokens": latency.get("base", {}).get("new_tokens"),
                "latency_prompts": latency.get("base", {}).get("n_prompts"),
                "losses": _steps_losses(r),
                "samples": score.get("samples", []),
            }
        )
    return pd.DataFrame(rows)


def variants_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Ok runs of one method label averaged over seeds (mean, std of the score, number of seeds)."""
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        return ok.assign(n_seeds=[], score_std=[])
    numeric = [c for c in ok.columns if ok[c].dtype.kind in "fi" and c not in ("seed",)]
    first = ok.groupby("label", sort=False).first()
    means = ok.groupby("label", sort=False)[numeric].mean()
    out = first.drop(columns=numeric).join(means)
    out["n_seeds"] = ok.groupby("label", sort=False).size()
    out["score_std"] = ok.groupby("label", sort=False)["score"].std()
    order = {"full": 0, "lora": 1, "qlora": 2}
    out = out.reset_index()
    out["_order"] = out["method"].map(order)
    return out.sort_values(["_order", "quant_type", "double_quant", "r"], na_position="first").drop(columns="_order")


def conditions(records: list[dict]) -> pd.DataFrame:
    """What the figures depend on; a value that differs between runs is listed with each of its values."""

    def values(get) -> str:
        seen = []
        for r in records:
            try:
                v = get(r)
            except (KeyError, TypeError):
                v = None
            if v not in seen:
                seen.append(v)
        return ", ".join("-" if v is None else str(v) for v in seen)

    env = lambda r: r["environment"]  # noqa: E731
    rows = [
        ("model", values(lambda r: r["config"]["model"]["name"])),
        ("model source", values(lambda r: r["config"]["model"].get("hub_id") or r["config"]["model"].get("gguf_file"))),
        ("parameters", values(lambda r: f"{r['metrics']['params']['total'] / 1e6:.1f}M")),
        ("dataset", values(lambda r: r["config"]["dataset"]["name"])),
        (
            "train examples / validation / test scored",
            values(
                lambda r: (
                    f"{r['config']['dataset']['n_train']} / {r['config']['dataset']['n_validation']} / "
                    f"{r['config']['eval']['max_test_examples']}"
                )
            ),
        ),
        ("profile", values(lambda r: r["config"].get("profile_name", "full"))),
        (
            "steps x batch x grad accum",
            values(
                lambda r: (
                    f"{r['run'].get('optimizer_steps', r['config']['train']['max_steps'])} x "
                    f"{r['config']['train']['batch_size']} x "
                    f"{r['config']['train']['grad_accum']}"
                )
            ),
        ),
        ("max sequence length", values(lambda r: r["config"]["train"]["max_seq_len"])),
        (
            "precision",
            values(
                lambda r: (
                    r["run"]["precision"]
                    + (f" ({r['run']['precision_reason']})" if r["run"].get("precision_reason") else "")
                )
            ),
        ),
        ("gradient checkpointing", values(lambda r: r["config"]["train"]["gradient_checkpointing"])),
        ("optimizer", values(lambda r: r["config"]["train"]["optim"])),
        ("seeds", values(lambda r: r["config"]["train"]["seed"])),
        (
            "device",
            values(lambda r: env(r).get("gpu_name") or f"CPU: {env(r).get('cpu')} ({env(r).get('cpu_count')} cores)"),
        ),
        ("GPU driver / CUDA", values(lambda r: f"{env(r).get('gpu_driver')} / {env(r).get('cuda_runtime')}")),
        ("python", values(lambda r: env(r)["python"])),
        (
            "torch / transformers / peft",
            values(lambda r: " / ".join(str(env(r)["packages"].get(p)) for p in ("torch", "transformers", "peft"))),
        ),
        (
            "bitsandbytes / datasets",
            values(lambda r: " / ".join(str(env(r)["packages"].get(p)) for p in ("bitsandbytes", "datasets"))),
        ),
        ("git", values(lambda r: f"{env(r).get('git_sha', '')[:10]}{' (dirty)' if env(r).get('git_dirty') else ''}")),
    ]
    return pd.DataFrame(rows, columns=["condition", "value"])


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    status = {"ok": "ok", "oom": "does not fit (OOM)", "failed": "failed"}
    return pd.DataFrame(
        {
            "method": runs["label"],
            "seed": runs["seed"],
            "status": [
                status.get(s, s) + (f": {e[:80]}" if e and s != "ok" else "")
                for s, e in zip(runs["status"], runs["error"], strict=True)
            ],
            "peak mem MiB": [
                f"{_fmt(v, '.0f')} ({src})" for v, src in zip(runs["peak_mem_mib"], runs["mem_source"], strict=True)
            ],
            "tokens/s": runs["tokens_per_s"].map(lambda v: _fmt(v, ".1f")),
            "MFU %": runs["mfu"].map(lambda v: _fmt(v * 100 if v is not None else None, ".1f")),
            "train s": runs["train_s"].map(lambda v: _fmt(v, ".1f")),
            "eval loss": runs["eval_loss"].map(_fmt),
            "base score": runs["base_score"].map(_fmt),
            # exact match with two standard errors (binomial over this run's test examples)
            "score ± 2 SE": [
                "-" if sc is None or sc != sc else f"{sc:.3f} ± {2 * score_se(sc, int(n or 0)):.3f}"
                for sc, n in zip(runs["score"], runs["n_test"], strict=True)
            ],
            "field acc": runs["field_acc"].map(_fmt),
            "forgetting": runs["forgetting_delta"].map(lambda v: _fmt(v, "+.4f")),
            "trainable %": runs["trainable_pct"].map(_fmt),
            "adapter/ckpt MiB": runs["artifact_mib"].map(lambda v: _fmt(v, ".2f")),
        }
    )


def time_table(runs: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """Where each job's time went: training against everything else (process start and imports, loading,
    base-model evaluation, scoring, saving). MFU counts only training, so the rest is the sweep's overhead."""
    rows = runs[runs["process_s"].notna()] if "process_s" in runs else runs.iloc[0:0]
    if rows.empty:
        return None, "The records carry no process time (written before it was recorded)."
    train, evaluation, base = (rows[c].fillna(0) for c in ("train_s", "eval_s", "base_eval_s"))
    probes = rows["probe_s"] if "probe_s" in rows else pd.Series(None, index=rows.index, dtype=float)
    table = pd.DataFrame(
        {
            "method": rows["label"],
            "job process s": rows["process_s"].round(1),
            # before run() starts: interpreter, imports (torch, transformers, peft, bitsandbytes), Hydra
            "start and imports s": (rows["process_s"] - rows["total_s"]).round(1),
            "base model checks s": base.round(1),
            "training s": rows["train_s"].round(1),
            # validation loss and the test set's generation; older records count their probes in here too
            "scoring s": (evaluation - probes.fillna(0)).round(1),
            "latency and forgetting probes s": probes.astype(float).round(1),
            "data, loading, saving s": (rows["total_s"] - train - evaluation - base).round(1),
            "training share %": (100 * rows["train_s"] / rows["process_s"]).round(1),
        }
    )
    share = 100 * rows["train_s"].sum() / rows["process_s"].sum()
    note = (
        f"Training took {share:.1f} % of the jobs' process time ({rows['train_s'].sum():.0f} of "
        f"{rows['process_s'].sum():.0f} s); the rest is overhead that MFU and tokens/s do not see."
    )
    startups = [d for d in rows["startup"] if d] if "startup" in rows else []
    if startups:
        medians = pd.DataFrame(startups).median()
        split = ", ".join(
            f"{part.replace('_', ' ')} {medians[part]:.1f} s" for _, part in STARTUP_PARTS if part in medians
        )
        note += f" Start and imports, median per job: {split} (`metrics.startup_seconds` in each record)."
    if probes.fillna(0).sum() > 0:
        note += (
            f" The optional probes (generation latency, forgetting on general text) took {probes.sum():.0f} s; "
            "`eval.latency_prompts=0 eval.forgetting_chunks=0` turn them off."
        )
    return table, note


def matrix_table(variants: pd.DataFrame) -> pd.DataFrame:
    """The documents' matrix (method, memory, speed, accuracy vs full FT, trainable %, size, best use)."""
    docs = load_claims()["matrix"]
    full = variants[variants["method"] == "full"]
    full_speed = float(full["tokens_per_s"].iloc[0]) if not full.empty else None
    full_score = float(full["score"].iloc[0]) if not full.empty else None
    rows = []
    for _, v in variants.iterrows():
        d = docs.get(v["method"], {})
        speed = f"{v['tokens_per_s']:.0f} tok/s"
        if full_speed:
            speed += f" ({v['tokens_per_s'] / full_speed:.2f}x full)"
        if full_score and v["method"] != "full":
            acc = f"{v['score']:.3f} ({(v['score'] - full_score) / full_score * 100:+.1f} % vs full)"
        else:
            acc = f"{v['score']:.3f}"
        se = score_se(v["score"], int(v.get("n_test") or 0), int(v["n_seeds"]), v.get("score_std"))
        seeds = f" ± {2 * se:.3f} (2 SE" + (f", {int(v['n_seeds'])} seeds)" if v["n_seeds"] > 1 else ")")
        rows.append(
            {
                "method": v["label"],
                "peak memory (measured)": f"{v['peak_mem_mib']:.0f} MiB ({v['mem_source']})",
                "memory, 7B (docs)": d.get("memory_7b", "-"),
                "train speed (measured)": speed,
                "speed (docs)": d.get("speed", "-"),
                "task score (measured)": acc + seeds,
                "field acc (measured)": f"{v['field_acc']:.3f}",
                "accuracy (docs)": d.get("accuracy", "-"),
                "trainable % (measured)": f"{v['trainable_pct']:.3g}",
                "trainable (docs)": d.get("trainable", "-"),
                "adapter/ckpt (measured)": f"{v['artifact_mib']:.2f} MiB" if v["artifact_mib"] else "-",
                "size (docs)": d.get("artifact", "-"),
                "best use (docs)": d.get("best_use", "-"),
            }
        )
    return pd.DataFrame(rows)


def _pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower memory and higher score."""
    keep = []
    for i, (m, s) in enumerate(points):
        if not any((m2 <= m and s2 >= s) and (m2 < m or s2 > s) for j, (m2, s2) in enumerate(points) if j != i):
            keep.append(i)
    return sorted(keep, key=lambda i: points[i][0])


def make_plots(runs: pd.DataFrame, variants: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Each plot as a PNG in out_dir; a plot whose data is missing is left out."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    labels = list(variants["label"])
    x = np.arange(len(labels))

    def save(name: str, fig) -> None:
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=150)
        plt.close(fig)
        paths[name] = path

    if len(variants):
        fig, ax = plt.subplots(figsize=(max(6, len(labels) * 0.9), 4))
        sources = [
            ("nvml_process_mib", "NVML (process)"),
            ("torch_reserved_mib", "torch reserved"),
            ("torch_allocated_mib", "torch allocated"),
            ("rss_mib", "RSS (CPU)"),
        ]
        sources = [(c, n) for c, n in sources if variants[c].notna().any()]
        width = 0.8 / max(len(sources), 1)
        for i, (col, name) in enumerate(sources):
            ax.bar(x + i * width - 0.4 + width / 2, variants[col].fillna(0), width, label=name)
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylabel("peak memory, MiB")
        ax.set_title("Peak memory per method (one bar per source)")
        ax.legend(fontsize=8)
        save("memory", fig)

        fig, ax = plt.subplots(figsize=(max(6, len(labels) * 0.9), 4))
        ax.bar(x, variants["tokens_per_s"], color="tab:green")
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylabel("non-padding tokens/s (training)")
        ax.set_title("Training throughput")
        save("speed", fig)

        fig, ax = plt.subplots(figsize=(7, 4.8))
        pts = list(zip(variants["peak_mem_mib"].astype(float), variants["score"].astype(float), strict=True))
        errors = [
            2 * score_se(v["score"], int(v.get("n_test") or 0), int(v.get("n_seeds", 1)), v.get("score_std"))
            for _, v in variants.iterrows()
        ]
        ax.errorbar(variants["peak_mem_mib"], variants["score"], yerr=errors, fmt="o", capsize=3, label="± 2 SE")
        # labels stacked where points crowd, so none prints over another
        order = sorted(range(len(pts)), key=lambda i: (pts[i][1], pts[i][0]))
        for rank, i in enumerate(order):
            ax.annotate(labels[i], pts[i], fontsize=7, xytext=(4, 4 + 9 * (rank % 4)), textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "linewidth": 0.4, "color": "grey"})  # fmt: skip
        front = _pareto(pts)
        fx, fy = [pts[i][0] for i in front], [pts[i][1] for i in front]
        ax.step(fx, fy, "r--", where="post", label="Pareto frontier (less memory, higher score)")
        ax.plot(fx, fy, "rs", markersize=9, fillstyle="none")
        ax.set_xlim(0, max(m for m, _ in pts) * 1.15)
        ax.set_ylim(-0.05, max(0.2, *(s + e for (_, s), e in zip(pts, errors, strict=True))) * 1.15)
        ax.set_xlabel(f"peak memory, MiB ({variants['mem_source'].iloc[0]})")
        ax.set_ylabel("task score (exact match)")
        ax.set_title("Score against memory")
        ax.legend(fontsize=8, loc="lower right")
        save("pareto", fig)

    lora = variants[variants["method"] == "lora"].sort_values("r")
    if lora["r"].nunique() >= 2:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.5))
        for ax, col, name in zip(
            axes,
            ("score", "peak_mem_mib", "artifact_mib"),
            ("task score", "peak memory, MiB", "adapter, MiB"),
            strict=True,
        ):
            r, y = lora["r"].astype(float), lora[col].astype(float)
            ax.plot(r, y, "o", label="measured")
            if y.notna().sum() >= 2:  # a linear axis and the least-squares line: a straight trend looks straight
                slope, intercept = np.polyfit(r[y.notna()], y[y.notna()], 1)
                ax.plot(r, slope * r + intercept, "k--", linewidth=1, label=f"fit: {slope:+.3g} per r")
            ax.set_xlabel("LoRA rank r")
            ax.set_xticks(r)
            ax.set_ylim(bottom=0)
            ax.set_title(name)
            ax.legend(fontsize=7)
        save("ranks", fig)

    q = runs[(runs["method"] == "qlora") & (runs["status"] == "ok")]
    if set(q["quant_type"]) >= {"nf4", "fp4"}:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for _, row in q.iterrows():
            style = "-" if row["quant_type"] == "nf4" else "--"
            axes[0].plot(row["losses"], style, label=f"{row['label']} s{row['seed']}")
        axes[0].set_xlabel("logged step")
        axes[0].set_ylabel("training loss")
        axes[0].set_title("nf4 (solid) vs fp4 (dashed)")
        axes[0].legend(fontsize=7)
        qv = variants[variants["method"] == "qlora"]
        # the second panel shows the score where one is above 0, else field accuracy, else the eval loss
        panels = (
            ("score", "task score (exact match)"),
            ("field_acc", "field accuracy"),
            ("eval_loss", "validation loss"),
        )
        col, name = next(((c, n) for c, n in panels if (qv[c].fillna(0) > 0).any()), panels[-1])
        axes[1].bar(qv["label"], qv[col])
        axes[1].set_ylabel(name)
        axes[1].set_title(f"{name} per variant")
        axes[1].tick_params(axis="x", rotation=20)
        save("nf4_fp4", fig)

    ok = runs[runs["status"] == "ok"]
    if ok["losses"].map(len).sum():
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for _, row in ok.iterrows():
            ax.plot(row["losses"], label=f"{row['label']} s{row['seed']}", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("logged step")
        ax.set_ylabel("training loss")
        ax.set_title("Training loss, every run")
        ax.legend(fontsize=7, ncol=2)
        save("loss_curves", fig)
    return paths


def _answer(variants: pd.DataFrame) -> str:
    """The sweep's short answer: best score, and the least memory within 5 % of it."""
    if variants.empty:
        return "No run finished ok."
    if not (variants["score"].fillna(0) > 0).any():
        return (
            "No method scored above 0 exact match: training was too short to compare the methods' quality, so no "
            "best method is named. Memory and throughput above and below are measured all the same."
        )
    ranked = variants.sort_values(["score", "field_acc"])
    best = ranked.iloc[-1]
    near = (
        variants[(variants["score"] >= best["score"] * 0.95) & (variants["field_acc"] >= best["field_acc"] * 0.95)]
        .sort_values("peak_mem_mib")
        .iloc[0]
    )
    fastest = variants.sort_values("tokens_per_s").iloc[-1]
    return (
        f"Best task score (exact match, then field accuracy): **{best['label']}** ({best['score']:.3f} / "
        f"{best['field_acc']:.3f}). Least peak memory within 5 % of both: **{near['label']}** "
        f"({near['peak_mem_mib']:.0f} MiB, {near['score']:.3f} / {near['field_acc']:.3f}). Fastest training: "
        f"**{fastest['label']}** ({fastest['tokens_per_s']:.0f} tokens/s)."
    )


FITS_ON_MODELS = ("llama-3.2-1b", "llama-3.2-3b", "llama-2-7b", "llama-3-8b", "llama-2-13b", "llama-33b", "llama-2-70b")


def fits_on_section(records: list[dict], calibration: Calibrations) -> tuple[pd.DataFrame, str]:
    """Method x model size against common GPUs, at this sweep's batch and sequence length (memory model)."""
    cfg = records[0]["config"]["train"] if records else {}
    base = Setting(
        method="full",
        batch=int(cfg.get("batch_size", 1)),
        seq_len=int(cfg.get("max_seq_len", 512)),
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing", False)),
        optim=str(cfg.get("optim", "adamw_torch")),
    )
    table = budget.fits_on_table(list(FITS_ON_MODELS), base, calibration)
    note = (
        f"Predicted peak at this sweep's batch {base.batch} x {base.seq_len} tokens, checkpointing "
        f"{'on' if base.gradient_checkpointing else 'off'}, {base.optim}, LoRA r=16 on all linear layers; 'fits' "
        f"keeps 10 % of the card free. Memory model {calibration.describe()}. For other conditions: "
        "`python -m harness budget --gpu-memory 24GB --model llama-3-8b --seq-len 1024 --batch 4`."
    )
    return table, note


# Bookkeeping fields (the same as the run key leaves out) and the method, which a comparison varies. A profile's
# name stays a condition: records of a reduced profile are not compared with full ones.
_NOT_CONDITIONS = {"method", *NOT_IN_KEY} - {"profile_name"}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v, sort_keys=True, default=str)
    return out


def condition_key(record: dict) -> dict:
    """The config a comparison must hold fixed: all but the method, the seed and bookkeeping fields."""
    cfg = {k: v for k, v in record.get("config", {}).items() if k not in _NOT_CONDITIONS}
    flat = _flatten(cfg)
    flat.pop("train.seed", None)
    return flat


def split_by_conditions(records: list[dict]) -> tuple[list[dict], str]:
    """The records that share the conditions of the newest record, and a note on those left out."""
    if not records:
        return records, ""
    newest = max(records, key=lambda r: r.get("run", {}).get("finished_at") or "")
    key = condition_key(newest)
    kept = [r for r in records if condition_key(r) == key]
    others = [r for r in records if condition_key(r) != key]
    if not others:
        return kept, ""
    differing = sorted({k for r in others for k, v in condition_key(r).items() if key.get(k) != v})
    note = (
        f"{len(others)} record(s) in this folder ran under other conditions and are not compared here "
        f"(they differ in: {', '.join(differing[:8])}{' ...' if len(differing) > 8 else ''})."
    )
    return kept, note


def write_report(records: list[dict], out_dir: Path, *, title: str) -> list[Path]:
    """Write report.md (plots as PNG beside it) and a self-contained report.html into out_dir.

    Only records that share one set of conditions are compared (the newest record's); the rest are
    counted in a note, so runs with other steps, data or model never average into one row."""
    from harness.bench_report import is_bench_record, write_bench_report
    from harness.scale_report import is_scale_record, write_scale_report

    # the newest record says which kind of sweep this folder's report is for
    newest = max(records, key=lambda r: r.get("run", {}).get("finished_at") or "") if records else None
    if newest is not None and is_scale_record(newest):
        return write_scale_report([r for r in records if is_scale_record(r)], out_dir, title=title)
    if newest is not None and is_bench_record(newest):
        return write_bench_report([r for r in records if is_bench_record(r)], out_dir, title=title)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_records = records  # scale-sweep GPU records calibrate the memory model
    records = [r for r in records if not is_scale_record(r) and not is_bench_record(r)]
    records, left_out = split_by_conditions(records)
    runs = runs_frame(records)
    variants = variants_frame(runs)
    calibration = calibrate(all_records)  # scale-sweep GPU records, if the folder has any
    claims = check_claims(runs[runs["status"] == "ok"], variants, all_records, calibration)
    plots = make_plots(runs, variants, out_dir)
    cond = conditions(records)
    profile_notes = sorted({r["config"].get("profile_note") or "" for r in records} - {""})
    decision, decision_note = decision_table(records, variants, calibration)
    sections = [
        ("Which method fits which GPU", decision if not decision.empty else None, decision_note),
        ("Answer", None, _answer(variants)),
        ("Conditions", cond, None),
        (
            "Runs",
            runs_table(runs),
            "One row per run. Peak memory: NVML per process on a GPU, RSS on a CPU; "
            "forgetting: loss on general text after minus before training.",
        ),
        ("Where the time went", *time_table(runs)),
        ("Trade-off matrix: measured, next to the documents", matrix_table(variants), None),
        (
            "Claims check",
            claims[["id", "claim", "source", "needs", "measured", "verdict", "why"]],
            "A verdict is given only where the evidence can carry it: otherwise the claim is inconclusive and the "
            "row says what is missing (a smoke profile never decides a measured claim).",
        ),
        ("Other model sizes: which GPU fits which method (memory model)", *fits_on_section(all_records, calibration)),
    ]

    md = [f"# {title}", "", GENERATED, ""]
    for note in profile_notes:
        md += [f"> **Profile:** {note}", ""]
    if left_out:
        md += [f"> {left_out}", ""]
    for name, frame, text in sections:
        md += [f"## {name}", ""]
        if text:
            md += [text, ""]
        if frame is not None:
            md += [frame.to_markdown(index=False), ""]
    md += ["## Plots", ""]
    for name, path in plots.items():
        md += [f"![{name}]({path.name})", ""]
    md += ["## Model outputs (first test examples)", ""]
    for _, row in runs[runs["status"] == "ok"].iterrows():
        for sample in row["samples"][:2]:
            md += [
                f"- **{row['label']}** (seed {row['seed']}): `{sample['prediction'][:300]}`  ",
                f"  expected: `{sample['reference'][:300]}`",
            ]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")

    h = html_head(title)
    for note in profile_notes:
        h.append(f"<p><b>Profile:</b> {html.escape(note)}</p>")
    if left_out:
        h.append(f"<p>{html.escape(left_out)}</p>")
    for name, frame, text in sections:
        h.append(f"<h2>{html.escape(name)}</h2>")
        if text:
            h.append(f"<p>{html.escape(text).replace('**', '')}</p>")
        if frame is not None:
            h.append(frame.to_html(index=False, escape=True, border=0))
    h.append("<h2>Plots</h2>")
    h += [inline_image(name, path) for name, path in plots.items()]
    h.append("<h2>Model outputs (first test examples)</h2>")
    for _, row in runs[runs["status"] == "ok"].iterrows():
        for sample in row["samples"][:2]:
            h.append(
                f"<p><b>{html.escape(row['label'])}</b> (seed {row['seed']})</p>"
                f"<pre>{html.escape(sample['prediction'])}</pre>"
                f"<p>expected:</p><pre>{html.escape(sample['reference'])}</pre>"
            )
    h.append("</body></html>")
    html_path = out_dir / "report.html"
    html_path.write_text("\n".join(h), encoding="utf-8")
    return [md_path, html_path]


def default_out_dir(results_dir: Path) -> Path:
    """results/<model>/<dataset> -> reports/<model>/<dataset>/all"""
    parts = results_dir.resolve().parts
    tail = parts[parts.index("results") + 1 :] if "results" in parts else (results_dir.name,)
    return Path("reports", *tail, "all")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness report", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path, nargs="?", help="a folder of run records (results/<model>/<dataset>)")
    parser.add_argument("--out", type=Path, help="report folder (default reports/<model>/<dataset>/all)")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--published", action="store_true", help="rewrite every committed report (reports/published/manifest.yaml)"
    )
    args = parser.parse_args(argv)
    if args.published:
        from harness.published import published_reports, regenerate

        for report in published_reports():
            for path in regenerate(report):
                print(path)
        return 0
    if args.results_dir is None:
        parser.error("give a folder of run records, or --published")
    if not args.results_dir.is_dir():
        parser.error(f"{args.results_dir}: not a folder")
    records = load_records(args.results_dir)
    if not records:
        parser.error(f"{args.results_dir}: no run records (*.json) in it")
    out = args.out or default_out_dir(args.results_dir)
    title = args.title or f"{records[0]['config']['model']['name']} on {records[0]['config']['dataset']['name']}"
    for path in write_report(records, out, title=title):
        print(path)
    return 0
