"""Entry point: `python -m harness [overrides]` runs one configuration; `-m` sweeps with Hydra multirun.

Thin on purpose: compose (Hydra) -> check (config.py) -> run (train.py) -> print the record's row.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness.config import ConfigError, load_run_config
from harness.results import summary_table
from harness.train import run

log = logging.getLogger("harness")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run_cfg = load_run_config(cfg)
        record = run(run_cfg)
    except ConfigError as e:
        # One clear line, no traceback, no record; in a sweep this stops the sweep (every job would fail).
        log.error("configuration error: %s", e)
        sys.exit(2)
    print(summary_table([record]))
    if record["status"] != "ok":
        log.error("run %s: %s", record["status"], (record["error"] or "").splitlines()[0])
        # In a sweep the other jobs go on; a single run reports the failure in its exit code.
        if HydraConfig.get().mode == RunMode.RUN:
            sys.exit(1)


if __name__ == "__main__":
    main()
