"""The folders a run writes outside its results (the adapter or checkpoint saved once to measure its size),
named with the process id so that a later run can remove those of a process that died (kill -9 leaves them).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from harness.config import RunConfig

log = logging.getLogger(__name__)


SCRATCH_PREFIX = "ft-harness-"


def scratch_dir(kind: str) -> Path:
    """A scratch folder in the temp directory named with this process's id, so a later run can tell whether
    the process that made it is still alive (remove_dead_scratch)."""
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-{kind}-"))


def remove_dead_scratch() -> list[Path]:
    """Remove the scratch folders whose process is gone: a run killed with kill -9 cannot clean up after
    itself (a stopped one does), so the next run does. Folders of live processes, and of other names, stay."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*-*"):
        pid = path.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive (or someone else's: not ours to remove)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d scratch folder(s) of runs that died: %s", len(removed), ", ".join(map(str, removed)))
    return removed


def _dir_bytes(path: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def artifact_bytes(torch_model: torch.nn.Module, cfg: RunConfig, stem: str) -> tuple[int, str | None]:
    """Save the adapter (or full checkpoint) once to measure its size; keep it only if asked."""
    keep_dir = Path(cfg.results_dir) / "artifacts" / stem
    target = keep_dir if cfg.keep_artifact else scratch_dir("artifact")
    try:
        torch_model.save_pretrained(target)
        size = _dir_bytes(target, "*.safetensors") + _dir_bytes(target, "*.bin")
    finally:
        if not cfg.keep_artifact:
            shutil.rmtree(target, ignore_errors=True)
    return size, str(keep_dir) if cfg.keep_artifact else None
