"""Paired errors of a score gap between two methods scored on the same test examples (and training seeds).

Why paired: two methods fine-tuned from one base mostly agree on which test examples they get right, so the
difference of their scores varies far less than each score does. Treating the two scores as independent (each
binomial over its examples, combined in quadrature) gives about 3.5 points of standard error on a gap at 400
examples, wider than every quality claim's band; the same gap computed example by example is far tighter.

The estimator: D[s, i] = a[s, i] - b[s, i] for training seed s (run by both methods) and test example i. Under
the crossed random-effects model D = gap + example effect + seed effect + residual, the variance of the grand
mean is var(example)/n + var(seed)/S + var(residual)/(nS), estimated from the two-way mean squares as
(MS_example + MS_seed - MS_residual) / (nS). With one seed it is the paired-difference variance over n, the
error of the gap over test examples only (a single training seed cannot show seed-to-seed variance: the report
says so). For one seed on a 0/1 score, McNemar's exact test on the discordant examples is given too.

The relative gap (gap / a's score, as the documents state their claims) gets its error by the delta method, with
the covariance of gap and denominator estimated the same way.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedGap:
    """a's score minus b's on the same examples (and seeds), with its standard error."""

    a_mean: float
    b_mean: float
    gap: float  # a - b, in the score's units (0-1)
    se: float
    rel_gap_pct: float | None  # 100 * gap / a_mean (None where a scored 0)
    rel_se_pct: float | None
    df: float  # degrees of freedom of se (Satterthwaite); the 95 % interval is gap +- t(df) * se
    n_examples: int
    seeds: tuple[int, ...]  # the seeds both methods ran (the pairing); empty: seed means compared
    seed_variance_included: bool
    mcnemar_p: float | None  # exact two-sided, one seed and 0/1 scores only
    unpaired_se: float  # the same gap's error as if the methods had been scored on different examples

    @property
    def multiplier(self) -> float:
        """t(0.975, df): about 2 with one seed and 400 examples, more where a few seeds carry the error."""
        return t_quantile(0.975, self.df)

    @property
    def half_width(self) -> float:
        return self.multiplier * self.se

    @property
    def rel_half_width_pct(self) -> float | None:
        return None if self.rel_se_pct is None else self.multiplier * self.rel_se_pct

    def interval(self) -> tuple[float, float]:
        """The 95 % interval of the gap."""
        return self.gap - self.half_width, self.gap + self.half_width


def variance_and_df(d: np.ndarray) -> tuple[float, float]:
    """Variance of the mean of an S x n table (seeds x examples) under the crossed random-effects model, and its
    degrees of freedom (Satterthwaite): with 3 seeds the seed part is estimated from 2, and an interval of 2
    standard errors then covers the truth far less than 95 % of the time (84 % in tests/test_paired.py)."""
    s, n = d.shape
    if n < 2:
        raise ValueError(f"a paired error needs at least 2 examples, got {n}")
    if s == 1:
        return float(np.var(d[0], ddof=1) / n), float(n - 1)
    grand = d.mean()
    example_means, seed_means = d.mean(axis=0), d.mean(axis=1)
    ms_example = s * float(np.sum((example_means - grand) ** 2)) / (n - 1)
    ms_seed = n * float(np.sum((seed_means - grand) ** 2)) / (s - 1)
    residual = d - example_means[None, :] - seed_means[:, None] + grand
    ms_residual = float(np.sum(residual**2)) / ((n - 1) * (s - 1))
    total = ms_example + ms_seed - ms_residual
    if total <= ms_residual:  # each component of variance is >= 0; so is their estimate, at least the residual's
        return ms_residual / (n * s), float((n - 1) * (s - 1))
    df = total**2 / (ms_example**2 / (n - 1) + ms_seed**2 / (s - 1) + ms_residual**2 / ((n - 1) * (s - 1)))
    return total / (n * s), float(df)


def grand_mean_variance(d: np.ndarray) -> float:
    return variance_and_df(d)[0]


@functools.lru_cache(maxsize=4096)
def _t_quantile(p: float, df: float) -> float:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        grid = np.linspace(0.0, x, 801)
        density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
        h = x / 800
        return 0.5 + h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())

    low, high = 0.0, 1.0
    while cdf(high) < p:
        high *= 2
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


def seeds_to_decide(se: float, seeds: int, distance: float, df_per_seed: float = 1.0, limit: int = 1000) -> int | None:
    """The fewest seeds (more than `seeds`, at most `limit`) whose 95 % interval, t(df) x se x sqrt(seeds / m), falls
    under `distance`, were the seed-to-seed spread to stay as measured; degrees of freedom df_per_seed x (m - 1).
    None where even `limit` would not."""
    return next(
        (
            m
            for m in range(seeds + 1, limit + 1)
            if t_quantile(0.975, df_per_seed * (m - 1)) * se * math.sqrt(seeds / m) < distance
        ),
        None,
    )


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile (numpy has none, scipy is not a dependency): bisection on the CDF, integrated from
    the density with Simpson's rule; df rounded to 0.1 (cached). Accurate to about 1e-3 for df >= 1."""
    return _t_quantile(p, min(round(df, 1), 1000.0))


def _covariance(x: np.ndarray, y: np.ndarray) -> float:
    return (grand_mean_variance(x + y) - grand_mean_variance(x) - grand_mean_variance(y)) / 2


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of two 0/1 outcome vectors on the same examples."""
    only_a, only_b = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_a, only_b) + 1)) / 2**discordant
    return min(1.0, 2 * tail)


def unpaired_se(a: np.ndarray, b: np.ndarray) -> float:
    """The error of the gap if the two scores were independent (each method's own error, in quadrature): what
    the report used before per-example results, kept to show what pairing buys."""
    return math.hypot(*(math.sqrt(grand_mean_variance(x)) if x.shape[1] > 1 else 0.0 for x in (a, b)))


def paired_gap(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> PairedGap:
    """The gap a - b from per-example scores by seed ({seed: scores in example order}, both in the same order).

    Seeds run by both methods are paired, even where one method ran more: a seed mean against one seed would mix
    the seeds' spread into the gap without measuring it (tuned full FT's seeds 0 and 1 differed by 17 points of
    exact match on the CPU evidence, about three times a one-seed gap's 95 % half-width there). Only where they share no
    seed is each method's seed mean per example compared, which keeps the pairing over examples but cannot
    include seed variance."""
    lengths = {len(v) for v in (*a.values(), *b.values())}
    if len(lengths) != 1:
        raise ValueError(f"per-example scores of different lengths {sorted(lengths)}: not the same examples")
    common = tuple(sorted(set(a) & set(b)))
    if common:
        am = np.array([a[s] for s in common], dtype=float)
        bm = np.array([b[s] for s in common], dtype=float)
        seeds, with_seeds = common, len(common) > 1
    else:
        am = np.array([np.mean([a[s] for s in a], axis=0)], dtype=float)
        bm = np.array([np.mean([b[s] for s in b], axis=0)], dtype=float)
        seeds, with_seeds = (), False
    d = am - bm
    gap = float(d.mean())
    var_gap, df = variance_and_df(d)
    a_mean, b_mean = float(am.mean()), float(bm.mean())
    rel = rel_se = None
    if a_mean > 0:
        ratio = gap / a_mean
        var_a = grand_mean_variance(am)
        # delta method for gap / a: d(r) = d(gap)/a - r d(a)/a
        var_rel = (var_gap - 2 * ratio * _covariance(d, am) + ratio**2 * var_a) / a_mean**2
        rel, rel_se = 100 * ratio, 100 * math.sqrt(max(var_rel, 0.0))
    binary = bool(np.isin(am, (0.0, 1.0)).all() and np.isin(bm, (0.0, 1.0)).all())
    p = mcnemar_exact(am[0], bm[0]) if am.shape[0] == 1 and binary and seeds else None
    return PairedGap(
        a_mean=a_mean,
        b_mean=b_mean,
        gap=gap,
        se=math.sqrt(var_gap),
        rel_gap_pct=rel,
        rel_se_pct=rel_se,
        df=df,
        n_examples=d.shape[1],
        seeds=seeds,
        seed_variance_included=with_seeds,
        mcnemar_p=p,
        unpaired_se=unpaired_se(am, bm),
    )
