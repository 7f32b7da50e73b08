"""Run records: one self-describing JSON per run, written atomically, and the table read back from them.

A record has four sections: `config` (the resolved run config), `metrics` (what was measured),
`environment` (versions, hardware, git) and `status` (ok | oom | failed, with the error text). Its file
name is the method label plus a hash of the config that matters, so reruns of one config share a name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from harness.config import RunConfig

log = logging.getLogger(__name__)

# File a sweep job leaves in its Hydra output folder: the path of the record it stands for.
RECORD_POINTER = "record_path.txt"

# Folder in a sweep's folder where a job that met a configuration error only its run could see (a dataset's
# prompts longer than train.max_seq_len, say) leaves the message, a file per job number: the launcher then
# stops the sweep with that one error instead of recording the job, and every later one, as "died".
CONFIG_ERRORS_DIR = ".config_errors"


def config_error_file(sweep_dir: str | Path, job_num: int) -> Path:
    return Path(sweep_dir) / CONFIG_ERRORS_DIR / str(job_num)


# The record format's version, in every record written since 2026-11-26 (those before have none: version 1,
# read as they are). 2: schema_version itself, run.launcher, run.precision_reason.
SCHEMA_VERSION = 2


class Status(StrEnum):
    """A record's status. `running` is never written: a record is written once, when the run has ended."""

    RUNNING = "running"
    OK = "ok"
    OOM = "oom"  # ran out of memory; the peak reached is recorded
    FAILED = "failed"  # raised, or its process died (the launcher writes that record)


# Fields of the config that do not change what a run measures.
NOT_IN_KEY = (
    "results_dir",
    "cache_dir",
    "keep_artifact",
    "force",
    "sweep_name",
    "report_kind",
    "report_dir",
    "profile_name",
    "profile_note",
)


# Fields added after records were written, with the value every earlier run had: left out of the key while they
# hold it, so earlier runs' records keep their keys (resume still finds them) and new values still count.
LATER_FIELDS = {
    ("train", "report_to"): ("none",),
    ("method", "weights_dtype"): (None, "fp32"),
    ("eval", "curve_points"): (0,),
    ("method", "use_dora"): (False,),
    ("method", "use_rslora"): (False,),
    ("method", "init_lora_weights"): ("default",),
    ("method", "loraplus_lr_ratio"): (None,),
    ("eval", "validation_only"): (False,),
}
# Fields never in the key: scoring an adapter merged gives the predictions scoring it unmerged gives (checked
# example by example, eval.check_merged_scoring; the record says which it did, metrics.score.adapter_merged), so
# neither changes what a run measures, and the records before them keep their keys.
NEVER_IN_KEY = (("eval", "merge_for_scoring"), ("eval", "check_merged_scoring"))


def keyed_config(config: dict, *, without: tuple[tuple[str, str | None], ...] = ()) -> dict:
    """A copy of a resolved config (a record's `config`, or dataclasses.asdict of a RunConfig) holding only the
    fields that decide its measurements: NOT_IN_KEY and NEVER_IN_KEY left out, LATER_FIELDS left out while they
    hold their earlier value, and `without` too: (group, None) drops a whole group, (group, field) one field."""
    plain = json.loads(json.dumps(config, default=str))  # a deep copy, as the hash will see it
    for k in NOT_IN_KEY:
        plain.pop(k, None)
    for (group, name), earlier in LATER_FIELDS.items():
        if plain.get(group, {}).get(name) in earlier:
            plain.get(group, {}).pop(name, None)
    for group, name in (*NEVER_IN_KEY, *without):
        if name is None:
            plain.pop(group, None)
        else:
            plain.get(group, {}).pop(name, None)
    return plain


def config_key(config: dict, *, without: tuple[tuple[str, str | None], ...] = ()) -> str:
    """A short hash of keyed_config(config, without=...). A record's key is config_key of its config; a search
    groups runs by a key without their rate and seed."""
    plain = keyed_config(config, without=without)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_key(cfg: RunConfig) -> str:
    """A short hash of the config that decides the run's measurements."""
    return config_key(dataclasses.asdict(cfg))


# What a learning-rate search job shares with a test-scored run of the same training: everything but `eval`.
TRAINING_ONLY = (("eval", None),)


def record_stem(cfg: RunConfig) -> str:
    return f"{cfg.model.name}_{cfg.dataset.name}_{cfg.method.label}_{run_key(cfg)}"


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """Rows as JSON lines, written like write_json_atomic (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, sort_keys=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_examples(path: Path) -> list[dict]:
    """A per-example file (`<record>.examples.jsonl`): one row per test example, as evaluation.example_rows
    wrote it. Raises ValueError on a damaged line."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n} is not JSON ({e})") from None
    return rows


def record_path(cfg: RunConfig) -> Path:
    return Path(cfg.results_dir) / f"{record_stem(cfg)}.json"


def existing_ok_record(cfg: RunConfig) -> dict | None:
    """The record of this exact config if one exists with status ok: a sweep run again skips it.

    A learning-rate search job (eval.validation_only) is also done where a test-scored run of the same training
    (same config but `eval`) has an ok record: that run measured the same validation loss at the end, so the runs
    already committed count as points of the grid at their rate."""
    path = record_path(cfg)
    if not path.exists():
        return same_training_ok_record(cfg) if cfg.eval.validation_only else None
    try:
        record = read_record(path)
    except (OSError, ValueError) as e:
        log.warning("%s is not a readable record (%s): the job runs again and replaces it", path, e)
        return None
    if not is_record(record) or record.get("status") != "ok":
        return None
    record["run"]["record_path"] = str(path)
    return record


def same_training_ok_record(cfg: RunConfig) -> dict | None:
    """An ok record under cfg.results_dir that trained exactly as cfg does and measured the validation loss at its
    end (any `eval` settings), or None."""
    wanted = config_key(dataclasses.asdict(cfg), without=TRAINING_ONLY)
    for record in load_records(cfg.results_dir, quiet=True):
        if (
            record.get("status") == "ok"
            and record.get("metrics", {}).get("eval_loss") is not None
            and config_key(record["config"], without=TRAINING_ONLY) == wanted
        ):
            record["run"]["record_path"] = record["_path"]
            return record
    return None


def new_record(cfg: RunConfig, *, started_at: str, environment: dict, **run: object) -> dict:
    """The one record skeleton, for the run (train.py) and for a job whose process died (the launcher)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": record_stem(cfg),
            "key": run_key(cfg),
            "method_label": cfg.method.label,
            "started_at": started_at,
            **run,
        },
        "config": dataclasses.asdict(cfg),
        "metrics": {},
        "environment": environment,
        "status": Status.RUNNING,
        "error": None,
    }


def write_process_failure(cfg: RunConfig, error: str, environment: dict) -> Path:
    """A record for a job whose process died before it could write its own (kill, segfault, host OOM); the caller
    collects `environment` (env.collect: this module stays below env and config, which reads records)."""
    now = datetime.now(UTC).isoformat()
    record = new_record(cfg, started_at=now, environment=environment)
    record["run"]["finished_at"] = now
    record["status"], record["error"] = Status.FAILED, error
    path = record_path(cfg)
    write_json_atomic(path, record)
    return path


def read_record(path: str | Path) -> dict:
    """One record, with `_path` set to where it was read from (the report finds its step log through it)."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(record, dict):
        record["_path"] = str(path)
    return record


def is_record(obj: object) -> bool:
    """A run record as this harness writes it (any schema version), not another JSON file."""
    return isinstance(obj, dict) and isinstance(obj.get("run"), dict) and "status" in obj and "config" in obj


def load_records(results_dir: str | Path, *, recursive: bool = False, quiet: bool = False) -> list[dict]:
    """Every finished record under results_dir (temporary and step-log files are skipped); `recursive` also
    reads its sub-folders (results/<model>/<dataset>/...).

    A file that is not a readable record (truncated by a crash, another tool's JSON) is skipped with one
    warning naming it (none when `quiet`), so one damaged file does not stop a report or `budget`."""
    pattern = "**/*.json" if recursive else "*.json"
    records = []
    for path in sorted(Path(results_dir).glob(pattern)):
        try:
            record = read_record(path)
        except (OSError, ValueError) as e:
            if not quiet:
                log.warning("skipping %s: not a readable run record (%s)", path, e)
            continue
        if not is_record(record):
            if not quiet:
                log.warning("skipping %s: a JSON file but not a run record (no run, config and status)", path)
            continue
        records.append(record)
    return records


TABLE_COLUMNS = {
    "method": "method",
    "status": "status",
    "peak_mem_mib": "peak mem MiB",
    "mem_source": "mem source",
    "tokens_per_s": "tokens/s",
    "train_s": "train s",
    "eval_loss": "eval loss",
    "base_score": "base score",
    "task_score": "task score",
    "field_acc": "field acc",
    "trainable_pct": "trainable %",
    "artifact_mib": "adapter/ckpt MiB",
}


def peak_memory(record: dict) -> tuple[float | None, str]:
    """The one peak that answers "does it fit", in MiB, and where it comes from.

    On a GPU: NVML's figure for the process (its tensors, the allocator's cache and the CUDA context: what the
    driver sees it hold, and what another process could not use). Every table, the memory model's calibration
    and `budget` use this; the other readings stay beside it as columns. A GPU record without NVML (no driver
    library) falls back to torch's reserved peak, labelled, since it leaves out the CUDA context; a CPU record
    has the kernel's peak RSS."""
    mem = (record.get("metrics") or {}).get("memory") or {}
    if mem.get("peak_nvml_process_mib"):
        return float(mem["peak_nvml_process_mib"]), "nvml process"
    if mem.get("peak_torch_reserved_mib"):
        return float(mem["peak_torch_reserved_mib"]), "torch reserved (no NVML reading: without the CUDA context)"
    if mem.get("peak_rss_mib"):
        return float(mem["peak_rss_mib"]), "cpu rss"
    return None, "not measured"


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run with the headline figures; peak memory by `peak_memory`."""
    rows = []
    for r in records:
        m = r.get("metrics", {})
        peak, source = peak_memory(r)
        score = m.get("score", {})
        base = m.get("base_score", {})
        rows.append(
            {
                "method": r["run"]["method_label"],
                "status": r["status"],
                "peak_mem_mib": peak,
                "mem_source": source.split(" (")[0],
                "tokens_per_s": m.get("tokens_per_s"),
                "train_s": m.get("train_seconds"),
                "eval_loss": m.get("eval_loss"),
                "base_score": base.get("exact_match"),
                "task_score": score.get("exact_match"),
                "field_acc": score.get("field_accuracy"),
                "trainable_pct": m.get("params", {}).get("trainable_pct"),
                "artifact_mib": (m.get("artifact_bytes") or 0) / 2**20 if m.get("artifact_bytes") else None,
                "finished_at": r.get("run", {}).get("finished_at"),
            }
        )
    return pd.DataFrame(rows)


def summary_table(records: list[dict]) -> str:
    """The comparison table as markdown, one row per run, newest last."""
    frame = records_frame(records)
    if frame.empty:
        return "(no run records)"
    frame = frame.sort_values("finished_at").drop(columns="finished_at")
    return frame.rename(columns=TABLE_COLUMNS).to_markdown(index=False, floatfmt=".4g")
