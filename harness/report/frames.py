"""Records turned into frames: one row per run with every figure a report or `budget` uses, runs of one method
averaged over seeds, and where each job's time went.

Why one module: every report kind, `budget` and the claims read the same flattened figures (one peak rule,
results.peak_memory), so they live below all of them and import nothing of theirs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from harness.config import adapter_variant_of
from harness.results import peak_memory
from harness.startup import STARTUP_PARTS


def _steps_log(record: dict) -> Path | None:
    """The record's steps log beside it, where it names one that exists."""
    name = record.get("run", {}).get("steps_log")
    path = Path(record["_path"]).parent / name if name and "_path" in record else None
    return path if path is not None and path.exists() else None


def _steps_losses(record: dict) -> list[float]:
    path = _steps_log(record)
    if path is None:
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["loss"] for r in rows if r.get("loss") is not None]


# What a report reads of a record beyond its config, and how to tell it is there: (what, present?).
RECORD_PARTS: tuple[tuple[str, Callable[[dict], bool]], ...] = (
    ("scores", lambda r: bool(r.get("metrics", {}).get("score"))),
    ("generation latency", lambda r: bool(r.get("metrics", {}).get("inference"))),
    ("forgetting", lambda r: bool(r.get("metrics", {}).get("forgetting"))),
    ("steps log", lambda r: _steps_log(r) is not None),
)


def missing_parts(records: list[dict]) -> list[str]:
    """Per part a report reads, the ok runs whose records lack it, and the records of an older schema version:
    what the tables show as '-' and why, so an absent figure is never read as a zero or an oversight."""
    from harness.results import SCHEMA_VERSION

    def label(r: dict) -> str:
        seed = r.get("config", {}).get("train", {}).get("seed", "?")
        return f"{r.get('run', {}).get('method_label', '?')} (seed {seed})"

    ok = [r for r in records if r.get("status") == "ok"]
    lines = []
    for part, present in RECORD_PARTS:
        lacking = [label(r) for r in ok if not present(r)]
        if lacking and len(lacking) < len(ok):
            lines.append(f"no {part} in the records of {', '.join(lacking)}")
        elif lacking:
            lines.append(f"no {part} in any record")
    older = sorted({int(r.get("schema_version") or 1) for r in records} - {SCHEMA_VERSION})
    for version in older:
        which = [label(r) for r in records if int(r.get("schema_version") or 1) == version]
        lines.append(f"record format version {version} (this harness writes {SCHEMA_VERSION}): {', '.join(which)}")
    return lines


def _target_modules(record: dict) -> str:
    """The adapted layers as a comma list, or "all-linear"; as the run resolved them where it says."""
    run, method = record.get("run", {}), record.get("config", {}).get("method", {})
    names = run.get("target_modules") or method.get("target_modules")
    return ",".join(names) if isinstance(names, list) else (names or "")


# Long on purpose: one dict literal, a column per figure the reports read.
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
                "weights_dtype": method.get("weights_dtype") or "fp32",
                "r": method.get("r"),
                "quant_type": method.get("quant_type"),
                "double_quant": method.get("double_quant"),
                # "" for full FT, LoRA and QLoRA as such; dora, rslora, pissa, olora, loraplus... (records before
                # the variants have none of these fields: "")
                "adapter_variant": adapter_variant_of(method),
                "target_modules": _target_modules(r),
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
                # after the first step (its one-off warm-up left out); older records: None
                "steady_tokens_per_s": m.get("tokens_per_s_after_first_step"),
                # the machine a timing belongs to: the GPU's name, else the CPU's
                "machine": (r.get("environment") or {}).get("gpu_name") or (r.get("environment") or {}).get("cpu"),
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
                "build_s": m.get("build_seconds"),  # building the base model; older records: None
                "curve_s": m.get("validation_curve_seconds"),  # the learning curve's passes; older records: None
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


# higher is faster: the columns variants_frame takes the fastest seed of
THROUGHPUT_COLUMNS = ("tokens_per_s", "steady_tokens_per_s", "mfu")


def variants_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Ok runs of one method label averaged over seeds (mean, std of the score, number of seeds), except throughput:
    there the fastest seed counts. Anything else the machine ran at the same time only slows a run (a CPU job beside
    a test suite ran at a third of its speed), so the fastest of several runs is the method's own speed, as timeit
    takes the least time of its repeats, while a mean would carry the slow seed's neighbour into the method."""
    ok = runs[runs["status"] == "ok"]
    if "adapter_variant" not in ok:  # a frame not built by runs_frame: plain methods
        ok = ok.assign(adapter_variant="")
    if ok.empty:
        return ok.assign(n_seeds=[], score_std=[])
    numeric = [c for c in ok.columns if ok[c].dtype.kind in "fi" and c not in ("seed",)]
    first = ok.groupby("label", sort=False).first()
    means = ok.groupby("label", sort=False)[numeric].mean()
    fastest = [c for c in THROUGHPUT_COLUMNS if c in numeric]
    means[fastest] = ok.groupby("label", sort=False)[fastest].max()
    out = first.drop(columns=numeric).join(means)
    out["n_seeds"] = ok.groupby("label", sort=False).size()
    out["score_std"] = ok.groupby("label", sort=False)["score"].std()
    order = {"full": 0, "lora": 2, "qlora": 4}  # each method's LoRA variants right after it
    out = out.reset_index()
    out["_order"] = out["method"].map(order) + (out["adapter_variant"] != "")
    return out.sort_values(["_order", "adapter_variant", "quant_type", "double_quant", "r"], na_position="first").drop(
        columns="_order"
    )


def plain_methods(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of full FT, LoRA and QLoRA as such (runs_frame or variants_frame), without LoRA's variants (DoRA,
    rsLoRA, PiSSA, ...): what the documents' claims, the plots and the budget families speak of, so a DoRA run
    never counts as "LoRA at its rank"."""
    if frame.empty or "adapter_variant" not in frame:
        return frame
    return frame[frame["adapter_variant"].fillna("") == ""]


def time_table(runs: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """Where each job's time went: training against everything else (process start and imports, loading,
    base-model evaluation, scoring, saving). MFU counts only training, so the rest is the sweep's overhead."""
    rows = runs[runs["process_s"].notna()] if "process_s" in runs else runs.iloc[0:0]
    if rows.empty:
        return None, "The records carry no process time (written before it was recorded)."
    train, evaluation, base = (rows[c].fillna(0) for c in ("train_s", "eval_s", "base_eval_s"))
    probes = rows["probe_s"] if "probe_s" in rows else pd.Series(None, index=rows.index, dtype=float)
    build = rows["build_s"] if "build_s" in rows else pd.Series(None, index=rows.index, dtype=float)
    curve = rows["curve_s"] if "curve_s" in rows else pd.Series(None, index=rows.index, dtype=float)
    table = pd.DataFrame(
        {
            "method": rows["label"],
            "job process s": rows["process_s"].round(1),
            # before run() starts: interpreter, imports (torch, transformers, peft, bitsandbytes), Hydra
            "start and imports s": (rows["process_s"] - rows["total_s"]).round(1),
            # drawing or reading the base model's weights, quantising them (older records count it in data etc.)
            "model build s": build.astype(float).round(1),
            "base model checks s": base.round(1),
            "training s": rows["train_s"].round(1),
            # validation loss and the test set's generation; older records count their probes in here too
            "scoring s": (evaluation - probes.fillna(0)).round(1),
            "latency and forgetting probes s": probes.astype(float).round(1),
            "learning curve s": curve.astype(float).round(1),
            "data, loading, saving s": (
                rows["total_s"] - train - evaluation - base - build.fillna(0) - curve.fillna(0)
            ).round(1),
            "training share %": (100 * rows["train_s"] / rows["process_s"]).round(1),
        }
    )
    for column in ("model build s", "learning curve s"):  # records from before it was timed: no column of blanks
        if table[column].isna().all():
            table = table.drop(columns=column)
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


def score_se(score: float, n_test: int, n_seeds: int = 1, std: float | None = None) -> float:
    """Standard error of a mean exact match: across seeds when there are several, else binomial over the test
    examples (at least one example's worth, so 0 or 1 is never exact)."""
    if n_seeds > 1 and std is not None and not math.isnan(std):
        return std / math.sqrt(n_seeds)
    n = max(int(n_test or 0), 1)
    return math.sqrt(max(score * (1 - score), 1 / n) / n)


def variant_se(row: pd.Series, metric: str = "score") -> float:
    """score_se of a variant row (variants_frame): across seeds for exact match where there are several, else
    binomial over the test examples (for field accuracy too: fields of one example are not independent draws)."""
    if row.get(metric) is None or pd.isna(row.get(metric)):
        return float("nan")  # not scored (eval.enabled=false)
    seeds = int(row.get("n_seeds", 1)) if metric == "score" else 1
    return score_se(float(row[metric]), int(row.get("n_test") or 0), seeds, row.get("score_std"))


# ------------------------------------------------------------------ per-example results and paired comparisons

# the per-example scores a comparison can use: 0/1 exact match, and the share of fields right (finer)
EXAMPLE_METRICS = {"exact_match": "exact match", "field_accuracy": "field accuracy"}


def examples_frame(records: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """Every test example's outcome of every ok record that has a per-example file (`run.examples_log`), one row
    each (label, seed, id, prompt hash, phrasing, exact match, field accuracy); and the labels of ok, scored
    records that have none (written before per-example files, or the file is gone or damaged), which the report
    names as missing instead of comparing them unpaired."""
    from harness.results import read_examples

    frames, missing = [], []
    for r in records:
        if r.get("status") != "ok" or not r.get("metrics", {}).get("score"):
            continue
        label, seed = r["run"]["method_label"], r.get("config", {}).get("train", {}).get("seed")
        name = r["run"].get("examples_log")
        path = Path(r["_path"]).parent / name if name and "_path" in r else None
        try:
            rows = read_examples(path) if path else None
        except (OSError, ValueError):
            rows = None
        if not rows:
            missing.append(f"{label} (seed {seed})")
            continue
        frame = pd.DataFrame(rows)
        frame["label"], frame["seed"] = label, seed
        frame["exact_match"] = frame["exact_match"].astype(float)
        if "field_accuracy" not in frame or frame["field_accuracy"].isna().all():
            frame["field_accuracy"] = float("nan")
        frames.append(frame)
    columns = ["label", "seed", "id", "prompt_sha", "unseen_phrasing", *EXAMPLE_METRICS]
    if not frames:
        return pd.DataFrame(columns=columns), missing
    return pd.concat(frames, ignore_index=True)[columns], missing


def paired_gap(examples: pd.DataFrame, a: str, b: str, metric: str = "exact_match"):
    """paired.PairedGap of label a minus label b on the examples both scored (by seed), or None when they share
    none. Raises ValueError where the two runs' examples of one id have different prompts (not the same test
    set: never paired)."""
    from harness.report.paired import paired_gap as gap_of

    sub = examples[examples["label"].isin([a, b])]
    if sub[metric].isna().all():
        return None
    tables = {}
    for label in (a, b):
        rows = sub[sub["label"] == label]
        if rows.empty:
            return None
        tables[label] = rows.pivot_table(index="id", columns="seed", values=metric, aggfunc="first")
        hashes = rows.drop_duplicates("id").set_index("id")["prompt_sha"]
        tables[f"{label} sha"] = hashes
    ids = tables[a].index.intersection(tables[b].index)
    ids = ids[tables[a].loc[ids].notna().all(axis=1) & tables[b].loc[ids].notna().all(axis=1)]
    if len(ids) < 2:
        return None
    differ = ids[(tables[f"{a} sha"].loc[ids] != tables[f"{b} sha"].loc[ids]).to_numpy()]
    if len(differ):
        raise ValueError(
            f"{a} and {b}: test examples {list(differ[:5])} have different prompts in their per-example files "
            "(not the same test set), so they cannot be paired"
        )
    return gap_of(
        {int(s): tables[a].loc[ids, s].to_numpy(float) for s in tables[a].columns},
        {int(s): tables[b].loc[ids, s].to_numpy(float) for s in tables[b].columns},
    )


def learning_curves(records: list[dict]) -> pd.DataFrame:
    """Validation loss at the learning curve's steps (`metrics.validation_curve`), one row per ok record that
    has one, and the relative drop over its last interval: what says whether a method had stopped improving at
    its training budget."""
    rows = []
    for r in records:
        curve = r.get("metrics", {}).get("validation_curve")
        if r.get("status") != "ok" or not curve or len(curve) < 2:
            continue
        last, before = curve[-1], curve[-2]
        rows.append(
            {
                "label": r["run"]["method_label"],
                "seed": r.get("config", {}).get("train", {}).get("seed"),
                "steps": int(last["step"]),
                "curve": {int(p["step"]): p["eval_loss"] for p in curve},
                "last_drop_pct": 100 * (before["eval_loss"] - last["eval_loss"]) / before["eval_loss"],
                "last_interval": (int(before["step"]), int(last["step"])),
            }
        )
    return pd.DataFrame(rows)
