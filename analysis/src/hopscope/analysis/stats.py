"""Small-sample statistics: tests, intervals and effect sizes whose gates scale with the sample.

A window of a quiet service holds tens of calls, not thousands, so no job gates on a fixed
count ("at least 10 calls"). A gate asks instead whether the data *bound* the effect: a
confidence interval that excludes "no change", and an effect size large enough to matter. A
large effect on few observations is then reported with its (wide) interval rather than
dropped; a small effect on many observations is not promoted by its tiny p-value alone.

Everything is plain ``math`` (no numpy or scipy) or polars expressions:

- :func:`normal_sf`, :func:`two_sided_p`: the normal tail behind the z tests.
- :func:`wilson_interval`: a proportion's interval, sound at 0 of 8 and 8 of 8.
- :func:`two_proportion_test`: two error rates (pooled z, two-sided).
- :func:`rate_ratio_test`: two event counts over exposures (error logs per trace), the exact
  conditional binomial test.
- :func:`rank_test` (polars) and :func:`mann_whitney_p`: the Mann–Whitney U test between two
  windows, with Cliff's delta as its effect size (``δ = 2U / (n₁n₂) − 1``, in [−1, 1]: the
  probability that an incident value beats a baseline value minus the reverse); exact
  distribution for small samples without ties, else the tie-corrected normal approximation.
- :func:`median_interval` (polars) and :func:`median_coverage`: the distribution-free
  interval of a median from two order statistics (no assumption on the latency's shape).
- :func:`cliffs_magnitude`: Romano et al.'s thresholds (0.147 / 0.33 / 0.474) naming an
  effect negligible, small, medium or large.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Final, Literal

import polars as pl

__all__ = [
    "CONFIDENCE",
    "LARGE_DELTA",
    "MEDIUM_DELTA",
    "SMALL_DELTA",
    "cliffs_magnitude",
    "mann_whitney_p",
    "median_coverage",
    "median_interval",
    "normal_quantile",
    "normal_sf",
    "rank_test",
    "rate_ratio_test",
    "two_proportion_test",
    "two_sided_p",
    "wilson_interval",
]

# The confidence of every interval a finding states: the level people read without a footnote.
CONFIDENCE: Final = 0.95
# Cliff's delta magnitudes (Romano et al., 2006, after Cohen's d of 0.2 / 0.5 / 0.8).
SMALL_DELTA: Final = 0.147
MEDIUM_DELTA: Final = 0.33
LARGE_DELTA: Final = 0.474
# Up to this many observations in both samples together (and no ties), the U test's p-value is
# exact; beyond, the normal approximation is within a few percent of it.
EXACT_U_MAX: Final = 40
# Counts past this use the normal approximation of the conditional binomial (exact sums of
# this many terms are still instant; past it the approximation is excellent).
EXACT_BINOMIAL_MAX: Final = 20_000

Magnitude = Literal["negligible", "small", "medium", "large"]


def normal_sf(z: float) -> float:
    """The standard normal upper tail ``P(Z > z)``.

    >>> round(normal_sf(1.959964), 4), normal_sf(0.0)
    (0.025, 0.5)
    """
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_sided_p(z: float) -> float:
    """``P(|Z| ≥ |z|)``, at most 1.

    >>> round(two_sided_p(-1.959964), 3)
    0.05
    """
    return min(1.0, 2.0 * normal_sf(abs(z)))


def normal_quantile(p: float) -> float:
    """The standard normal quantile (inverse CDF), by bisection on :func:`normal_sf`.

    >>> round(normal_quantile(0.975), 4), abs(normal_quantile(0.5)) < 1e-9
    (1.96, True)
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    low, high = -40.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        if 1.0 - normal_sf(mid) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@functools.cache
def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return normal_quantile(0.5 + confidence / 2)


def wilson_interval(hits: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval of the proportion ``hits / n``.

    Unlike ``p ± z·√(p(1−p)/n)`` it stays inside [0, 1] and is not empty at 0 or n hits,
    which is where small windows live. ``n = 0`` gives the uninformative (0, 1).

    Examples:
        >>> lo, hi = wilson_interval(8, 8)
        >>> round(lo, 3), hi
        (0.676, 1.0)
        >>> [round(x, 3) for x in wilson_interval(3, 100)]
        [0.01, 0.085]
    """
    if n <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_test(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """Two-sided pooled two-proportion z test of ``hits_a/n_a`` against ``hits_b/n_b``.

    Returns the p-value; 1.0 when a group is empty or the pooled rate is 0 or 1 (no
    variation, nothing to test).

    Examples:
        >>> round(two_proportion_test(30, 100, 10, 100), 6)  # z = 3.5355
        0.000407
        >>> two_proportion_test(0, 50, 0, 60)
        1.0
    """
    z = proportion_z(hits_a, n_a, hits_b, n_b)
    return 1.0 if z is None else two_sided_p(z)


def proportion_z(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float | None:
    """The pooled two-proportion ``z`` of ``hits_a/n_a`` against ``hits_b/n_b``; None when a
    group is empty or the pooled rate is 0 or 1 (no variation, nothing to test).

    >>> round(proportion_z(30, 100, 10, 100), 4)
    3.5355
    """
    if n_a <= 0 or n_b <= 0:
        return None
    pooled = (hits_a + hits_b) / (n_a + n_b)
    if pooled <= 0.0 or pooled >= 1.0:
        return None
    return (hits_a / n_a - hits_b / n_b) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))


def _log_binomial_pmf(k: int, n: int, p: float) -> float:
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def rate_ratio_test(k_a: int, exposure_a: float, k_b: int, exposure_b: float) -> float:
    """Two-sided test that two Poisson rates (``k_a`` events over ``exposure_a``, ``k_b`` over
    ``exposure_b``) are equal: given ``k_a + k_b`` events, ``k_a`` is binomial with
    ``p = exposure_a / (exposure_a + exposure_b)`` under the null (the exact conditional test;
    the doubled smaller tail).

    Exposures are traces (or seconds) of each window, so windows of different sizes compare.

    Examples:
        >>> round(rate_ratio_test(20, 100, 0, 100), 8)  # 2 · 0.5**20
        1.91e-06
        >>> rate_ratio_test(5, 100, 5, 100)
        1.0
        >>> rate_ratio_test(0, 10, 0, 10)
        1.0
    """
    if exposure_a <= 0 or exposure_b <= 0:
        raise ValueError("exposures must be positive")
    n = k_a + k_b
    if n == 0:
        return 1.0
    p = exposure_a / (exposure_a + exposure_b)
    if n > EXACT_BINOMIAL_MAX:
        z = (k_a - n * p) / math.sqrt(n * p * (1 - p))
        return two_sided_p(z)
    pmf = [math.exp(_log_binomial_pmf(k, n, p)) for k in range(n + 1)]
    lower, upper = sum(pmf[: k_a + 1]), sum(pmf[k_a:])
    return min(1.0, 2.0 * min(lower, upper))


def rank_test(frame: pl.LazyFrame, by: Sequence[str], *, value: str = "value") -> pl.LazyFrame:
    """The Mann–Whitney U statistic and Cliff's delta of ``value`` between two windows, per
    group of ``by``: incident (``incident`` true) against baseline (false).

    Ranks are average ranks within each group (ties share their mean rank). Nulls are dropped.

    Parameters:
        frame: rows with the ``by`` columns, a Boolean ``incident`` column and ``value``.
        by: the group columns (an operation, an edge, a service...).
        value: the measure compared (a duration in ns, usually).

    Returns:
        Per group: ``n_baseline``, ``n_incident``, ``u`` (pairs where the incident value is
        larger, ties counting half), ``tie_term`` (``Σ t³ − t`` over tied values, for the
        variance) and ``cliffs_delta`` (null when a window is empty). Feed them to
        :func:`mann_whitney_p`.

    Examples:
        >>> frame = pl.LazyFrame({"op": ["a"] * 5, "incident": [False, False, True, True, True],
        ...                       "value": [1, 2, 2, 5, 6]})
        >>> rank_test(frame, ["op"]).collect().row(0)
        ('a', 2, 3, 5.5, 6, 0.8333333333333333)
    """
    keyed = frame.filter(pl.col(value).is_not_null())
    n_inc = pl.col("incident").sum()
    n_all = pl.len()
    u = pl.col("_rank").filter(pl.col("incident")).sum() - n_inc * (n_inc + 1) / 2
    return (
        keyed.with_columns(
            pl.col(value).rank("average").over(by).alias("_rank"),
            pl.len().over([*by, value]).alias("_ties"),
        )
        .group_by(by, maintain_order=True)
        .agg(
            (n_all - n_inc).cast(pl.Int64).alias("n_baseline"),
            n_inc.cast(pl.Int64).alias("n_incident"),
            u.cast(pl.Float64).alias("u"),
            # Every row of a tie group of size t adds t² − 1: t rows give t³ − t.
            (pl.col("_ties").cast(pl.Int64).pow(2) - 1).sum().alias("tie_term"),
        )
        .with_columns(
            pl.when(pl.col("n_baseline") > 0, pl.col("n_incident") > 0)
            .then(2 * pl.col("u") / (pl.col("n_baseline") * pl.col("n_incident")) - 1)
            .alias("cliffs_delta")
        )
    )


@functools.cache
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1+n2, n1) orderings give each U = 0..n1·n2 (no ties)."""
    # Classic recurrence: the largest value belongs to sample 1 (adding n2 to U) or sample 2.
    if n1 == 0 or n2 == 0:
        return (1,)
    with_first = _u_counts(n1 - 1, n2)
    with_second = _u_counts(n1, n2 - 1)
    counts = [0] * (n1 * n2 + 1)
    for u, c in enumerate(with_first):
        counts[u + n2] += c
    for u, c in enumerate(with_second):
        counts[u] += c
    return tuple(counts)


def mann_whitney_p(u: float, n1: int, n2: int, tie_term: int = 0) -> float:
    """Two-sided p-value of the Mann–Whitney U statistic (``u`` counts pairs where sample 1
    is larger). Exact when ``n1 + n2 ≤`` :data:`EXACT_U_MAX` and no value is tied; else the
    normal approximation with tie correction and a continuity correction. 1.0 when a sample
    is empty.

    Examples:
        >>> round(mann_whitney_p(64, 8, 8), 6)  # 8 calls, all slower: 2 / C(16, 8)
        0.000155
        >>> round(mann_whitney_p(32, 8, 8), 3)
        1.0
        >>> round(mann_whitney_p(5_000 + 1_300, 100, 100), 4)  # z ≈ 3.18
        0.0015
    """
    if n1 <= 0 or n2 <= 0:
        return 1.0
    if n1 + n2 <= EXACT_U_MAX and tie_term == 0 and u == int(u):
        counts = _u_counts(n1, n2)
        total = sum(counts)
        k = int(u)
        lower, upper = sum(counts[: k + 1]), sum(counts[k:])
        return min(1.0, 2.0 * min(lower, upper) / total)
    n = n1 + n2
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    excess = max(abs(u - mean) - 0.5, 0.0)
    return two_sided_p(excess / math.sqrt(variance))


def cliffs_magnitude(delta: float | None) -> Magnitude:
    """Romano's name for a Cliff's delta (by its absolute value).

    >>> [cliffs_magnitude(d) for d in (0.1, -0.2, 0.4, 0.9)]
    ['negligible', 'small', 'medium', 'large']
    """
    size = abs(delta or 0.0)
    if size >= LARGE_DELTA:
        return "large"
    if size >= MEDIUM_DELTA:
        return "medium"
    if size >= SMALL_DELTA:
        return "small"
    return "negligible"


def _median_rank(n: pl.Expr, z: float) -> pl.Expr:
    # The order statistic x_(l) bounding the median from below (1-based): l = ⌊(n − z√n)/2⌋,
    # at least 1 (with too few values the interval is the range, and its coverage says so).
    return ((n - z * n.sqrt()) / 2).floor().clip(lower_bound=1).cast(pl.Int64)


def median_interval(
    column: str | pl.Expr, confidence: float = CONFIDENCE
) -> tuple[pl.Expr, pl.Expr]:
    """The distribution-free confidence interval of a median: the order statistics
    ``x_(l)`` and ``x_(n−l+1)`` with ``l = ⌊(n − z·√n) / 2⌋`` (at least 1).

    Aggregations (one value each per group), named ``<column>_lo`` / ``<column>_hi``; nulls
    skipped. The interval's real coverage at small ``n`` is :func:`median_coverage`.

    Examples:
        >>> df = pl.DataFrame({"edge": ["a"] * 8 + ["b"] * 100,
        ...                    "ns": [580, 584, 590, 577, 600, 583, 586, 599, *range(100)]})
        >>> lo, hi = median_interval("ns")
        >>> df.group_by("edge", maintain_order=True).agg(lo, hi).rows()
        [('a', 577, 600), ('b', 39, 60)]
    """
    z = _z(confidence)
    values = (pl.col(column) if isinstance(column, str) else column).drop_nulls().sort()
    name = column if isinstance(column, str) else "value"
    n = values.len()
    low = _median_rank(n, z)
    return (
        values.get(low - 1, null_on_oob=True).alias(f"{name}_lo"),
        values.get(n - low, null_on_oob=True).alias(f"{name}_hi"),
    )


def median_coverage(n: int, confidence: float = CONFIDENCE) -> float:
    """The true coverage of :func:`median_interval` over ``n`` values: ``1 − 2·P(B < l)``
    for ``B ~ Binomial(n, ½)``. Below the asked confidence when ``n`` is too small to reach it
    (fewer than 6 values for 95 %), 0 for no value.

    >>> [round(median_coverage(n), 4) for n in (1, 5, 6, 8, 100)]
    [0.0, 0.9375, 0.9688, 0.9922, 0.9648]
    """
    if n <= 0:
        return 0.0
    z = _z(confidence)
    low = max(1, math.floor((n - z * math.sqrt(n)) / 2))
    below: float = sum(math.comb(n, k) for k in range(low)) / float(2**n)
    return max(0.0, 1.0 - 2.0 * below)
