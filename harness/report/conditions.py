"""The conditions of a comparison: which records may be compared (the same training conditions, the method
and learning rate aside), and the conditions a report states, one row each.

Why a module of its own: every report section compares runs, and each needs the same answer to "were these run
alike?"; the trade-off report states the answer once, at its top.
"""

from __future__ import annotations

import json

import pandas as pd

from harness.results import keyed_config


# Long on purpose: one row per condition the report states, as a list a reader can scan.
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
            values(_device_text),
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


def _device_text(record: dict) -> str:
    """The GPU, or the CPU with its cores and (in records that keep them) its native bf16 flags: two CPUs of one
    model name can differ in those, and with them in speed."""
    e = record.get("environment") or {}
    if e.get("gpu_name"):
        return e["gpu_name"]
    flags = ""
    if "cpu_native_bf16" in e:
        flags = f", native bf16: {' '.join(e['cpu_native_bf16']) or 'none'}"
    return f"CPU: {e.get('cpu')} ({e.get('cpu_count')} cores{flags})"


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
    """The config a comparison must hold fixed: the fields of the run key (results.keyed_config: a field added
    after a record was written counts only where it moves from the value earlier runs had; merged or unmerged
    scoring never counts), and the profile's name, but not the method, the seed or the rate."""
    config = record.get("config", {})
    flat = _flatten({k: v for k, v in keyed_config(config).items() if k != "method"})
    if "profile_name" in config:  # a reduced profile's records are never compared with full ones
        flat["profile_name"] = json.dumps(config["profile_name"], sort_keys=True, default=str)
    flat.pop("train.seed", None)
    # each method's rate is its own (chosen by a search, lr_report.py), so the rate is no condition either
    flat.pop("train.learning_rate_scale", None)
    return flat


def training_conditions(record: dict) -> dict:
    """condition_key without the scoring settings: what a search job shares with the test-scored runs."""
    return {k: v for k, v in condition_key(record).items() if not k.startswith("eval.")}


def split_by_conditions(records: list[dict]) -> tuple[list[dict], str]:
    """The records of the conditions most records share (of equals, the newest record's), and a note on those
    left out. Why most, not newest: a folder's few runs at another budget (a longer-training check, a trial at
    other steps) must not displace the sweep they are checked against; they are compared in their own section."""
    if not records:
        return records, ""
    conditions_of = [condition_key(r) for r in records]
    keys = [json.dumps(c, sort_keys=True, default=str) for c in conditions_of]
    count = {k: keys.count(k) for k in keys}
    finished = [r.get("run", {}).get("finished_at") or "" for r in records]
    chosen = max(range(len(records)), key=lambda i: (count[keys[i]], finished[i]))
    key = conditions_of[chosen]
    kept = [r for r, k in zip(records, keys, strict=True) if k == keys[chosen]]
    others = [c for c, k in zip(conditions_of, keys, strict=True) if k != keys[chosen]]
    if not others:
        return kept, ""
    differing = sorted({k for c in others for k, v in c.items() if key.get(k) != v})
    note = (
        f"{len(others)} record(s) in this folder ran under other conditions and are not compared here "
        f"(they differ in: {', '.join(differing[:8])}{' ...' if len(differing) > 8 else ''})."
    )
    return kept, note
