"""The trade-off report: which method fits which GPU first, then the answer, the conditions, every run, where
the time went, the documents' trade-off matrix with measured values, the claims check, larger models against
common cards, plots and a few model outputs.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from harness.predict.calibration import calibrate
from harness.predict.memory_model import Calibrations, Setting
from harness.report import budget
from harness.report.claims import check_claims, load_claims
from harness.report.comparisons import QualityEvidence, comparisons_table, curve_table, quality_evidence
from harness.report.conditions import conditions, split_by_conditions, training_conditions
from harness.report.decision import decision_table
from harness.report.frames import (
    missing_parts,
    plain_methods,
    runs_frame,
    score_se,
    time_table,
    variant_se,
    variants_frame,
)
from harness.report.longer_training import longer_training_section
from harness.report.lora_variants import variants_section
from harness.report.lr_report import is_search_record, lr_plot, lr_section, select_runs
from harness.report.plots import make_plots
from harness.report.report_page import GENERATED, html_head, inline_image
from harness.report.summary import first_screen


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


def matrix_table(variants: pd.DataFrame) -> pd.DataFrame:
    """The documents' matrix (method, memory, speed, accuracy vs full FT, trainable %, size, best use)."""
    docs = load_claims()["matrix"]
    full = variants[variants["method"] == "full"]
    full_speed = float(full["tokens_per_s"].iloc[0]) if not full.empty else None
    full_score = float(full["score"].iloc[0]) if not full.empty else None
    rows = []
    for _, v in variants.iterrows():
        # the documents' matrix speaks of LoRA and QLoRA as such: a variant's row has no documents' column
        d = {} if v.get("adapter_variant") else docs.get(v["method"], {})
        speed = f"{v['tokens_per_s']:.0f} tok/s"
        if full_speed:
            speed += f" ({v['tokens_per_s'] / full_speed:.2f}x full)"
        if full_score and v["method"] != "full":
            acc = f"{v['score']:.3f} ({(v['score'] - full_score) / full_score * 100:+.1f} % vs full)"
        else:
            acc = f"{v['score']:.3f}"
        se = variant_se(v)
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


def _answer(variants: pd.DataFrame) -> str:
    """The sweep's short answer: best score, and the least memory within 5 % of it.

    Point estimates only; it says so, because with few seeds a mean's lead is often inside its error (the summary
    section, from paired gaps, is the verdict).
    """
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
        f"**{fastest['label']}** ({fastest['tokens_per_s']:.0f} tokens/s). These are read from the means, errors "
        "left out: the summary's paired intervals say whether a gap is decided."
    )


def _paired_section(quality: QualityEvidence, *, tuned: bool = True) -> tuple[pd.DataFrame | None, str]:
    """The paired comparisons, and what is missing for those the records cannot make."""
    untuned = (
        ""
        if tuned
        else (
            "**Learning rates not tuned:** each gap below compares the methods at their config's rates, so it measures "
            "the rates as much as the methods; none is a verdict. "
        )
    )
    missing = ""
    if quality.missing:
        missing = (
            f" No per-example results for {', '.join(quality.missing)} (records written before 2026-12-02, or the "
            "file is gone): those runs are in no comparison here."
        )
    if quality.table.empty:
        if quality.scored:
            why = f"only {', '.join(quality.scored)} has them so far"
        elif quality.missing:
            why = "none of these records has them"
        else:
            why = "nothing was scored: a sweep with eval.enabled=false scores nothing"
        return None, (
            "No two methods here have per-example results on the same test examples, so no gap is computed "
            f"example by example ({why}).{missing}"
        )
    note = untuned + (
        "Each gap is a - b on the same test examples (and the same training seeds, where both ran several): "
        "points of the score (x 100), with its 95 % interval (harness/report/paired.py: the crossed seeds x examples "
        "variance, t with Satterthwaite's degrees of freedom; with one seed the error is over test examples only and "
        "leaves seed-to-seed variance out). 'relative to a': the gap as a share of a's score, as the documents "
        "state theirs. McNemar p: exact test on the examples where only one of the two is right (one seed, exact "
        "match). 'unpaired ± 2 SE': the same gap's error as if the methods had been scored on different examples, "
        f"the report's error before per-example results.{missing}"
    )
    return comparisons_table(quality.table), note


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


# Long on purpose: the page's sections in reading order, written once to markdown and once to HTML.
def write_tradeoff_report(records: list[dict], out_dir: Path, *, title: str, all_records: list[dict]) -> list[Path]:
    """Write report.md (plots as PNG beside it) and a self-contained report.html into out_dir.

    Only records that share one set of conditions are compared (those most records share); the rest are
    counted in a note, so runs with other steps, data or model never average into one row. `all_records` (the
    folder's, scale-sweep GPU records included) calibrate the memory model and stand for claims at scale."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scored, left_out = split_by_conditions([r for r in records if not is_search_record(r)])
    conditions_of = [training_conditions(r) for r in scored]
    searches = [r for r in records if is_search_record(r) and (not scored or training_conditions(r) in conditions_of)]
    if not scored:
        return write_search_report(searches, out_dir, title=title)
    selection = select_runs(scored, scored + searches)
    records = selection.compared
    runs = runs_frame(records)
    variants = variants_frame(runs)
    if not variants.empty:  # records trained with eval.enabled=false have no score: NaN ("nan" in the tables)
        variants = variants.assign(**{c: pd.to_numeric(variants[c], errors="coerce") for c in ("score", "field_acc")})
    calibration = calibrate(all_records)  # scale-sweep GPU records, if the folder has any
    quality = quality_evidence(records, variants)
    claims = check_claims(runs[runs["status"] == "ok"], variants, all_records, calibration, quality, rates=selection)
    plots = make_plots(plain_methods(runs), plain_methods(variants), out_dir)  # the documents' methods
    lora_variants = variants_section(quality, variants, calibration, runs)
    cond = conditions(records)
    profile_notes = sorted({r["config"].get("profile_note") or "" for r in records} - {""})
    decision, decision_note = decision_table(records, variants, calibration)
    missing = missing_parts(records)
    missing_note = f" Missing ('-' in the tables): {'; '.join(missing)}." if missing else ""
    longer = longer_training_section(all_records)
    lr_plot_path = lr_plot(selection.choices, out_dir)
    if lr_plot_path is not None:
        plots = {"learning_rates": lr_plot_path, **plots}
    sections = [
        ("Which method fits which GPU", decision if not decision.empty else None, decision_note),
        ("Answer", None, _answer(variants)),
        ("Learning rates: each method at its own, chosen on validation data", *lr_section(selection, scored, searches)),
        ("Quality, example by example: paired gaps", *_paired_section(quality, tuned=selection.tuned)),
        *([("Does the gap survive more training?", *longer)] if longer else []),
        *([("LoRA variants against plain LoRA", *lora_variants)] if lora_variants else []),
        ("Learning curves: had the methods stopped improving?", *curve_table(records)),
        ("Conditions", cond, None),
        (
            "Runs",
            runs_table(runs),
            "One row per run. Peak memory: NVML per process on a GPU, RSS on a CPU; "
            "forgetting: loss on general text after minus before training." + missing_note,
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

    summary = first_screen(plain_methods(variants), quality, selection, decision)
    figure = plots.get("pareto")
    md = [f"# {title}", "", GENERATED, ""]
    for note in profile_notes:
        md += [f"> **Profile:** {note}", ""]
    if left_out:
        md += [f"> {left_out}", ""]
    md += ["## Summary", "", summary, ""] + ([f"![pareto]({figure.name})", ""] if figure else [])
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
    h += ["<h2>Summary</h2>", f"<p>{html.escape(summary).replace('**', '')}</p>"]
    if figure:
        h.append(inline_image("pareto", figure))
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


def write_search_report(searches: list[dict], out_dir: Path, *, title: str) -> list[Path]:
    """The report of a learning-rate search alone (no test-scored runs among the records): its table and figure."""
    selection = select_runs([], searches)
    table, text = lr_section(selection, [], searches)
    plot = lr_plot(selection.choices, out_dir)
    md = [f"# {title}", "", GENERATED, "", "## Learning-rate search", "", text, ""]
    h = [*html_head(title), "<h2>Learning-rate search</h2>", f"<p>{html.escape(text).replace('**', '')}</p>"]
    if table is not None:
        md += [table.to_markdown(index=False), ""]
        h.append(table.to_html(index=False, escape=True, border=0))
    if plot is not None:
        md += [f"![learning_rates]({plot.name})", ""]
        h.append(inline_image("learning_rates", plot))
    h.append("</body></html>")
    (out_dir / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    (out_dir / "report.html").write_text("\n".join(h), encoding="utf-8")
    return [out_dir / "report.md", out_dir / "report.html"]
