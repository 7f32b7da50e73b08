"""Hydra callbacks: at the end of a multirun, print the comparison table of the sweep's records."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.results import load_records, summary_table


class PrintSweepTable(Callback):
    """Reads every record the sweep's jobs wrote and prints one row per run."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        records = load_records(config.results_dir)
        print(f"\n{len(records)} run record(s) in {config.results_dir}:\n")
        print(summary_table(records))
