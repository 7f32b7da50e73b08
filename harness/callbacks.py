"""Hydra callbacks: at the end of a multirun, print the comparison table of the sweep's records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.results import load_records, summary_table


class PrintSweepTable(Callback):
    """Reads the records this sweep's jobs wrote (started after the sweep did) and prints one row per run."""

    def __init__(self) -> None:
        self.started_at = ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started_at = datetime.now(UTC).isoformat()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        records = [r for r in load_records(config.results_dir) if r["run"]["started_at"] >= self.started_at]
        print(f"\n{len(records)} run(s) of this sweep, records in {config.results_dir}:\n")
        print(summary_table(records))
