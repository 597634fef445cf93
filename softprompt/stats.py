"""Means with 95% confidence intervals, and paired differences: the statistics a benchmark reports.

A comparison of prompt inits over a handful of seeds needs an interval, not a bare mean: with
n seeds, the mean's 95% interval is ``mean ± t_{0.975, n-1} · s / √n`` (Student's t, s the sample
standard deviation). Two arms run on the *same* seeds (same few-shot examples, same data order)
are compared by their paired differences ``d_i = a_i - b_i``: the interval of ``mean(d)`` is
usually much narrower than either arm's, because what a seed does to both arms cancels.

No SciPy needed: the t quantile comes from the regularized incomplete beta function (a continued
fraction, Numerical Recipes §6.4) inverted by bisection; ``tests/test_stats.py`` checks it
against values SciPy computes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["mean", "sample_std", "t_cdf", "t_quantile", "mean_ci", "paired_difference"]


def mean(values: Sequence[float]) -> float:
    values = _as_floats(values, "values", 1)
    return math.fsum(values) / len(values)


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (n - 1 in the denominator); 0.0 for a single value."""
    values = _as_floats(values, "values", 1)
    if len(values) == 1:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz), Numerical Recipes §6.4."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"the incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom: ``1 - I_{df/(df+t²)}(df/2, 1/2) / 2`` for t > 0."""
    if not df > 0:
        raise ValueError(f"df={df!r} must be > 0 (degrees of freedom: n - 1 for n values).")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t value with ``t_cdf(t, df) = p`` (e.g. ``t_quantile(0.975, 4)`` = 2.776...), by bisection."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p!r} must be strictly between 0 and 1, e.g. 0.975 for a two-sided 95% interval.")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e12:
            raise ArithmeticError(f"t_quantile({p}, {df}) is beyond 1e12")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """``{"mean", "low", "high", "half_width", "std", "n", "level"}``: the t interval of the mean.

    With one value the interval is undefined: ``low``/``high``/``half_width`` are None.
    """
    values = _as_floats(values, "values", 1)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} must be strictly between 0 and 1, e.g. 0.95.")
    n, m, s = len(values), mean(values), sample_std(values)
    if n == 1:
        return {"mean": m, "low": None, "high": None, "half_width": None, "std": 0.0, "n": 1, "level": level}
    half = t_quantile(0.5 + level / 2.0, n - 1) * s / math.sqrt(n)
    return {"mean": m, "low": m - half, "high": m + half, "half_width": half, "std": s, "n": n, "level": level}


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """The mean of ``a_i - b_i`` (paired by position, e.g. by seed) with its t interval (:func:`mean_ci`).

    Adds ``wins``/``ties``/``losses``: how many pairs have a above, equal to, below b.
    """
    a, b = _as_floats(a, "a", 1), _as_floats(b, "b", 1)
    if len(a) != len(b):
        raise ValueError(f"paired samples need the same length; a has {len(a)}, b has {len(b)} (pair them by seed).")
    d = [x - y for x, y in zip(a, b)]
    return mean_ci(d, level) | {"wins": sum(x > 0 for x in d), "ties": sum(x == 0 for x in d),
                                "losses": sum(x < 0 for x in d)}


def _as_floats(values, name: str, at_least: int) -> list[float]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of numbers, not a string.")
    out = [float(v) for v in values]
    if len(out) < at_least:
        raise ValueError(f"{name} needs at least {at_least} value(s); got {len(out)}.")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} holds a non-finite value: {out}.")
    return out
