"""Entry point: `python -m harness [overrides]` runs one configuration; `-m` or `+sweeps=NAME` sweeps.

Thin on purpose: compose (Hydra) -> check (config.py) -> skip if done -> run (train.py) -> print the row.
`python -m harness report RESULTS_DIR` (re)writes a report from records alone (report.py);
`python -m harness budget --gpu-memory 24GB --model llama-3-8b` says which methods fit a GPU (budget.py).
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness import startup
from harness.config import ConfigError
from harness.results import (
    RECORD_POINTER,
    config_error_file,
    existing_ok_record,
    summary_table,
    write_json_atomic,
)
from harness.run.checks import load_run_config

log = logging.getLogger("harness")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def run_job(cfg: DictConfig) -> None:
    startup.mark("job_entered")
    # Ctrl-C and a launcher's cancel (SIGINT) must stop the run even where SIGINT came in ignored (a sweep started
    # from a background shell passes that on to its job processes, which then trained on after a cancel).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from harness.run.train import run  # late: keeps `--help` and config errors fast

    startup.mark("libraries_imported")

    try:
        run_cfg = load_run_config(cfg)
        record = None if run_cfg.force else existing_ok_record(run_cfg)
        if record is not None:
            log.info(
                "a record of this config exists with status ok, skipping (force=true reruns): %s",
                record["run"]["record_path"],
            )
        else:
            record = run(run_cfg)
    except ConfigError as e:
        # One clear line, no traceback, no record; in a sweep the launcher finds the message and stops the sweep
        # with it (the jobs after this one would most likely meet it too)
        log.error("configuration error: %s", e)
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            write_json_atomic(config_error_file(hydra_cfg.sweep.dir, hydra_cfg.job.num), {"error": str(e)})
        sys.exit(2)
    # Tells the end-of-sweep callback which record this job stands for (written or reused).
    Path(HydraConfig.get().runtime.output_dir, RECORD_POINTER).write_text(record["run"]["record_path"])
    print(summary_table([record]))
    if record["status"] != "ok":
        log.error("run %s: %s", record["status"], (record["error"] or "").splitlines()[0])
        # In a sweep the other jobs go on; a single run reports the failure in its exit code.
        if HydraConfig.get().mode == RunMode.RUN:
            sys.exit(1)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        from harness.report.command import main as report_main

        sys.exit(report_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "budget":
        from harness.report.budget import main as budget_main

        sys.exit(budget_main(sys.argv[2:]))
    run_job()


if __name__ == "__main__":
    main()
