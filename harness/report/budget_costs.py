"""What the sweeps' records say each method costs, for `budget`'s answer: its score gap to full FT (from tuned,
paired runs where there are such) and gradient checkpointing's cost in speed.

Why apart from the command: these read records (frames, the learning-rate selection, the paired comparisons);
the rest of `budget` reads a model's shapes and the memory model.
"""

from __future__ import annotations

import json

import pandas as pd

from harness.config import adapter_variant_of


def quality_costs(records: list[dict], model_name: str) -> tuple[dict[str, tuple[float, float]], str]:
    """Score gap to full FT in points (exact match x 100) per method family, with two standard errors, from
    full-profile sweep records; and a note saying where it comes from.

    The queried model's records are used when they hold full FT and the method; else the largest sweep found,
    named as another model's. Records of a reduced (smoke) profile are never a measured quality: a few steps
    and a handful of test examples say nothing about what a method costs."""
    from harness.report.frames import runs_frame, score_se
    from harness.report.lr_report import select_runs

    scored = [r for r in records if r.get("status") == "ok" and r.get("metrics", {}).get("score")]
    ok = [r for r in scored if r.get("config", {}).get("profile_name", "full") == "full"]
    # each method at its chosen learning rate where a search chose one (lr_report.py); else said in the note
    selection = select_runs(ok, records)
    ok = selection.compared
    rates = (
        "each method at its own learning rate, chosen on validation data"
        if selection.tuned
        else "learning rates NOT tuned (each method at its config's rate: the gap measures the rates as much as "
        "the methods)"
    )
    if not ok:
        if scored:
            profiles = sorted({r["config"].get("profile_name") for r in scored})
            return {}, f"not measured: the evaluated records are of a reduced profile ({', '.join(profiles)})"
        return {}, "no evaluated records in the results folder"
    runs = runs_frame(ok)
    runs["model"] = [r["config"]["model"]["name"] for r in ok]
    runs["family"] = [_family(r["config"]["method"]) for r in ok]
    candidates = [model_name] + [m for m in runs["model"].value_counts().index if m != model_name]
    for name in candidates:
        sub = runs[runs["model"] == name]
        if "full" not in set(sub["family"]):
            continue
        whose = "the queried model" if name == model_name else f"NOT the queried model ({model_name})"
        paired = _paired_quality_costs([r for r in ok if r["config"]["model"]["name"] == name], sub)
        if paired is not None:
            gaps, how = paired
            return gaps, f"measured on {name}, {whose}: {how}; {rates}"
        metric = "score" if sub["score"].fillna(0).max() > 0 else "field_acc"
        groups = sub.groupby("family")
        means, counts = groups[metric].mean(), groups["n_test"].sum()
        # binomial standard error over all test examples of the family's runs (seeds pooled)
        se = {fam: score_se(means[fam], counts[fam]) for fam in means.index}
        gaps = {
            fam: (float(means["full"] - v) * 100, 2 * 100 * (se["full"] ** 2 + se[fam] ** 2) ** 0.5)
            for fam, v in means.items()
        }
        what = "exact match" if metric == "score" else "field accuracy (exact match 0 everywhere)"
        return gaps, (
            f"measured on {name}, {whose}: {len(sub)} full-profile runs, points of {what} below full FT, ± two "
            f"standard errors, unpaired (the records have no per-example results); {rates}"
        )
    return {}, "no full-profile sweep with full FT in the results folder"


def _paired_quality_costs(records: list[dict], runs: pd.DataFrame) -> tuple[dict, str] | None:
    """Points of exact match below full FT per family, paired over the same test examples (and seeds), with the
    95 % interval (harness/report/comparisons.py); a family stands for its variant with the most seeds (LoRA: r16 where
    it ties). None where the records have no per-example results to pair."""
    from harness.report.comparisons import quality_evidence
    from harness.report.frames import variants_frame

    variants = variants_frame(runs)
    quality = quality_evidence(records, variants)
    if quality.table.empty:
        return None
    below = quality.table[(quality.table["comparison"] == "below full FT") & (quality.table["metric"] == "exact match")]
    family_of = dict(zip(runs["label"], runs["family"], strict=True))
    variants = variants.assign(family=variants["label"].map(family_of), r16=variants["r"] == 16)
    gaps, used = {"full": (0.0, 0.0)}, []
    for family, group in variants[variants["family"] != "full"].groupby("family"):
        for _, v in group.sort_values(["n_seeds", "r16"], ascending=False).iterrows():
            row = below[below["b"] == v["label"]]
            if not row.empty:
                gaps[family] = (float(row["gap"].iloc[0]) * 100, float(row["half_width"].iloc[0]) * 100)
                used.append(f"{family}: {v['label']}, seeds {row['seeds'].iloc[0]}")
                break
    if len(gaps) == 1:
        return None
    n = int(below["n"].max())
    return gaps, (
        f"points of exact match below full FT, paired over the same {n} test examples, ± its 95 % interval; "
        f"{quality.budget_text(list(variants['label']))} ({'; '.join(used)})"
    )


def _family(method_cfg: dict) -> str:
    """The budget table's method family of a record's method config (full, lora, qlora-nf4, qlora-fp4-dq...)."""
    if method_cfg["name"] == "full":
        return "full-bf16" if method_cfg.get("weights_dtype") == "bf16" else "full"
    variant = adapter_variant_of(method_cfg)
    if method_cfg["name"] != "qlora":
        return variant or method_cfg["name"]  # a variant is a family of its own, never "lora"
    kind = f"q{variant}" if variant else "qlora"
    return f"{kind}-{method_cfg.get('quant_type') or 'nf4'}{'-dq' if method_cfg.get('double_quant') else ''}"


def checkpointing_speed_costs(records: list[dict], model_name: str) -> dict[str, tuple[float, str]]:
    """Per method family, what gradient checkpointing did to tokens/s where the records hold a pair of runs
    that differ in nothing else (the speed ablation's baseline and baseline+checkpointing): (ratio, where).

    Why: "turn checkpointing on" is the budget's first suggestion when nothing fits; its price is speed, which
    only a measured pair can state. A pair of the queried model is preferred, then the most recent."""
    from harness.results import NOT_IN_KEY

    def key(record: dict) -> str:
        cfg = {k: v for k, v in record["config"].items() if k not in (*NOT_IN_KEY, "recipe_name")}
        cfg["train"] = {k: v for k, v in cfg["train"].items() if k != "gradient_checkpointing"}
        device = [(record.get("environment") or {}).get(k) for k in ("gpu_name", "cpu")]
        return json.dumps([cfg, device], sort_keys=True, default=str)

    ok = [r for r in records if r.get("status") == "ok" and (r.get("metrics") or {}).get("tokens_per_s")]
    pairs: dict[str, dict[bool, dict]] = {}
    for r in ok:
        pairs.setdefault(key(r), {})[bool(r["config"]["train"]["gradient_checkpointing"])] = r
    found: dict[str, tuple[tuple[bool, str], float, str]] = {}
    for pair in pairs.values():
        if True not in pair or False not in pair:
            continue
        on, off = pair[True], pair[False]
        env, model = on.get("environment") or {}, on["config"]["model"]["name"]
        rank = (model == model_name, on.get("run", {}).get("finished_at") or "")
        where = f"{model} on {env.get('gpu_name') or env.get('cpu') or 'an unnamed device'}"
        family = _family(on["config"]["method"])
        if family not in found or rank > found[family][0]:
            found[family] = (rank, on["metrics"]["tokens_per_s"] / off["metrics"]["tokens_per_s"], where)
    return {family: (ratio, where) for family, (_, ratio, where) in found.items()}
