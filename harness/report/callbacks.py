"""Hydra callbacks: at the end of a sweep, print its table and write its report.

The sweep's records are found through the pointer file each job leaves in its output folder (the record
it wrote, or the ok record it reused when resuming), so this works with any launcher, SLURM included.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.results import RECORD_POINTER, read_record, summary_table

log = logging.getLogger("harness.sweep")


def sweep_records(sweep_dir: str | Path) -> list[dict]:
    records, seen = [], set()
    for pointer in sorted(Path(sweep_dir).rglob(RECORD_POINTER)):
        path = Path(pointer.read_text().strip())
        if path in seen or not path.exists():
            continue
        seen.add(path)
        records.append(read_record(path))
    return records


class PrintSweepTable(Callback):
    """Prints one row per run of the sweep and writes the sweep's report (report.md, report.html)."""

    def __init__(self, write_report: bool = True) -> None:
        self.write_report = write_report

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        records = sweep_records(config.hydra.sweep.dir)
        print(f"\n{len(records)} run(s) of this sweep, records in {config.results_dir}:\n")
        print(summary_table(records))
        if self.write_report and records:
            from harness.report.command import write_report

            out_dir = Path(config.report_dir)
            paths = write_report(
                records, out_dir, title=f"{config.sweep_name}: {config.model.name} on {config.dataset.name}"
            )
            log.info("report: %s", ", ".join(str(p) for p in paths))
