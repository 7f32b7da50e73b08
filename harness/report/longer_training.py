"""Does the gap survive more training? Tuned full FT against tuned LoRA r16 at each training budget the records
hold, and how their paired gap changes from the shortest budget to each longer one.

Why: a gap measured after a short run may be a method still catching up (the learning-curve section says
whether validation loss was still falling), and a rate chosen for 60 steps need not be the best for 240. So each
budget's runs count only at the rate their own search chose (a search at that budget, harness/lr_choice.py),
and the change in the gap is estimated example by example: for each test example and seed both budgets ran,
(full FT - LoRA at the longer budget) - (full FT - LoRA at the shorter one), with the paired errors of
harness/report/paired.py.
"""

from __future__ import annotations

import pandas as pd

from harness.lr_choice import choices, search_group
from harness.report import frames
from harness.report.lr_report import TUNED, is_search_record, rate_status
from harness.report.paired import paired_gap

PAIR = ("full", "lora-r16")


def training_budget_of(record: dict) -> int:
    """The optimizer steps a run took (the record's own count; its config's max_steps for older records)."""
    return int(record.get("run", {}).get("optimizer_steps") or record["config"]["train"]["max_steps"])


def _tuned_runs(all_records: list[dict], found: dict) -> dict[int, list[dict]]:
    """Test-scored, ok runs of the pair at their search's chosen rate (`found`: lr_choice.choices), by training
    budget; only budgets where both methods have such runs."""
    by_budget: dict[int, list[dict]] = {}
    for r in all_records:
        if r.get("status") != "ok" or is_search_record(r) or not r.get("metrics", {}).get("score"):
            continue
        if r["run"]["method_label"] in PAIR and rate_status(r, found) == TUNED:
            by_budget.setdefault(training_budget_of(r), []).append(r)
    return {b: rs for b, rs in sorted(by_budget.items()) if {r["run"]["method_label"] for r in rs} == set(PAIR)}


def _differences(examples: pd.DataFrame) -> tuple[dict[int, pd.Series], pd.Series]:
    """Full FT minus LoRA's exact match, one Series per seed both ran (indexed by test example id), and each
    example's prompt hash."""
    table = examples.pivot_table(index="id", columns=["label", "seed"], values="exact_match", aggfunc="first")
    seeds = sorted(set(table[PAIR[0]].columns) & set(table[PAIR[1]].columns))
    differences = {int(s): (table[(PAIR[0], s)] - table[(PAIR[1], s)]).dropna() for s in seeds}
    return differences, examples.drop_duplicates("id").set_index("id")["prompt_sha"]


def _points(x: float) -> str:
    return f"{x * 100:+.1f}"


def longer_training_section(all_records: list[dict]) -> tuple[pd.DataFrame | None, str] | None:
    """The section's table and note, or None where the records hold tuned runs of the pair at one budget only."""
    found = choices(all_records)
    by_budget = _tuned_runs(all_records, found)
    if len(by_budget) < 2:
        return None
    rows, differences, prompts = [], {}, {}
    for budget, runs in by_budget.items():
        examples, _ = frames.examples_frame(runs)
        gap = frames.paired_gap(examples, *PAIR) if not examples.empty else None
        if gap is None:
            continue
        differences[budget], prompts[budget] = _differences(examples)
        rates = {r["run"]["method_label"]: found[search_group(r["config"])].chosen for r in runs}
        scores = examples.groupby("label")["exact_match"].mean()
        rows.append(
            {
                "training budget (optimizer steps)": budget,
                "full FT rate": f"{rates[PAIR[0]]:.3g}",
                "LoRA r16 rate": f"{rates[PAIR[1]]:.3g}",
                "seeds": ", ".join(str(s) for s in sorted(differences[budget])),
                "full FT exact match": f"{scores[PAIR[0]]:.3f}",
                "LoRA r16 exact match": f"{scores[PAIR[1]]:.3f}",
                "gap (points, 95 %)": f"{_points(gap.gap)} ± {gap.half_width * 100:.1f}",
            }
        )
    if len(differences) < 2:
        return None
    budgets = sorted(differences)
    short = budgets[0]
    changes = [_change(short, long, differences, prompts) for long in budgets[1:]]
    note = (
        "Full FT minus LoRA r16 in exact match (points), each at the learning rate its own search chose at that "
        "budget, paired over the same test examples. The change from the shortest budget is estimated example by "
        "example on the seeds both budgets ran: " + " ".join(changes)
    )
    return pd.DataFrame(rows), note


def _change(short: int, long: int, differences: dict, prompts: dict) -> str:
    seeds = sorted(set(differences[short]) & set(differences[long]))
    ids = None
    for s in seeds:
        common = differences[short][s].index.intersection(differences[long][s].index)
        ids = common if ids is None else ids.intersection(common)
    if not seeds or ids is None or len(ids) < 2:
        return f"{short} -> {long} steps: no seed and test examples in common, no estimate."
    if (prompts[short].loc[ids] != prompts[long].loc[ids]).any():
        return f"{short} -> {long} steps: the test examples differ between the budgets (prompt hashes), no estimate."
    change = paired_gap(
        {s: differences[long][s].loc[ids].to_numpy(float) for s in seeds},
        {s: differences[short][s].loc[ids].to_numpy(float) for s in seeds},
    )
    low, high = change.interval()
    if low > 0:
        verdict = "full FT's margin over LoRA r16 grows with more training"
    elif high < 0:
        verdict = "full FT's margin over LoRA r16 shrinks with more training"
    else:
        verdict = "no change in the gap detected at this precision"
    seed_text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    return (
        f"{short} -> {long} steps: {_points(change.gap)} points (95 % interval {low * 100:+.1f} to {high * 100:+.1f}; "
        f"{seed_text}, {len(ids)} examples): {verdict}."
    )
