"""The trade-off report's learning rates: which records are compared (each method at its chosen rate), the
search's table and figure, and how often the choice rule ranks runs as their test scores do.

A method's score counts against another's only when each ran at its own rate, chosen on validation data
(harness/lr_choice.py). So once any method of the records has a chosen rate, the report compares the runs at
chosen rates alone; the other test-scored runs are points of a search (shown here) or of a method whose rate
was never searched (named, not compared). Where no method has a chosen rate, every run is compared and the
quality claims give no verdict (claims/ reads the `tuned` column).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.lr_choice import RULE, Choice, choices, learning_rate_of, same_rate, search_group  # noqa: E402

# a test-scored run's place in the search: at its method's chosen rate, at another rate of a search that has a
# choice, or of a method with no chosen rate (never searched, or its search not settled)
TUNED, OFF_RATE, UNTUNED = "tuned", "other rate", "not tuned"


def is_search_record(record: dict) -> bool:
    """A learning-rate search job's record: validation loss only, nothing scored on the test examples."""
    return bool(record.get("config", {}).get("eval", {}).get("validation_only"))


def rate_status(record: dict, chosen: dict[str, Choice]) -> str:
    """TUNED, OFF_RATE or UNTUNED for a test-scored record, given the searches' choices."""
    choice = chosen.get(search_group(record["config"]))
    if choice is None or choice.chosen is None:
        return UNTUNED
    return TUNED if same_rate(learning_rate_of(record), choice.chosen) else OFF_RATE


@dataclasses.dataclass
class RateSelection:
    """What the report compares, and why."""

    compared: list[dict]  # the test-scored records the comparisons, claims and answer use
    tuned: bool  # True: every compared run is at its method's chosen rate
    choices: dict[str, Choice]  # every search group of the records, with or without a choice
    left_out: dict[str, list[str]]  # OFF_RATE / UNTUNED: labels of the test-scored runs not compared

    def note(self) -> str:
        if not self.choices or not any(c.chosen for c in self.choices.values()):
            return (
                "**Learning rates not tuned.** Every method ran at its config's rate (conf/method/); no method's rate "
                "was chosen by a search on validation data, so a gap between two methods measures their rates as "
                "much as the methods, and the quality claims below give no verdict. `+sweeps=lr_search` searches them."
            )
        parts = ["Each method is compared at its own learning rate, chosen on validation data (table below)."]
        if self.left_out.get(OFF_RATE):
            parts.append(
                "Not compared, trained at a rate other than their method's chosen one (grid points of its search): "
                + ", ".join(self.left_out[OFF_RATE])
                + "."
            )
        if self.left_out.get(UNTUNED):
            parts.append(
                "Not compared, their rates never chosen by a search: " + ", ".join(self.left_out[UNTUNED]) + "."
            )
        return " ".join(parts)


def select_runs(scored: list[dict], all_records: list[dict]) -> RateSelection:
    """Split the test-scored records by their rate's status; compare the tuned ones where there are any."""
    found = choices(all_records)
    status = {id(r): rate_status(r, found) for r in scored}
    tuned = [r for r in scored if status[id(r)] == TUNED]
    left_out: dict[str, list[str]] = {}
    if tuned:
        for r in scored:
            if status[id(r)] != TUNED:
                left_out.setdefault(status[id(r)], [])
                label = r["run"]["method_label"]
                if label not in left_out[status[id(r)]]:
                    left_out[status[id(r)]].append(label)
    return RateSelection(tuned or scored, bool(tuned), found, left_out)


def _full_rate(found: dict[str, Choice]) -> float | None:
    rates = [c.chosen for c in found.values() if c.method_label == "full" and c.chosen]
    return rates[0] if len(rates) == 1 else None


def seed_spread(found: dict[str, Choice], records: list[dict]) -> dict[str, tuple[float, float, int]]:
    """Per search group with a choice: the (lowest, highest) validation loss at the end over the seeds that ran at
    the chosen rate, and how many seeds (a seed's runs at one rate averaged).

    The search ran one seed, so how far one seed's loss moves at one rate is measured only by the test runs'
    seeds; a runner-up rate closer than that is a choice of the rule, not a measured optimum."""
    by_group: dict[str, dict[int, list[float]]] = {}
    for r in records:
        choice = found.get(search_group(r["config"]))
        loss = r.get("metrics", {}).get("eval_loss")
        if choice is None or choice.chosen is None or r.get("status") != "ok" or loss is None:
            continue
        if same_rate(learning_rate_of(r), choice.chosen) and math.isfinite(loss):
            by_group.setdefault(choice.group, {}).setdefault(r["config"]["train"]["seed"], []).append(float(loss))
    out = {}
    for group, seeds in by_group.items():
        means = [sum(v) / len(v) for v in seeds.values()]
        out[group] = (min(means), max(means), len(means))
    return out


def _runner_up(c: Choice) -> tuple[float, float] | None:
    """(rate, loss above the chosen rate's) of the second-best rate of a choice."""
    if c.chosen is None:
        return None
    best = min(loss for _, loss in c.points)
    rest = sorted((loss, rate) for rate, loss in c.points if not same_rate(rate, c.chosen))
    return (rest[0][1], rest[0][0] - best) if rest and math.isfinite(rest[0][0]) else None


def near_ties(found: dict[str, Choice], spread: dict[str, tuple[float, float, int]]) -> list[str]:
    """Labels of the choices whose runner-up rate is closer in validation loss than the seeds at the chosen rate
    are to each other: one seed's search cannot tell those two rates apart."""
    out = []
    for c in found.values():
        runner, seeds = _runner_up(c), spread.get(c.group)
        if runner and seeds and seeds[2] >= 2 and runner[1] < seeds[1] - seeds[0]:
            out.append(c.method_label)
    return sorted(out)


def _spread_cell(seeds: tuple[float, float, int] | None) -> str:
    if seeds is None:
        return "-"
    low, high, n = seeds
    return f"{low:.4f}-{high:.4f} ({n} seeds)" if n >= 2 else "1 seed"


def choice_table(found: dict[str, Choice], spread: dict[str, tuple[float, float, int]] | None = None) -> pd.DataFrame:
    """One row per search: its rates and their validation loss, the choice and its ratio to full FT's, the
    runner-up rate and how far the seeds at the choice spread (where more than one ran there)."""
    full = _full_rate(found)
    spread = spread or {}
    rows = []
    for c in sorted(found.values(), key=lambda c: (c.method_label != "full", c.method_label)):
        if len(c.points) < 2 and c.failed == 0:
            continue  # one run at one rate: no search
        ratio = c.neighbour_ratio
        if c.chosen is None:
            state = c.problem() or "-"
        elif not c.settled:
            state = (
                f"chosen on a grid short of {5} rates with neighbours <= 2x apart (neighbours {ratio:.2g}x apart)"
                if ratio
                else "chosen"
            )
        else:
            state = f"chosen, strictly inside the grid (neighbours {ratio:.2g}x apart)"
        rows.append(
            {
                "method": c.method_label,
                "rates searched": len(c.points),
                "validation loss by rate": ", ".join(f"{rate:.3g}: {loss:.4f}" for rate, loss in c.points),
                "chosen rate": f"{c.chosen:.3g}" if c.chosen else "-",
                "x full FT's": f"{c.chosen / full:.3g}" if c.chosen and full else "-",
                "runner-up (loss above)": f"{runner[0]:.3g} (+{runner[1]:.4f})" if (runner := _runner_up(c)) else "-",
                "seeds at the choice": _spread_cell(spread.get(c.group)) if c.chosen else "-",
                "seed": c.seed,
                "failed runs": c.failed,
                "status": state,
            }
        )
    return pd.DataFrame(rows)


def rule_agreement(scored: list[dict]) -> tuple[int, int]:
    """(agreeing pairs, pairs): over pairs of test-scored runs of one search group and seed at different rates,
    how often the lower validation loss goes with the higher exact match (ties in either count as disagreeing)."""
    groups: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in scored:
        m = r.get("metrics", {})
        if r.get("status") != "ok" or m.get("eval_loss") is None or "exact_match" not in m.get("score", {}):
            continue
        key = (search_group(r["config"]), r["config"]["train"]["seed"])
        groups.setdefault(key, []).append((float(m["eval_loss"]), float(m["score"]["exact_match"])))
    agree = total = 0
    for points in groups.values():
        for (loss_a, em_a), (loss_b, em_b) in itertools.combinations(points, 2):
            total += 1
            agree += (loss_a - loss_b) * (em_b - em_a) > 0
    return agree, total


def lr_plot(found: dict[str, Choice], out_dir: Path) -> Path | None:
    """Validation loss at the end against the learning rate, one curve per searched method, chosen rates marked."""
    searched = [c for c in found.values() if len(c.points) >= 2]
    if not searched:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for c in sorted(searched, key=lambda c: c.method_label):
        rates = [rate for rate, loss in c.points if loss != float("inf")]
        losses = [loss for _, loss in c.points if loss != float("inf")]
        (line,) = ax.plot(rates, losses, marker="o", label=c.method_label)
        if c.chosen:
            best = min(losses)
            ax.plot([c.chosen], [best], marker="*", markersize=16, color=line.get_color(), markeredgecolor="black")
        elif c.best:
            ax.annotate("edge", (c.best, min(losses)), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("validation loss at the end")
    ax.set_title("Learning-rate search (star: the chosen rate)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(out_dir) / "learning_rates.png"
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def lr_section(
    selection: RateSelection, scored: list[dict], search_records: list[dict]
) -> tuple[pd.DataFrame | None, str]:
    """The report's learning-rate section: the table of searches and the text around it."""
    spread = seed_spread(selection.choices, [*scored, *search_records])
    table = choice_table(selection.choices, spread)
    agree, total = rule_agreement(scored)
    text = [selection.note()]
    if not table.empty:
        seconds = [
            (r["metrics"].get("process_seconds"), r["metrics"].get("train_seconds"))
            for r in search_records
            if r.get("status") == "ok"
        ]
        seconds = [(p, t) for p, t in seconds if p and t]
        text.append(
            f"Rule: {RULE}. The test examples never enter the choice. A best rate at the grid's edge is no choice "
            "(`hydra/sweeper=lr_search` adds the next rate). "
            + (
                f"{len(search_records)} search job(s) here (validation loss only); their process time was "
                f"{sum(p for p, _ in seconds) / sum(t for _, t in seconds):.2f}x their training time. "
                if seconds
                else ""
            )
        )
        text.append(
            f"Does validation loss rank runs as the test score does? On the {total} pair(s) of test-scored runs of "
            f"one method and seed at different rates, the lower validation loss had the higher exact match in {agree}."
            if total
            else "No method has test-scored runs at two rates, so the rule's agreement with the test score is not "
            "measured here."
        )
        text.append(
            "The search ran one seed; 'seeds at the choice' is how far the validation loss of the test runs' seeds "
            "spread at the chosen rate (the same rate, another seed)."
        )
        ties = near_ties(selection.choices, spread)
        if ties:
            text.append(
                f"Near ties: for {', '.join(ties)} the runner-up rate's loss is closer to the chosen one's than the "
                "seeds at the chosen rate are to each other, so one seed's search cannot tell those two rates apart; "
                "the choice there is the rule's, not a measured optimum (a search over more seeds would decide)."
            )
    return (table if not table.empty else None), " ".join(t.strip() for t in text)
