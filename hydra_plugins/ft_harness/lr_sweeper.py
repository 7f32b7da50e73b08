"""`hydra/sweeper=lr_search`: Hydra's basic sweeper, plus the rates a learning-rate search still needs.

Two ways to use it:
- the declared grid is the search (sweeps/lr_search.yaml: a train.learning_rate_scale axis, search jobs): it runs
  the grid as the basic sweeper does, then adds rates where a best rate sits at its grid's edge;
- `search_scales` set (sweeps/tradeoff.yaml on a GPU): before the declared jobs, each of their search groups
  (harness/lr_choice.py: the jobs but for seed and rate) is trained at those scales as search jobs (validation loss
  only), edges extended; then the declared jobs run at the chosen rate (train.learning_rate_scale=tuned). A reduced
  profile (cpu_quick) decides nothing, so it searches nothing; `hydra.sweeper.search_scales=[]`, or a
  train.learning_rate_scale given on the command line, turns the search off.

Extending: for each search group whose best rate is at an edge of its grid, or whose neighbours of the best are more
than 2x away, the missing rates run as more jobs of the same sweep (the edge job's overrides with its scale
changed); the records are read again, at most `max_extensions` times. A sweep run again resumes where an earlier one
stopped, extensions included: the choice is read from the records, never kept in the sweeper.
"""

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

log = logging.getLogger("harness.sweep")

SCALE = "train.learning_rate_scale"
# what makes a job a search job: the validation loss at the end, nothing scored on the test examples, no probes
SEARCH_JOB = [
    "eval.validation_only=true",
    "eval.base_model=false",
    "eval.forgetting_chunks=0",
    "eval.latency_prompts=0",
    "eval.curve_points=0",
]


@dataclass
class LearningRateSearchSweeperConf:
    _target_: str = "hydra_plugins.ft_harness.lr_sweeper.LearningRateSearchSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    # rounds of added rates after the declared grid (each round adds at most two rates per group)
    max_extensions: int = 4
    # train.learning_rate_scale values to search before the declared jobs (empty: the declared grid is the search)
    search_scales: list[float] = field(default_factory=list)


ConfigStore.instance().store(
    group="hydra/sweeper", name="lr_search", node=LearningRateSearchSweeperConf, provider="ft-harness"
)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def with_overrides(overrides: Sequence[str], extra: Sequence[str]) -> list[str]:
    """A job's overrides with `extra` set (replacing the job's own value of a key `extra` names)."""
    keys = {_key(o) for o in extra}
    return [*(o for o in overrides if _key(o) not in keys), *extra]


def with_scale(overrides: Sequence[str], scale: float) -> list[str]:
    """A job's overrides with its learning-rate scale set to `scale` (added where the job had none)."""
    return with_overrides(overrides, [f"{SCALE}={scale:.6g}"])


class LearningRateSearchSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        max_extensions: int = 4,
        search_scales: Sequence[float] = (),
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.max_extensions = max_extensions
        self.search_scales = [float(s) for s in search_scales]
        self.jobs: list[list[str]] = []

    def split_arguments(self, overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        # the rate axis outermost: the grid runs every method at one rate before the next rate, so a search
        # stopped early has a few rates of every method rather than all rates of one
        ordered = sorted(overrides, key=lambda o: o.get_key_element() != SCALE)
        batches = BasicSweeper.split_arguments(ordered, max_batch_size)
        self.jobs = [list(job) for batch in batches for job in batch]
        return batches

    def sweep(self, arguments: list[str]) -> Any:
        if self.search_scales:
            declared = self._declared_jobs(arguments)
            reason = self._no_search_reason(declared)
            if reason is None:
                return self._search_then_run(declared)
            log.info("[lr search] no learning-rate search: %s", reason)
            # no search, so no grid to extend: a cpu_quick sweep's one rate per method is not an edge optimum
            # (extending it ran every job again at half its rate, then again, before this return)
            return super().sweep(arguments)
        returns = super().sweep(arguments)
        return self._extend(returns)

    def _declared_jobs(self, arguments: list[str]) -> list[list[str]]:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        return [job for batch in self.split_arguments(overrides, None) for job in batch]

    def _compose(self, overrides: Sequence[str]) -> Any:
        from harness.run.checks import load_run_config

        assert self.hydra_context is not None and self.config is not None
        return load_run_config(self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides)))

    def _no_search_reason(self, declared: list[list[str]]) -> str | None:
        if any(_key(o) == SCALE for job in declared for o in job):
            return "train.learning_rate_scale is given, so each job runs at the rate it names"
        first = self._compose(declared[0])
        if first.profile_name != "full":
            return f"profile {first.profile_name} decides nothing about quality; the jobs run at their config's rates"
        if not first.eval.enabled:
            return "eval.enabled=false: nothing is scored, so no rate is chosen"
        return None

    def _search_then_run(self, declared: list[list[str]]) -> Any:
        """The search jobs of every search group of the declared jobs, extended; then the declared jobs at the
        chosen rate (those of a group with no choice are left out, each named in one error line)."""
        from harness.lr_choice import choice_for, search_group

        assert self.launcher is not None and self.config is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        first_of: dict[str, list[str]] = {}
        for job in declared:
            first_of.setdefault(search_group(asdict(self._compose(job))), job)
        self.jobs = [with_overrides(job, SEARCH_JOB) for job in first_of.values()]
        search = [with_scale(job, scale) for scale in self.search_scales for job in self.jobs]
        log.info(
            "[lr search] searching %d configuration(s) at %d rate(s) each before the %d job(s) of the sweep",
            len(self.jobs),
            len(self.search_scales),
            len(declared),
        )
        returns = self._extend([self.launcher.launch(search, initial_job_idx=0)])
        runnable = []
        for job in declared:
            run_cfg = self._compose(job)
            choice = choice_for(asdict(run_cfg), run_cfg.results_dir)
            problem = "no search record" if choice is None else choice.problem()
            if problem is None:
                runnable.append(with_overrides(job, [f"{SCALE}=tuned"]))
            else:
                log.error("[lr search] not run, no rate chosen (%s): %s", problem, " ".join(job))
        if runnable:
            returns.append(self.launcher.launch(runnable, initial_job_idx=sum(len(b) for b in returns)))
        return returns

    def _extend(self, returns: list[Any]) -> list[Any]:
        """The rates the searches still need, in rounds, after the jobs already run."""
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
        from harness.lr_choice import choice_for, search_group

        first_job_of: dict[str, tuple[list[str], Any]] = {}
        for overrides in self.jobs:
            run_cfg = self._compose(overrides)
            first_job_of.setdefault(search_group(asdict(run_cfg)), (overrides, run_cfg))
        missing = []
        for group, (overrides, run_cfg) in first_job_of.items():
            choice = choice_for(asdict(run_cfg), run_cfg.results_dir)
            if choice is None:
                continue
            for rate in choice.rates_to_add():
                missing.append((group, with_scale(overrides, rate / run_cfg.method.learning_rate)))
        return missing
