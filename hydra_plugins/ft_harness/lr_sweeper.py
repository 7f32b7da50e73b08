"""`hydra/sweeper=lr_search`: Hydra's basic sweeper, plus the rates a learning-rate search still needs.

It runs the declared grid as the basic sweeper does (every job through the sweep's launcher, finished jobs skipped
on resume); then, for each search group (harness/lr_choice.py) whose best rate sits at an edge of its grid, or
whose neighbours of the best are more than 2x away, it launches the missing rates as more jobs of the same sweep
(the edge job's overrides with its train.learning_rate_scale changed), reads the records again, and repeats, at
most `max_extensions` times. A sweep run again therefore resumes where an earlier one stopped, extensions
included: the choice is read from the records, never kept in the sweeper.
"""

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override

log = logging.getLogger("harness.sweep")

SCALE = "train.learning_rate_scale"


@dataclass
class LearningRateSearchSweeperConf:
    _target_: str = "hydra_plugins.ft_harness.lr_sweeper.LearningRateSearchSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    # rounds of added rates after the declared grid (each round adds at most two rates per group)
    max_extensions: int = 4


ConfigStore.instance().store(
    group="hydra/sweeper", name="lr_search", node=LearningRateSearchSweeperConf, provider="ft-harness"
)


def with_scale(overrides: Sequence[str], scale: float) -> list[str]:
    """A job's overrides with its learning-rate scale set to `scale` (added where the job had none)."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != SCALE]
    return [*kept, f"{SCALE}={scale:.6g}"]


class LearningRateSearchSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        max_extensions: int = 4,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.max_extensions = max_extensions
        self.jobs: list[list[str]] = []

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        # the rate axis outermost: the grid runs every method at one rate before the next rate, so a search
        # stopped early has a few rates of every method rather than all rates of one
        ordered = sorted(overrides, key=lambda o: o.get_key_element() != SCALE)
        batches = BasicSweeper.split_arguments(ordered, max_batch_size)
        self.jobs = [list(job) for batch in batches for job in batch]
        return batches

    def sweep(self, arguments: list[str]) -> Any:
        returns = super().sweep(arguments)
        job_idx = sum(len(batch) for batch in returns)
        tried: set[tuple[str, str]] = set()
        for _ in range(self.max_extensions):
            extra = [job for job in self._missing_rates() if (job[0], job[1][-1]) not in tried]
            if not extra:
                break
            tried.update((group, overrides[-1]) for group, overrides in extra)
            batch = [overrides for _, overrides in extra]
            log.info(
                "[lr search] %d rate(s) added where a best rate was at its grid's edge or its neighbours too far: %s",
                len(batch),
                "; ".join(" ".join(job) for job in batch),
            )
            assert self.launcher is not None
            returns.append(self.launcher.launch(batch, initial_job_idx=job_idx))
            job_idx += len(batch)
        return returns

    def _missing_rates(self) -> list[tuple[str, list[str]]]:
        """(group, overrides) of each rate a search group still needs, from the records written so far."""
        from harness.config import load_run_config
        from harness.lr_choice import choice_for, search_group

        assert self.hydra_context is not None and self.config is not None
        first_job_of: dict[str, tuple[list[str], Any]] = {}
        for overrides in self.jobs:
            run_cfg = load_run_config(self.hydra_context.config_loader.load_sweep_config(self.config, overrides))
            first_job_of.setdefault(search_group(asdict(run_cfg)), (overrides, run_cfg))
        missing = []
        for group, (overrides, run_cfg) in first_job_of.items():
            choice = choice_for(asdict(run_cfg), run_cfg.results_dir)
            if choice is None:
                continue
            for rate in choice.rates_to_add():
                missing.append((group, with_scale(overrides, rate / run_cfg.method.learning_rate)))
        return missing
