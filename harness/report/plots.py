"""The trade-off report's plots, each a PNG beside report.md (and inlined in report.html).

Readable first: labels that do not print over one another, the Pareto frontier drawn, the LoRA rank curve on a
linear axis with its fitted line, axes from 0, no empty panel, 150 dpi.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.report.frames import variant_se  # noqa: E402

PLOTS = ("memory", "speed", "pareto", "ranks", "nf4_fp4", "loss_curves")


def _pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower memory and higher score."""
    keep = []
    for i, (m, s) in enumerate(points):
        if not any((m2 <= m and s2 >= s) and (m2 < m or s2 > s) for j, (m2, s2) in enumerate(points) if j != i):
            keep.append(i)
    return sorted(keep, key=lambda i: points[i][0])


# Long on purpose: one block per plot, in the order the report shows them.
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
        errors = [2 * variant_se(v) for _, v in variants.iterrows()]
        # not scored (eval.enabled=false): no point, the pareto plot stays empty rather than failing
        ax.errorbar(variants["peak_mem_mib"].astype(float), variants["score"].astype(float), yerr=errors, fmt="o",
                    capsize=3, label="± 2 SE")  # fmt: skip
        # labels stacked where points crowd, so none prints over another
        order = sorted(range(len(pts)), key=lambda i: (pts[i][1], pts[i][0]))
        for rank, i in enumerate(order):
            ax.annotate(labels[i], pts[i], fontsize=7, xytext=(6 + 40 * (rank % 2), 6 + 10 * (rank % 6)),
                        textcoords="offset points",
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
        ax.legend(fontsize=8, loc="upper left")
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
