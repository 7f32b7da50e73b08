"""The paired error of a score gap, checked where the answer is known: simulated per-example outcomes of two
methods with a known true gap (over new test examples and new training seeds)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from harness.report import claims, comparisons, paired
from harness.report.frames import plain_methods, variants_frame


def _phi(x):
    """The standard normal CDF, of an array or a number."""
    if np.isscalar(x):
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))
    return torch.special.ndtr(torch.from_numpy(np.asarray(x, dtype=float))).numpy()


def _simulate(rng, *, n: int, seeds: int, seed_sd: float, agreement: float, gap_shift: float = 0.25):
    """Per-example 0/1 outcomes of methods a and b: a shared example difficulty, a seed effect per method (half
    shared, as paired seeds share the data order), and b answering like a on `agreement` of its draws."""
    difficulty = rng.normal(0.0, 1.0, n)
    shared = rng.normal(0.0, seed_sd, seeds)
    a, b = {}, {}
    for s in range(seeds):
        shift_a = np.sqrt(0.5) * shared[s] + np.sqrt(0.5) * rng.normal(0.0, seed_sd)
        shift_b = np.sqrt(0.5) * shared[s] + np.sqrt(0.5) * rng.normal(0.0, seed_sd)
        p_a = _phi(difficulty + shift_a)
        p_b = _phi(difficulty - gap_shift + shift_b)
        u = rng.uniform(size=n)
        u_b = np.where(rng.uniform(size=n) < agreement, u, rng.uniform(size=n))
        a[s], b[s] = (u < p_a).astype(float), (u_b < p_b).astype(float)
    return a, b


def _true_gap(seed_sd: float, gap_shift: float = 0.25) -> float:
    """E[p_a - p_b] over examples and seeds: the seed shift per method is N(0, seed_sd^2), so a probit of a
    N(0, 1) difficulty plus it is Phi(mu / sqrt(1 + 1 + seed_sd^2))."""
    scale = np.sqrt(2.0 + seed_sd**2)
    return float(_phi(0.0 / scale) - _phi(-gap_shift / scale))


def _coverage(*, seeds: int, seed_sd: float, pairing: bool, replicates: int = 1000) -> tuple[float, float, float]:
    rng = np.random.default_rng(20261202)
    truth = _true_gap(seed_sd)
    hits, widths, unpaired_widths = 0, [], []
    for _ in range(replicates):
        a, b = _simulate(rng, n=400, seeds=seeds, seed_sd=seed_sd, agreement=0.9)
        if not pairing:  # the pairing dropped: b's outcomes no longer line up with a's examples
            b = {s: rng.permutation(v) for s, v in b.items()}
        g = paired.paired_gap(a, b)
        low, high = g.interval()
        hits += low <= truth <= high
        widths.append(g.se)
        unpaired_widths.append(g.unpaired_se)
    return hits / replicates, float(np.mean(widths)), float(np.mean(unpaired_widths))


@pytest.mark.parametrize("seeds,seed_sd", [(1, 0.0), (3, 0.15)])
def test_the_95_percent_interval_covers_the_true_gap_about_95_percent_of_the_time(seeds, seed_sd):
    coverage, se, unpaired_se = _coverage(seeds=seeds, seed_sd=seed_sd, pairing=True)
    assert 0.925 <= coverage <= 0.975, coverage
    # the methods agree on most examples: the paired error is far narrower than the unpaired one
    assert se < 0.6 * unpaired_se, (se, unpaired_se)


def test_without_the_pairing_the_same_interval_misses_its_coverage():
    """Scores shuffled across examples: the estimator no longer sees the agreement, its interval is the wide
    unpaired one, and the covariance it assumed is gone, so the check above fails (it over-covers)."""
    coverage_paired, se_paired, _ = _coverage(seeds=1, seed_sd=0.0, pairing=True, replicates=300)
    coverage_dropped, se_dropped, _ = _coverage(seeds=1, seed_sd=0.0, pairing=False, replicates=300)
    assert se_dropped > 1.6 * se_paired
    assert coverage_dropped > 0.975 >= coverage_paired


def test_seed_variance_is_in_the_error_when_seeds_are_paired():
    """The same examples, a seed effect that moves every example: with three seeds the error includes it, and is
    wider than the error over examples alone of one seed pair."""
    rng = np.random.default_rng(0)
    a, b = _simulate(rng, n=400, seeds=3, seed_sd=0.6, agreement=0.9)
    three = paired.paired_gap(a, b)
    one = paired.paired_gap({0: a[0]}, {0: b[0]})
    assert three.seed_variance_included and not one.seed_variance_included
    assert three.seeds == (0, 1, 2) and one.seeds == (0,)
    d = np.array([a[s] - b[s] for s in range(3)])
    seed_part = np.var(d.mean(axis=1), ddof=1) / 3
    assert three.se**2 >= seed_part * 0.9


def test_t_quantile():
    # Student's t table: 12.706 (1 df), 4.303 (2), 2.228 (10), 1.966 (399)
    for df, expected in ((1, 12.706), (2, 4.303), (10, 2.228), (399, 1.966)):
        assert paired.t_quantile(0.975, df) == pytest.approx(expected, abs=2e-3)


def test_mcnemar_and_the_relative_gap():
    a = {0: np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 1], dtype=float)}
    b = {0: np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1], dtype=float)}
    g = paired.paired_gap(a, b)
    assert g.gap == pytest.approx(0.2) and g.a_mean == pytest.approx(0.8)
    assert g.rel_gap_pct == pytest.approx(25.0)
    # 2 discordant examples, both for a: two-sided exact p = 2 * 0.5^2
    assert g.mcnemar_p == pytest.approx(0.5)
    assert paired.mcnemar_exact(np.ones(5), np.ones(5)) == 1.0
    with pytest.raises(ValueError, match="not the same examples"):
        paired.paired_gap(a, {0: np.ones(9)})


def test_methods_pair_on_the_seeds_they_share_and_compare_seed_means_only_without_one():
    rng = np.random.default_rng(1)
    a, b = _simulate(rng, n=200, seeds=3, seed_sd=0.1, agreement=0.9)
    # a ran seeds 0-2, b seed 0: paired on seed 0 alone, not a's seed mean against b's one seed
    g = paired.paired_gap(a, {0: b[0]})
    assert g.seeds == (0,) and not g.seed_variance_included and g.mcnemar_p is not None
    assert g.a_mean == pytest.approx(a[0].mean()) and g.gap == pytest.approx(a[0].mean() - b[0].mean())
    # no seed in common: each method's seed mean per example
    g = paired.paired_gap({1: a[1], 2: a[2]}, {0: b[0]})
    assert g.seeds == () and not g.seed_variance_included and g.mcnemar_p is None
    assert g.a_mean == pytest.approx(np.mean([a[1], a[2]]))


# ------------------------------------------------------------------ the claims read the paired gaps


def _examples(outcomes: dict[str, dict[int, np.ndarray]]) -> pd.DataFrame:
    rows = []
    for label, seeds in outcomes.items():
        for seed, hits in seeds.items():
            for i, hit in enumerate(hits):
                rows.append({"label": label, "seed": seed, "id": i, "prompt_sha": f"p{i}", "unseen_phrasing": False,
                             "exact_match": float(hit), "field_accuracy": 0.5 + 0.5 * float(hit)})  # fmt: skip
    return pd.DataFrame(rows)


def _variants(labels: dict[str, dict]) -> pd.DataFrame:
    rows = [{"label": label, "seed": 0, "status": "ok", "n_test": 400, "r": 16, "quant_type": None,
             "double_quant": None, "profile": "full", "device": "cpu", **fields}
            for label, fields in labels.items()]  # fmt: skip
    return variants_frame(pd.DataFrame(rows))


def test_a_gap_too_small_for_unpaired_errors_is_decided_paired():
    """Full FT right on 320 of 400 examples, LoRA on the same ones but 4: a 1.25 % relative gap. Unpaired, two
    standard errors are ~7 % and the 5 % claim stays inconclusive; paired, the 95 % interval fits the band."""
    full = np.zeros(400)
    full[:320] = 1
    lora = full.copy()
    lora[:4] = 0
    examples = _examples({"full": {0: full}, "lora-r16": {0: lora}})
    variants = _variants({"full": {"method": "full", "score": 0.80, "field_acc": 0.9},
                          "lora-r16": {"method": "lora", "score": 0.79, "field_acc": 0.895}})  # fmt: skip
    quality = comparisons.QualityEvidence(
        comparisons.comparisons(examples, variants), (), "60 steps", (), ("full", "lora-r16")
    )
    runs = variants.assign(losses=[[], []], forgetting_delta=None)
    unpaired = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5})
    assert unpaired["verdict"] == claims.INCONCLUSIVE and "not paired" in unpaired["why"]
    decided = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5, "_quality": quality})
    assert decided["verdict"] == claims.HOLDS, decided
    assert "exact match: +1.2 %" in decided["measured"] and "field accuracy" in decided["measured"]
    assert "at 60 steps" in decided["why"] and "levelled off" in decided["why"]
    # a method still improving at the end is named: the gap holds at this budget only
    improving = dataclasses.replace(quality, still_improving=("lora-r16",))
    result = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5, "_quality": improving})
    assert "still improving at the end: lora-r16" in result["why"]
    # records without a learning curve: the claim says it does not know
    unknown = dataclasses.replace(quality, with_curve=())
    result = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5, "_quality": unknown})
    assert "no learning curve for full, lora-r16" in result["why"] and "levelled off" not in result["why"]


def test_a_large_paired_gap_does_not_hold_and_examples_of_other_prompts_are_not_paired():
    full = np.zeros(400)
    full[:320] = 1
    lora = full.copy()
    lora[:80] = 0  # 25 % below
    examples = _examples({"full": {0: full}, "lora-r16": {0: lora}})
    variants = _variants({"full": {"method": "full", "score": 0.80, "field_acc": 0.9},
                          "lora-r16": {"method": "lora", "score": 0.60, "field_acc": 0.8}})  # fmt: skip
    quality = comparisons.QualityEvidence(comparisons.comparisons(examples, variants), (), "60 steps", ())
    runs = variants.assign(losses=[[], []], forgetting_delta=None)
    result = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5, "_quality": quality})
    assert result["verdict"] == claims.FAILS
    other = examples.copy()
    other.loc[(other["label"] == "lora-r16") & (other["id"] == 3), "prompt_sha"] = "another prompt"
    with pytest.raises(ValueError, match="different prompts"):
        comparisons.comparisons(other, variants)


def test_the_comparisons_a_tradeoff_sweep_makes():
    variants = _variants({
        "full": {"method": "full", "score": 0.8}, "lora-r8": {"method": "lora", "r": 8, "score": 0.7},
        "lora-r16": {"method": "lora", "r": 16, "score": 0.7},
        "qlora-nf4-r16": {"method": "qlora", "quant_type": "nf4", "double_quant": False, "score": 0.7},
        "qlora-fp4-r16": {"method": "qlora", "quant_type": "fp4", "double_quant": False, "score": 0.7},
        "qlora-nf4-dq-r16": {"method": "qlora", "quant_type": "nf4", "double_quant": True, "score": 0.7},
    })  # fmt: skip
    pairs = {(what, a, b) for what, a, b in comparisons.comparison_pairs(variants)}
    assert ("below full FT", "full", "qlora-fp4-r16") in pairs
    assert ("gain from a higher rank", "lora-r16", "lora-r8") in pairs
    assert ("nf4 minus fp4", "qlora-nf4-r16", "qlora-fp4-r16") in pairs
    assert ("double quantisation minus none", "qlora-nf4-dq-r16", "qlora-nf4-r16") in pairs
    assert ("LoRA minus QLoRA (the 4-bit base)", "lora-r16", "qlora-nf4-r16") in pairs
    assert len(pairs) == 5 + 1 + 1 + 1 + 1


@pytest.mark.parametrize(("better_on", "worse_on", "verdict"),
                         [(20, 0, claims.HOLDS), (0, 0, claims.FAILS), (10, 6, claims.INCONCLUSIVE)])  # fmt: skip
def test_raising_the_rank_above_8_is_judged_on_its_paired_gain(better_on, worse_on, verdict):
    """r16 right on `better_on` examples r8 missed, wrong on `worse_on` it got: 5 points is a gain (holds); no
    difference cannot be worth 2 points (does not hold); +10/-6 (1 point ± 2) could be either (inconclusive)."""
    r8 = np.zeros(400)
    r8[:200] = 1
    r16 = r8.copy()
    r16[200 : 200 + better_on] = 1
    r16[:worse_on] = 0
    better_on -= worse_on
    examples = _examples({"lora-r8": {0: r8}, "lora-r16": {0: r16}})
    variants = _variants({"lora-r8": {"method": "lora", "r": 8, "score": 0.5},
                          "lora-r16": {"method": "lora", "r": 16, "score": r16.mean()}})  # fmt: skip
    quality = comparisons.QualityEvidence(comparisons.comparisons(examples, variants), (), "60 steps", ())
    runs = variants.assign(losses=[[], []], forgetting_delta=None)
    result = claims.rank_quality(runs, variants, {"min_gain_points": 2, "_quality": quality})
    assert result["verdict"] == verdict, result
    assert f"r8 -> r16: {100 * better_on / 400:+.1f}" in result["measured"]
    assert "(over test examples only, no seed variance)" in result["measured"]  # one seed each


def _seeded(base: np.ndarray, flips: dict[int, int], rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Per seed, `base` with `flips[seed]` of its misses turned into hits at random (a method's seeds agree on most
    examples, as real ones do)."""
    out = {}
    for seed, n in flips.items():
        hits = base.copy()
        hits[rng.choice(np.flatnonzero(hits == 0), n, replace=False)] = 1
        out[seed] = hits
    return out


def test_a_lora_variant_is_compared_with_plain_lora_of_its_rank_and_base_only():
    """DoRA at r16 against LoRA r16, QDoRA against QLoRA nf4 of its rank: never against full FT, never in the rank
    steps, nf4 against fp4 or LoRA minus QLoRA, so a variant cannot stand for LoRA in the documents' claims."""
    variants = _variants({
        "full": {"method": "full", "score": 0.8},
        "lora-r8": {"method": "lora", "r": 8, "score": 0.6}, "lora-r16": {"method": "lora", "score": 0.7},
        "dora-r16": {"method": "lora", "adapter_variant": "dora", "score": 0.72},
        "pissa-r16": {"method": "lora", "adapter_variant": "pissa", "score": 0.71},
        "qlora-nf4-r16": {"method": "qlora", "quant_type": "nf4", "double_quant": False, "score": 0.6},
        "qlora-fp4-r16": {"method": "qlora", "quant_type": "fp4", "double_quant": False, "score": 0.5},
        "qdora-nf4-r16": {"method": "qlora", "quant_type": "nf4", "double_quant": False,
                          "adapter_variant": "dora", "score": 0.62},
    })  # fmt: skip
    pairs = comparisons.comparison_pairs(variants)
    variant_pairs = {(a, b) for what, a, b in pairs if what == comparisons.VARIANT_VS_PLAIN}
    assert variant_pairs == {("dora-r16", "lora-r16"), ("pissa-r16", "lora-r16"), ("qdora-nf4-r16", "qlora-nf4-r16")}
    others = {label for what, a, b in pairs if what != comparisons.VARIANT_VS_PLAIN for label in (a, b)}
    assert not others & {"dora-r16", "pissa-r16", "qdora-nf4-r16"}
    assert list(plain_methods(variants)["label"]) == [
        "full", "lora-r8", "lora-r16", "qlora-fp4-r16", "qlora-nf4-r16"
    ]  # fmt: skip
    # each variant sorts right after its plain method
    assert list(variants["label"]).index("dora-r16") == list(variants["label"]).index("lora-r16") + 1


@pytest.mark.parametrize(
    "dora_flips, lora_flips, expect, verdict",
    [
        ({0: 40, 1: 44, 2: 38}, {0: 0, 1: 3, 2: 1}, "gain", claims.HOLDS),  # ~+10 points, seeds agree
        ({0: 12, 1: 14, 2: 11}, {0: 0, 1: 3, 2: 1}, "gain", claims.PARTLY),  # ~+3, above 0, below 5 claimed
        ({0: 1, 1: 3, 2: 2}, {0: 0, 1: 3, 2: 1}, "gain", claims.FAILS),  # ~0: cannot reach the 5 claimed
        ({0: 1, 1: 3, 2: 2}, {0: 0, 1: 3, 2: 1}, "tie", claims.HOLDS),
        ({0: 40, 1: 44, 2: 38}, {0: 0, 1: 3, 2: 1}, "tie", claims.FAILS),
    ],
)
def test_a_variant_claim_is_decided_on_its_paired_gap_with_the_seeds_variance(
    dora_flips, lora_flips, expect, verdict
) -> None:
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.5).astype(float)
    examples = _examples({"lora-r16": _seeded(base, lora_flips, rng), "dora-r16": _seeded(base, dora_flips, rng)})
    variants = _variants({"lora-r16": {"method": "lora", "score": 0.5, "field_acc": 0.75},
                          "dora-r16": {"method": "lora", "adapter_variant": "dora", "score": 0.55,
                                       "field_acc": 0.77}})  # fmt: skip
    quality = comparisons.QualityEvidence(
        comparisons.comparisons(examples, variants), (), "60 steps", (), ("lora-r16", "dora-r16")
    )
    runs = variants.assign(losses=[[], []], forgetting_delta=None)
    params = {"variant": "dora", "expect": expect, "min_gain_points": 5, "tie_points": 2, "_quality": quality}
    result = claims.variant_gap(runs, variants, params)
    assert result["verdict"] == verdict, result
    assert "dora-r16 - lora-r16 exact match" in result["measured"] and "field accuracy" in result["measured"]
    # two seeds whose gaps differ a lot: inconclusive, and the why asks for seeds, naming the df
    wide = {0: 10, 1: 90}
    two = _examples({"lora-r16": _seeded(base, {0: 0, 1: 1}, rng), "dora-r16": _seeded(base, wide, rng)})
    quality2 = dataclasses.replace(quality, table=comparisons.comparisons(two, variants))
    result2 = claims.variant_gap(runs, variants, {**params, "_quality": quality2})
    assert result2["verdict"] == claims.INCONCLUSIVE, result2
    assert "missing: more seeds: the seeds' variance is estimated from seeds 0,1 (t with" in result2["why"]
    # one seed each: the gap's error leaves the seeds' variance out, so nothing is decided
    one = examples[examples["seed"] == 0]
    quality = dataclasses.replace(quality, table=comparisons.comparisons(one, variants))
    result = claims.variant_gap(runs, variants, {**params, "_quality": quality})
    assert result["verdict"] == claims.INCONCLUSIVE and "two or more seeds of dora-r16" in result["why"]
    if verdict != claims.INCONCLUSIVE:  # nor is any metric's: each reads as one seed's, not the rule's verdict
        assert result["measured"].count("(inconclusive; seeds 0, no seed variance)") == 2, result["measured"]
    # no DoRA run: not testable; no per-example results: inconclusive, saying so
    plain = plain_methods(variants)
    assert claims.variant_gap(runs, plain, params)["verdict"] == claims.UNTESTABLE
    empty = dataclasses.replace(quality, table=pd.DataFrame())
    result = claims.variant_gap(runs, variants, {**params, "_quality": empty})
    assert result["verdict"] == claims.INCONCLUSIVE and "per-example results of dora" in result["why"]


def test_a_gap_too_wide_for_want_of_seeds_asks_for_seeds_and_names_the_df():
    """Two seeds each whose gaps differ a lot: the seeds' variance has one degree of freedom (t = 12.7), the
    interval is far wider than the band, and the claim asks for more seeds, not more test examples."""
    rng = np.random.default_rng(1)
    base = (rng.random(400) < 0.3).astype(float)
    examples = _examples({"full": _seeded(base, {0: 40, 1: 120}, rng), "lora-r16": _seeded(base, {0: 0, 1: 1}, rng)})
    variants = _variants({"full": {"method": "full", "score": 0.5, "field_acc": 0.75},
                          "lora-r16": {"method": "lora", "score": 0.3, "field_acc": 0.65}})  # fmt: skip
    table = comparisons.comparisons(examples, variants)
    assert (table["df"] < 2).all() and table["seed_variance"].all()
    quality = comparisons.QualityEvidence(table, (), "60 steps", (), ("full", "lora-r16"))
    runs = variants.assign(losses=[[], []], forgetting_delta=None)
    result = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5, "_quality": quality})
    assert result["verdict"] == claims.INCONCLUSIVE
    assert "more seeds: the seeds' variance is estimated from seeds 0,1 (t with 1.0 df)" in result["why"], result
    assert "t df" in comparisons.comparisons_table(table)


def test_a_gap_claim_decided_both_ways_partly_holds_and_names_what_stays_undecided():
    """LoRA r64 scores as full FT on every example (holds), r4 nothing (does not hold), r16's gap moves a lot from
    seed to seed (undecided for want of seeds): the claim partly holds, whatever r16 turns out to be, and the why
    says which cells stay undecided and what they need."""
    rng = np.random.default_rng(1)
    base = (rng.random(400) < 0.3).astype(float)
    full = _seeded(base, {0: 40, 1: 120}, rng)
    examples = _examples({"full": full, "lora-r16": _seeded(base, {0: 0, 1: 1}, rng),
                          "lora-r64": {s: hits.copy() for s, hits in full.items()},
                          "lora-r4": {s: np.zeros(400) for s in full}})  # fmt: skip
    variants = _variants({"full": {"method": "full", "score": 0.5, "field_acc": 0.75},
                          "lora-r4": {"method": "lora", "r": 4, "score": 0.0, "field_acc": 0.5},
                          "lora-r16": {"method": "lora", "score": 0.3, "field_acc": 0.65},
                          "lora-r64": {"method": "lora", "r": 64, "score": 0.5, "field_acc": 0.75}})  # fmt: skip
    quality = comparisons.QualityEvidence(
        comparisons.comparisons(examples, variants), (), "60 steps", (), tuple(variants["label"])
    )
    runs = variants.assign(losses=[[]] * len(variants), forgetting_delta=None)
    result = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5, "_quality": quality})
    assert result["verdict"] == claims.PARTLY, result
    assert "lora-r64 exact match: +0.0 % ± 0.0 (holds" in result["measured"], result["measured"]
    assert "lora-r4 exact match: +100.0 %" in result["measured"] and "(does not hold" in result["measured"]
    assert "Undecided, for want of more seeds" in result["why"] and "lora-r16 exact match" in result["why"], result
    # without the cell that holds, the rest is not decided both ways: inconclusive, with r16 named as missing
    fails_only = variants[variants["label"] != "lora-r64"]
    result = claims.score_gap(runs, fails_only, {"method": "lora", "max_gap_pct": 5, "_quality": quality})
    assert result["verdict"] == claims.INCONCLUSIVE and "missing: more seeds" in result["why"], result


def test_a_one_seed_pick_states_how_far_seeds_moved_where_a_method_ran_several():
    from harness.report import summary

    one_each = pd.DataFrame({"label": ["full", "lora-r16"], "n_seeds": [1, 1], "score_std": [np.nan, np.nan]})
    assert summary._seed_spread(one_each) == ""
    full_twice = one_each.assign(n_seeds=[2, 1], score_std=[0.12, np.nan])
    text = summary._seed_spread(full_twice)
    assert "full 12.0 points (2 seeds)" in text and "lora-r16" not in text


def test_an_undecided_pick_names_the_seeds_that_would_decide_where_the_seeds_carry_the_error():
    from harness.report import summary

    three_seeds = pd.Series({"seeds": "0,1,2", "seed_variance": True, "df": 2.1, "a score": 0.565})
    # full FT minus LoRA r16 in the CPU evidence: +13.5 ± 17.1 points, 2.8 points of tolerance
    text = summary._what_would_decide(13.5, 17.1, three_seeds)
    assert "not more test examples" in text and "about 5 seeds of each" in text, text
    # a gap sitting on the tolerance line: no number of seeds takes its interval off it
    assert "even 30 seeds would not" in summary._what_would_decide(2.9, 17.1, three_seeds)
    # one seed: its error is over the test examples only, and says nothing of the seeds
    one_seed = three_seeds.copy()
    one_seed["seeds"], one_seed["seed_variance"], one_seed["df"] = "0", False, 399.0
    assert summary._what_would_decide(5.0, 6.0, one_seed) == "More seeds or test examples would decide"


def test_once_seeds_measurably_move_the_gaps_a_one_seed_gap_decides_nothing():
    """Full FT and LoRA r16 ran two seeds each and their gap moved a lot between them; LoRA r4 ran one seed and
    scored nothing. Its one-seed interval is over test examples only: narrow, and blind to the seeds' spread the
    records measure. So neither the gap claim nor the summary takes a side on it; without the two-seed runs (no
    seed variance measured anywhere) the same one-seed gap decides, as before."""
    from harness.report.lr_report import RateSelection
    from harness.report.summary import first_screen

    rng = np.random.default_rng(1)
    base = (rng.random(400) < 0.3).astype(float)
    outcomes = {"full": _seeded(base, {0: 120, 1: 200}, rng), "lora-r16": _seeded(base, {0: 0, 1: 120}, rng),
                "lora-r4": {0: np.zeros(400)}}  # fmt: skip
    variants = _variants({"full": {"method": "full", "score": 0.7, "field_acc": 0.85},
                          "lora-r4": {"method": "lora", "r": 4, "score": 0.0, "field_acc": 0.5},
                          "lora-r16": {"method": "lora", "score": 0.45, "field_acc": 0.7}})  # fmt: skip
    runs = variants.assign(losses=[[]] * len(variants), forgetting_delta=None)
    decision = pd.DataFrame({"method": ["full", "lora-r4", "lora-r16"], "peak GiB": [3.9, 1.7, 1.8],
                             "peak from": ["predicted (not calibrated)"] * 3})  # fmt: skip
    rates = RateSelection([], True, {}, {})

    def evidence(labels: list[str]) -> comparisons.QualityEvidence:
        table = comparisons.comparisons(_examples({k: outcomes[k] for k in labels}), variants)
        return comparisons.QualityEvidence(table, (), "60 steps", (), tuple(labels))

    quality = evidence(["full", "lora-r16", "lora-r4"])
    assert quality.seed_variance_measured().startswith("full - lora-r16 ±")
    result = claims.score_gap(runs, variants, {"method": "lora", "max_gap_pct": 5, "_quality": quality})
    assert "lora-r4 exact match: +100.0 %" in result["measured"]
    assert "(inconclusive; seeds 0, no seed variance)" in result["measured"], result["measured"]
    assert result["verdict"] == claims.INCONCLUSIVE
    assert "a second seed or more of lora-r4 exact match, lora-r4 field accuracy" in result["why"], result["why"]
    screen = first_screen(variants, quality, rates, decision)
    assert screen.startswith("**No pick yet.**") and "lora-r4" in screen and "from one seed" in screen, screen
    assert "Pick full FT where it fits" not in screen
    # nothing measured the seeds' spread: the one-seed gap decides (100 % below full FT: does not hold)
    alone = evidence(["full", "lora-r4"])
    one_each = variants[variants["label"] != "lora-r16"]
    assert alone.seed_variance_measured() is None
    result = claims.score_gap(runs, one_each, {"method": "lora", "max_gap_pct": 5, "_quality": alone})
    assert result["verdict"] == claims.FAILS, result
    assert first_screen(one_each, alone, rates, decision[decision["method"] != "lora-r16"]).startswith(
        "**Pick full FT where it fits.**"
    )
