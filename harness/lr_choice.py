"""Each method's learning rate, chosen on the validation split of its search runs, never on the test examples.

A learning-rate search (sweeps/lr_search.yaml) trains one configuration at several rates, one seed, and measures
the validation loss at the end of training (eval.validation_only: nothing is scored on the test examples). Runs
that differ only in their rate, their seed and their `eval` settings form one search group; a test-scored run of
the group counts as a point of its grid too (it measured the same validation loss). The rule, stated in the
report: the rate with the lowest validation loss at the end, among the runs of the seed the search ran (the
group's seed with the most rates). A best rate at either end of the grid is no choice: the search sweeper
(hydra_plugins/ft_harness/lr_sweeper.py) adds the next rate beyond it, and `train.learning_rate_scale=tuned`
refuses to run on it.

Pure functions of records; the run side (run/checks.py's load_run_config, the sweeper) and the reports both use them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path

from harness.results import config_key, load_records

# What one search group's runs share: everything but the rate, the seed and the scoring.
SEARCH_GROUP = (
    ("eval", None),
    ("train", "seed"),
    ("train", "learning_rate_scale"),
    ("method", "learning_rate"),
)
RULE = "lowest validation loss at the end of training (the validation split; the seed the search ran)"
# The grid the issue asks of a choice: at least this many rates, neighbours of the best at most this ratio apart.
MIN_RATES = 5
MAX_NEIGHBOUR_RATIO = 2.0
# Rates closer than this (relative) are one rate: 5e-4 x 4 and 2e-3 differ in their last bits.
_SAME_RATE = 1e-6


def search_group(config: dict) -> str:
    """The key a run's config shares with every run of its learning-rate search."""
    return config_key(config, without=SEARCH_GROUP)


def learning_rate_of(record: dict) -> float:
    """The rate a run trained with (the method's rate times train.learning_rate_scale)."""
    rate = record.get("run", {}).get("learning_rate")
    if rate is None:
        config = record["config"]
        rate = config["method"]["learning_rate"] * config["train"].get("learning_rate_scale", 1.0)
    return float(f"{rate:.6g}")


def same_rate(a: float, b: float) -> bool:
    return abs(a - b) <= _SAME_RATE * max(abs(a), abs(b))


@dataclasses.dataclass
class Choice:
    """One search group's grid and the rate chosen on it."""

    group: str
    method_label: str
    seed: int | None
    # (rate, validation loss at the end) of the search seed, by rate; a run whose loss is not finite (diverged)
    # counts as infinitely bad
    points: list[tuple[float, float]]
    # records of the group that did not end ok (failed, oom): not points
    failed: int
    # stems of the records behind the points
    stems: list[str]

    @property
    def rates(self) -> list[float]:
        return [rate for rate, _ in self.points]

    @property
    def best(self) -> float | None:
        """The rate with the lowest validation loss (the first of equals), or None when no run measured one."""
        finite = [(loss, rate) for rate, loss in self.points if math.isfinite(loss)]
        return min(finite)[1] if finite else None

    @property
    def edge(self) -> str | None:
        """'low' or 'high' where the best rate is the grid's lowest or highest (a grid of one rate is both)."""
        best = self.best
        if best is None:
            return None
        if same_rate(best, self.rates[0]):
            return "low"
        if same_rate(best, self.rates[-1]):
            return "high"
        return None

    @property
    def neighbour_ratio(self) -> float | None:
        """The larger of the ratios between the best rate and its two neighbours (None at an edge)."""
        best = self.best
        if best is None or self.edge is not None:
            return None
        i = next(i for i, rate in enumerate(self.rates) if same_rate(rate, best))
        return max(self.rates[i + 1] / best, best / self.rates[i - 1])

    @property
    def chosen(self) -> float | None:
        """The chosen rate: the best one strictly inside the grid, or None (no finite loss, or an edge)."""
        return self.best if self.best is not None and self.edge is None else None

    @property
    def settled(self) -> bool:
        """Chosen on a grid fine and wide enough: at least MIN_RATES rates, neighbours of the best at most
        MAX_NEIGHBOUR_RATIO apart."""
        ratio = self.neighbour_ratio
        return (
            self.chosen is not None
            and len(self.points) >= MIN_RATES
            and ratio is not None
            and ratio <= MAX_NEIGHBOUR_RATIO * (1 + 1e-6)
        )

    def rates_to_add(self) -> list[float]:
        """What the search still needs for a choice: the next rate beyond an edge optimum (the grid's own step
        there, 2x for a grid of one rate), or the geometric midpoints where the best's neighbours are more than
        MAX_NEIGHBOUR_RATIO away. Empty when the choice stands, or when no run measured a loss."""
        best, rates = self.best, self.rates
        if best is None:
            return []
        if self.edge is not None:
            step = 2.0 if len(rates) == 1 else (rates[1] / rates[0] if self.edge == "low" else rates[-1] / rates[-2])
            step = min(step, MAX_NEIGHBOUR_RATIO)
            return [float(f"{(best / step if self.edge == 'low' else best * step):.6g}")]
        i = next(i for i, rate in enumerate(rates) if same_rate(rate, best))
        return [
            float(f"{math.sqrt(best * other):.6g}")
            for other in (rates[i - 1], rates[i + 1])
            if max(other, best) / min(other, best) > MAX_NEIGHBOUR_RATIO * (1 + 1e-6)
        ]

    def problem(self) -> str | None:
        """Why this group has no chosen rate, in one line (None when it has one)."""
        if self.best is None:
            if self.failed and not self.points:
                return f"all {self.failed} search run(s) of {self.method_label} failed: no rate can be chosen"
            return f"no search run of {self.method_label} measured a finite validation loss"
        if len(self.points) == 1:
            return (
                f"the search of {self.method_label} has one rate ({self.rates[0]:g}): a grid of one rate chooses "
                "nothing; give train.learning_rate_scale several values"
            )
        if self.edge is not None:
            return (
                f"the best rate of {self.method_label} ({self.best:g}) is the {self.edge}est of its grid "
                f"({', '.join(f'{r:g}' for r in self.rates)}): not a choice; run the search again and it adds "
                f"{', '.join(f'{r:g}' for r in self.rates_to_add())}"
            )
        return None


def choices(records: Iterable[dict]) -> dict[str, Choice]:
    """Every search group's grid and choice, from the records (search jobs and test-scored runs alike).

    Only records of one seed are points, the one with the most rates (the lowest of equals): the grid is one seed's,
    as the search ran it; more seeds at the chosen rate (the test runs) do not tilt the choice towards that rate."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        if "config" in record and "train" in record["config"]:
            groups.setdefault(search_group(record["config"]), []).append(record)
    out = {}
    for group, members in groups.items():
        ok = [r for r in members if r.get("status") == "ok" and r.get("metrics", {}).get("eval_loss") is not None]
        rates_of: dict[int, set[float]] = {}
        for r in ok:
            rates_of.setdefault(r["config"]["train"]["seed"], set()).add(learning_rate_of(r))
        seed = min(rates_of, key=lambda s: (-len(rates_of[s]), s)) if rates_of else None
        losses: dict[float, list[float]] = {}
        stems = []
        for record in ok:
            if record["config"]["train"]["seed"] != seed:
                continue
            loss = float(record["metrics"]["eval_loss"])
            rate = learning_rate_of(record)
            key = next((r for r in losses if same_rate(r, rate)), rate)
            losses.setdefault(key, []).append(loss if math.isfinite(loss) else math.inf)
            stems.append(record["run"]["id"])
        points = sorted((rate, sum(v) / len(v)) for rate, v in losses.items())
        label = members[0]["run"].get("method_label") or members[0]["config"]["method"]["name"]
        failed = sum(1 for r in members if r.get("status") != "ok")
        out[group] = Choice(group, label, seed, points, failed, sorted(stems))
    return out


def choice_for(config: dict, results_dir: str | Path) -> Choice | None:
    """The search group of `config` as the records under results_dir have it, or None (no run of that group)."""
    return choices(load_records(results_dir, quiet=True)).get(search_group(config))
