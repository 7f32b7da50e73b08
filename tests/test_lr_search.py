"""The learning-rate search: the rate is chosen on validation loss alone (never the test examples), an optimum at
the grid's edge is no choice, search jobs score nothing on the test examples, committed runs count as grid points,
the sweeper adds the rates an edge needs, and the report compares each method at its chosen rate."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from harness.config import ConfigError
from harness.lr_choice import choices, search_group
from harness.report import claims
from harness.report.lr_report import (
    OFF_RATE,
    TUNED,
    UNTUNED,
    choice_table,
    near_ties,
    rate_status,
    seed_spread,
    select_runs,
)
from harness.results import (
    existing_ok_record,
    load_records,
    new_record,
    record_path,
    write_json_atomic,
)
from harness.run.checks import load_run_config
from harness.run.train import run

from .conftest import FAST, compose_config


def _record(cfg, eval_loss: float | None, exact_match: float | None = None, status: str = "ok") -> dict:
    """A record of `cfg` as a run writes it, with the figures the choice and the comparisons read."""
    record = new_record(
        cfg,
        started_at="2026-12-06T00:00:00+00:00",
        environment={},
        learning_rate=cfg.method.learning_rate * cfg.train.learning_rate_scale,
    )
    record["status"] = status
    record["metrics"] = {"eval_loss": eval_loss}
    if exact_match is not None:
        record["metrics"]["score"] = {"exact_match": exact_match, "n": 4}
    record["run"]["record_path"] = str(record_path(cfg))
    return record


def _grid(make_config, method: str, losses: dict[float, float], *, search: bool = True, seed: int = 0) -> list[dict]:
    """One method's search records (validation only) at the given scales, written under the test's results_dir."""
    records = []
    for scale, loss in losses.items():
        extra = ["eval.validation_only=true"] if search else []
        cfg = make_config(f"method={method}", f"train.learning_rate_scale={scale}", f"train.seed={seed}", *extra)
        record = _record(cfg, loss, None if search else 0.5)
        write_json_atomic(record_path(cfg), record)
        records.append(record)
    return records


def test_the_chosen_rate_never_depends_on_test_examples(make_config):
    searched = _grid(make_config, "lora", {0.5: 0.08, 1: 0.05, 2: 0.04, 4: 0.06})
    # test-scored runs at two of the rates: their scores and predictions say the opposite of validation loss
    scored = []
    for scale, loss, em in ((1, 0.05, 0.9), (2, 0.04, 0.1)):
        cfg = make_config("method=lora", f"train.learning_rate_scale={scale}")
        record = _record(cfg, loss, em)
        record["metrics"]["score"]["samples"] = [{"prediction": "a", "reference": "a"}]
        scored.append(record)
    before = choices(searched + scored)
    (choice,) = before.values()
    assert choice.chosen == pytest.approx(2 * 5e-4) and choice.edge is None and choice.settled is False  # 4 rates
    # every test prediction and score changed: no choice changes, and the run at the chosen rate stays the tuned one
    flipped = copy.deepcopy(scored)
    for record in flipped:
        record["metrics"]["score"] = {"exact_match": 1 - record["metrics"]["score"]["exact_match"], "n": 4,
                                      "samples": [{"prediction": "b", "reference": "a"}]}  # fmt: skip
    after = choices(searched + flipped)
    assert {g: (c.chosen, c.points) for g, c in after.items()} == {g: (c.chosen, c.points) for g, c in before.items()}
    assert [rate_status(r, after) for r in flipped] == [OFF_RATE, TUNED]
    assert [rate_status(r, before) for r in scored] == [OFF_RATE, TUNED]
    # train.learning_rate_scale=tuned takes it, read from the records on disk: the test runs use the chosen rate
    tuned = load_run_config(compose_config([*FAST, "method=lora", "train.learning_rate_scale=tuned",
                                            f"results_dir={make_config().results_dir}"]))  # fmt: skip
    assert tuned.train.learning_rate_scale == 2.0


def test_an_edge_optimum_is_flagged_and_no_run_takes_it(make_config):
    _grid(make_config, "full", {1: 0.09, 2: 0.07, 4: 0.05, 8: 0.04, 16: 0.03})
    (choice,) = choices(load_records(make_config().results_dir)).values()
    assert choice.best == pytest.approx(16 * 5e-5) and choice.edge == "high" and choice.chosen is None
    assert choice.rates_to_add() == [pytest.approx(32 * 5e-5)]
    with pytest.raises(ConfigError, match=r"highest of its grid .* adds 0.0016"):
        make_config("method=full", "train.learning_rate_scale=tuned")
    # the lowest rate best: the next one down is what the search adds
    _grid(make_config, "lora", {1: 0.02, 2: 0.03, 4: 0.05, 8: 0.06, 16: 0.09})
    lora = next(c for c in choices(load_records(make_config().results_dir)).values() if c.method_label == "lora-r16")
    assert lora.edge == "low" and lora.rates_to_add() == [pytest.approx(0.5 * 5e-4)]


def test_a_runner_up_closer_than_the_seeds_at_the_choice_is_named_a_near_tie(make_config):
    """The search runs one seed: where the seeds at the chosen rate spread wider than the runner-up's gap, the
    report must not present the choice as a measured optimum."""
    searched = _grid(make_config, "lora", {1: 0.06, 2: 0.041, 4: 0.040, 8: 0.05, 16: 0.09})

    def seeds_at_choice(*losses: float) -> list[dict]:
        return [_record(make_config("method=lora", "train.learning_rate_scale=4", f"train.seed={seed}"), loss, 0.5)
                for seed, loss in enumerate(losses, start=1)]  # fmt: skip

    noisy = seeds_at_choice(0.030, 0.045)
    found = choices(searched + noisy)
    spread = seed_spread(found, searched + noisy)
    (choice,) = found.values()
    assert choice.chosen == pytest.approx(2e-3) and choice.seed == 0  # the seeds do not move the choice
    assert spread[choice.group] == (pytest.approx(0.030), pytest.approx(0.045), 3)  # seed 0's search run counts
    assert near_ties(found, spread) == ["lora-r16"]
    row = choice_table(found, spread).iloc[0]
    assert (
        row["runner-up (loss above)"] == "0.001 (+0.0010)" and row["seeds at the choice"] == "0.0300-0.0450 (3 seeds)"
    )
    # seeds closer to each other than the runner-up is to the choice: the choice stands
    steady = seeds_at_choice(0.0401, 0.0403)
    assert near_ties(choices(searched + steady), seed_spread(choices(searched + steady), searched + steady)) == []
    # one seed at the choice: its spread is unmeasured, and no tie is claimed either way
    alone = seed_spread(choices(searched), searched)
    assert (
        near_ties(choices(searched), alone) == []
        and choice_table(choices(searched), alone).iloc[0]["seeds at the choice"] == "1 seed"
    )


def test_searches_that_choose_nothing_say_why_before_anything_trains(make_config):
    with pytest.raises(ConfigError, match="no learning-rate search of lora-r16"):
        make_config("method=lora", "train.learning_rate_scale=tuned")
    _grid(make_config, "lora", {1: 0.05})
    with pytest.raises(ConfigError, match="a grid of one rate chooses nothing"):
        make_config("method=lora", "train.learning_rate_scale=tuned")
    for scale in (1, 2):
        cfg = make_config("method=full", f"train.learning_rate_scale={scale}", "eval.validation_only=true")
        write_json_atomic(record_path(cfg), _record(cfg, None, status="failed"))
    with pytest.raises(ConfigError, match=r"all 2 search run\(s\) of full failed"):
        make_config("method=full", "train.learning_rate_scale=tuned")
    with pytest.raises(ConfigError, match="eval.enabled=false"):
        make_config("eval.validation_only=true", "eval.enabled=false")


def test_a_search_job_measures_validation_loss_and_scores_nothing_on_the_test_examples(make_config):
    cfg = make_config("method=lora", "eval.validation_only=true", "eval.curve_points=0")
    record = run(cfg)
    m = record["metrics"]
    assert record["status"] == "ok" and m["eval_loss"] > 0
    assert "score" not in m and "base_score" not in m and "forgetting" not in m and "inference" not in m
    assert set(m["eval_parts_seconds"]) == {"validation_loss"} and "artifact_bytes" not in m
    path = record_path(cfg)
    assert not list(path.parent.glob("*examples.jsonl"))
    # a test-scored run of the same training stands for the search job at its rate; another seed does not
    scored_cfg = make_config("method=lora", "train.learning_rate_scale=2")
    write_json_atomic(record_path(scored_cfg), _record(scored_cfg, 0.04, 0.5))
    found = existing_ok_record(make_config("method=lora", "train.learning_rate_scale=2", "eval.validation_only=true"))
    assert found is not None and found["run"]["id"] == record_path(scored_cfg).stem
    assert existing_ok_record(make_config("method=lora", "train.learning_rate_scale=2", "train.seed=1",
                                          "eval.validation_only=true")) is None  # fmt: skip
    assert search_group(json.loads(path.read_text())["config"]) == search_group(found["config"])


def test_the_report_compares_runs_at_their_chosen_rates_and_untuned_ones_give_no_verdict(make_config):
    searched = _grid(make_config, "lora", {1: 0.05, 2: 0.04, 4: 0.06})
    full = _grid(make_config, "full", {1: 0.05, 2: 0.04})  # its best at the edge: no choice
    scored = []
    for method, scale in (("lora", 2), ("lora", 1), ("full", 1)):
        cfg = make_config(f"method={method}", f"train.learning_rate_scale={scale}", "train.seed=1")
        scored.append(_record(cfg, 0.05, 0.5))
    selection = select_runs(scored, scored + searched + full)
    assert selection.tuned and [r["run"]["method_label"] for r in selection.compared] == ["lora-r16"]
    assert selection.left_out == {OFF_RATE: ["lora-r16"], UNTUNED: ["full"]}
    assert "Not compared, their rates never chosen by a search: full" in selection.note()
    # nothing tuned: everything is compared, and a quality claim gives no verdict whatever its gap
    untuned = select_runs(scored[2:], scored[2:])
    assert not untuned.tuned and untuned.compared == scored[2:]
    runs, variants = _variant_frames([
        {"label": "full", "method": "full", "score": 0.80},
        {"label": "lora-r8", "method": "lora", "r": 8, "score": 0.50},
    ])  # fmt: skip
    wanted = [c for c in claims.load_claims()["claims"] if c["id"] in ("gap-lora", "trainable")]
    by_id = claims._claim_rows(wanted, runs, variants, {"_rates": selection}).set_index("id")
    assert by_id.loc["gap-lora", "verdict"] == claims.FAILS  # 30 points on 2000 examples, each at its chosen rate
    by_id = claims._claim_rows(wanted, runs, variants, {"_rates": untuned}).set_index("id")
    assert by_id.loc["gap-lora", "verdict"] == claims.INCONCLUSIVE
    assert by_id.loc["gap-lora", "why"].startswith("Learning rates not tuned")
    assert not by_id.loc["trainable", "why"].startswith("Learning rates not tuned")  # not a quality claim
    # a claim that finds none of its runs among the compared ones names the runs left out for their rates
    dora = [c for c in claims.load_claims()["claims"] if c["id"] == "dora-gain"]
    result = claims._claim_rows(dora, runs, variants, {"_rates": selection}).iloc[0]
    assert result["verdict"] == claims.UNTESTABLE and "records hold runs of full, left out" in result["why"], result


def _variant_frames(rows: list[dict]):
    import pandas as pd

    from harness.report.frames import variants_frame

    base = {"seed": 0, "status": "ok", "n_test": 2000, "quant_type": None, "r": None, "losses": [],
            "profile": "full", "device": "cuda", "forgetting_delta": None, "grad_accum": 1,
            "target_modules": "q_proj", "params_total": 1e8, "artifact_mib": 1.0, "peak_mem_mib": 1000.0,
            "mem_source": "rss", "tokens_per_s": 100.0, "trainable_pct": 1.0, "double_quant": None}  # fmt: skip
    runs = pd.DataFrame([{**base, **row} for row in rows])
    return runs, variants_frame(runs)


def test_lr_ratio_claim_reads_the_two_choices(make_config):
    lora = _grid(make_config, "lora", {2: 0.06, 4: 0.05, 8: 0.04, 16: 0.045, 32: 0.07})  # 4e-3
    full = _grid(make_config, "full", {1: 0.06, 2: 0.05, 4: 0.04, 8: 0.045, 16: 0.07})  # 2e-4
    selection = select_runs([], lora + full)
    result = claims.lr_ratio(None, None, {"_rates": selection, "method_label": "lora-r16", "low": 5, "high": 20})
    # 4e-3 / 2e-4 = 20x, known to within 2x either way on 2x grids: straddles the band's upper end
    assert result["measured"].startswith("lora-r16 0.004 / full FT 0.0002 = 20x")
    assert result["verdict"] == claims.INCONCLUSIVE
    assert "on the band's edge (20x)" in result["why"]  # no finer grid decides a ratio that sits on the edge
    near = select_runs([], _grid(make_config, "lora", {0.75: 0.06, 1.5: 0.05, 3: 0.04, 6: 0.045, 12: 0.07}) + full)
    result = claims.lr_ratio(None, None, {"_rates": near, "method_label": "lora-r16", "low": 5, "high": 20})
    # 1.5e-3 / 2e-4 = 7.5x, inside the band; 2x grids put it in 3.75x-15x, across 5x; 1.5x grids would clear it
    assert result["verdict"] == claims.INCONCLUSIVE
    assert "neighbours at most 1.5x apart" in result["why"] and "straddles 5x" in result["why"]
    far = select_runs([], _grid(make_config, "lora", {64: 0.05, 128: 0.04, 256: 0.05}) + full)
    result = claims.lr_ratio(None, None, {"_rates": far, "method_label": "lora-r16", "low": 5, "high": 20})
    assert result["verdict"] == claims.FAILS  # 0.064 / 2e-4 = 320x: outside 5-20x whatever the grids


def test_the_search_sweep_adds_the_rate_an_edge_needs_and_runs_rates_before_methods(tmp_path, cache_dir):
    cmd = [
        sys.executable, "-m", "harness", "+sweeps=lr_search", "hydra/launcher=forked", *FAST,
        f"results_dir={tmp_path / 'results'}", f"report_dir={tmp_path / 'reports'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", f"cache_dir={cache_dir}", "train.precision=auto",
        "method=lora,full", "train.learning_rate_scale=1,4", "hydra.sweeper.max_extensions=1",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    # the rate axis outermost: both methods at scale 1 before either at scale 4
    order = [line.split("#", 1)[1].split(":", 1)[1].split()[:2] for line in log.splitlines() if "] \t#" in line]
    scale = "train.learning_rate_scale"
    assert order[:4] == [[f"{scale}=1", "method=lora"], [f"{scale}=1", "method=full"],
                         [f"{scale}=4", "method=lora"], [f"{scale}=4", "method=full"]]  # fmt: skip
    records = load_records(tmp_path / "results")
    assert all(r["config"]["eval"]["validation_only"] and "score" not in r["metrics"] for r in records)
    declared = [r for r in records if r["config"]["train"]["learning_rate_scale"] in (1, 4)]
    expected = sorted(rate for c in choices(declared).values() for rate in c.rates_to_add())
    added = sorted(r["run"]["learning_rate"] for r in records if r not in declared)
    assert added == pytest.approx(expected)
    assert ("[lr search]" in log) == bool(expected)
    assert (tmp_path / "reports" / "report.md").read_text().count("Learning-rate search") >= 1
    # run again: every job is done, and only what the records still need is added (a resumed search extends)
    still = sum(len(c.rates_to_add()) for c in choices(records).values())
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and len(load_records(tmp_path / "results")) == len(records) + still


def test_the_tradeoff_sweep_searches_each_method_then_runs_it_at_its_chosen_rate(tmp_path, cache_dir):
    """sweeps/tradeoff.yaml at the full profile: search jobs first (validation only), then the sweep's own jobs at
    each method's chosen rate, scored on the test examples; the report says the rates were tuned."""
    cmd = [
        sys.executable, "-m", "harness", "+sweeps=tradeoff", "hydra/launcher=forked", *FAST,
        f"results_dir={tmp_path / 'results'}", f"report_dir={tmp_path / 'reports'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", f"cache_dir={cache_dir}", "eval.latency_prompts=0",
        "eval.forgetting_chunks=0", "method=lora,full", "hydra.sweeper.search_scales=[1,4]",
        "hydra.sweeper.max_extensions=1",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    records = load_records(tmp_path / "results")
    search = [r for r in records if r["config"]["eval"]["validation_only"]]
    scored = [r for r in records if not r["config"]["eval"]["validation_only"]]
    assert len(search) >= 4 and all("score" not in r["metrics"] for r in search)
    found = choices(records)
    for record in scored:  # each scored job at its method's chosen rate, or not run when none was chosen
        choice = found[search_group(record["config"])]
        assert choice.chosen is not None and record["run"]["learning_rate"] == pytest.approx(choice.chosen)
        assert "exact_match" in record["metrics"]["score"]
    not_run = [c for c in found.values() if c.chosen is None]
    assert len(scored) + len(not_run) == 2
    assert log.count("not run, no rate chosen") == len(not_run)
    report = (tmp_path / "reports" / "report.md").read_text()
    if scored:
        assert "## Learning rates: each method at its own" in report and "Learning rates not tuned" not in report
    # profile=cpu_quick (make sweep without a GPU) searches nothing: the jobs run at their config's rates
    quick_cmd = [*cmd[:-2], "profile=cpu_quick", f"results_dir={tmp_path / 'quick'}", f"hydra.sweep.dir={tmp_path}/q"]
    quick = subprocess.run(quick_cmd, capture_output=True, text=True, timeout=900)
    assert quick.returncode == 0 and "no learning-rate search: profile cpu_quick" in quick.stdout + quick.stderr
    quick_records = load_records(tmp_path / "quick")
    assert not any(r["config"]["eval"]["validation_only"] for r in quick_records)
    # and extends nothing: its one rate per method is no grid (it once ran every job again at half its rate)
    assert "rate(s) added" not in quick.stdout + quick.stderr
    assert len(quick_records) == 2 and {r["config"]["train"]["learning_rate_scale"] for r in quick_records} == {1.0}


def _budget_record(tmp_path, method: str, steps: int, scale: float, *, loss: float, outcomes=None) -> dict:
    """A record of the pair (full FT, LoRA r16) at a budget and rate: a search job's (validation loss only) or,
    with outcomes (exact match per test example), a test-scored run with its per-example file."""
    label = {"full": "full", "lora": "lora-r16"}[method]
    stem = f"{label}-{steps}-{scale}-{'test' if outcomes else 'search'}"
    config = {
        "method": {"name": method, "learning_rate": 5e-5 if method == "full" else 5e-4, "r": 16},
        "train": {"seed": 0, "max_steps": steps, "learning_rate_scale": scale},
        "eval": {"validation_only": outcomes is None},
    }
    record = {
        "status": "ok",
        "config": config,
        "run": {"id": stem, "method_label": label, "optimizer_steps": steps, "finished_at": f"2026-12-07T{steps:04d}"},
        "metrics": {"eval_loss": loss},
        "_path": str(tmp_path / f"{stem}.json"),
    }
    if outcomes is not None:
        rows = [{"id": i, "prompt_sha": f"p{i}", "unseen_phrasing": None, "exact_match": bool(o),
                 "field_accuracy": float(o)} for i, o in enumerate(outcomes)]  # fmt: skip
        (tmp_path / f"{stem}.examples.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        record["run"]["examples_log"] = f"{stem}.examples.jsonl"
        record["metrics"]["score"] = {"exact_match": sum(outcomes) / len(outcomes)}
    return record


def test_the_longer_training_section_compares_the_gap_at_each_budgets_own_chosen_rate(tmp_path):
    """Item 4: tuned full FT and LoRA r16 at two budgets, each at the rate its own search chose there; the
    change in the gap is estimated example by example. A run off its budget's chosen rate is not compared."""
    from harness.report.conditions import split_by_conditions
    from harness.report.longer_training import longer_training_section

    n = 200
    records = []
    for method, steps, best in (("full", 60, 4.0), ("lora", 60, 8.0), ("full", 240, 2.0), ("lora", 240, 4.0)):
        for scale in (best / 2, best, best * 2):  # a 3-rate grid with its best inside
            records.append(_budget_record(tmp_path, method, steps, scale, loss=0.02 if scale == best else 0.03))
    # at 60 steps full FT gets 60 % right and LoRA 40 %: a 20-point gap; at 240 steps both get 60 %
    records += [
        _budget_record(tmp_path, "full", 60, 4.0, loss=0.02, outcomes=[1] * 120 + [0] * 80),
        _budget_record(tmp_path, "lora", 60, 8.0, loss=0.02, outcomes=[1] * 80 + [0] * 120),
        _budget_record(tmp_path, "full", 240, 2.0, loss=0.02, outcomes=[1] * 120 + [0] * 80),
        _budget_record(tmp_path, "lora", 240, 4.0, loss=0.02, outcomes=[1] * 120 + [0] * 80),
    ]
    table, note = longer_training_section(records)
    assert list(table["training budget (optimizer steps)"]) == [60, 240]
    assert list(table["full FT rate"]) == ["0.0002", "0.0001"] and list(table["LoRA r16 rate"]) == ["0.004", "0.002"]
    assert list(table["gap (points, 95 %)"].str.split(" ").str[0]) == ["+20.0", "+0.0"]
    assert "60 -> 240 steps: -20.0 points" in note and "shrinks with more training" in note

    # the same outcomes at both budgets: no change
    same = [r for r in records if not (r["run"]["method_label"] == "lora-r16" and r["run"]["optimizer_steps"] == 240
                                       and "score" in r["metrics"])]  # fmt: skip
    same.append(_budget_record(tmp_path, "lora", 240, 4.0, loss=0.02, outcomes=[1] * 80 + [0] * 120))
    assert "no change in the gap detected" in longer_training_section(same)[1]

    # LoRA at 240 steps off its chosen rate (8 instead of 4): one budget left, no section
    off = [r for r in records if not (r["run"]["method_label"] == "lora-r16" and r["run"]["optimizer_steps"] == 240
                                      and "score" in r["metrics"])]  # fmt: skip
    off.append(_budget_record(tmp_path, "lora", 240, 8.0, loss=0.02, outcomes=[1] * n))
    assert longer_training_section(off) is None

    # the trade-off report's main comparison stays with the budget most runs share, however new the other one's
    scored = [r for r in records if "score" in r["metrics"]] + [
        _budget_record(tmp_path, "full", 60, 4.0, loss=0.02, outcomes=[1] * n) | {"_extra": 1}
    ]
    kept, left_out = split_by_conditions(scored)
    assert {r["run"]["optimizer_steps"] for r in kept} == {60} and "2 record(s)" in left_out
