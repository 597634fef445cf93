"""Means with 95% confidence intervals, and paired differences: the statistics a benchmark reports.

A comparison of prompt inits over a handful of seeds needs an interval, not a bare mean: with
n seeds, the mean's 95% interval is ``mean ± t_{0.975, n-1} · s / √n`` (Student's t, s the sample
standard deviation). Two arms run on the *same* seeds (same few-shot examples, same data order)
are compared by their paired differences ``d_i = a_i - b_i``: the interval of ``mean(d)`` is
usually much narrower than either arm's, because what a seed does to both arms cancels.

No SciPy needed: the t quantile comes from the regularized incomplete beta function (a continued
fraction, Numerical Recipes §6.4) inverted by bisection; ``tests/test_stats.py`` checks it
against values SciPy computes.

**Two levels: source draws and target seeds** (the MPT benchmark, issue 24). When an arm's result
depends on a trained source (teachers, MPT's P*) *and* on the target seed, the seeds alone cannot
measure its uncertainty: a different draw of the sources moves every seed together. The benchmark
trains D independent draws of the sources and crosses them with the same S target seeds (seed s is the
same few-shot sample in every draw), giving a D x S table ``y[d][s]``. Two tools read it:

- :func:`two_level_bootstrap`: the mean over draws x seeds with a percentile bootstrap that resamples
  both levels: D draws with replacement, then S seeds with replacement, the *same* seeds in every
  resampled draw (the seeds are crossed with the draws, not nested in them: resampling them afresh in
  each draw would count one seed's effect D times as if independent, and make the interval too narrow).
  The mean of values in [0, 1] stays in [0, 1], so the interval does too (a t interval can pass 1.0).
  With one draw (or D identical draws) it is the ordinary seed-level bootstrap.
- :func:`variance_components`: the two-way random-effects ANOVA of the crossed table,
  ``y[d][s] = mu + a_d + b_s + e_ds``: the variance between source draws (a), between target seeds (b)
  and what is left (e: a seed's effect that changes with the draw), each estimated from its mean square
  and clipped at 0 (method of moments, e.g. Searle, Casella & McCulloch, *Variance Components*, ch. 4).
- :func:`mixed_model_t_interval`: the same model's interval for the mean, ``mean ± t_df · sqrt(V)`` with
  ``V = (MS_draws + MS_seeds - MS_residual) / (D S)`` and Satterthwaite's degrees of freedom, clipped to
  the values' range. A check on the bootstrap: with 3 draws the percentile bootstrap is optimistic (it
  cannot reach past the most extreme draw, and ignores that 3 draws estimate a variance poorly); the
  t interval with few degrees of freedom is the conservative reading.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

__all__ = ["mean", "sample_std", "t_cdf", "t_quantile", "mean_ci", "paired_difference", "two_level_bootstrap",
           "variance_components", "mixed_model_t_interval", "wilson_interval", "logit_interval", "mcnemar"]


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


def _table(values, name: str = "values") -> list[list[float]]:
    """A D x S table (draws x seeds) as floats: at least one draw and one seed, every draw the same seeds."""
    if isinstance(values, (str, bytes)) or not len(values):
        raise ValueError(f"{name} must be a non-empty list of draws, each a list of values by seed.")
    rows = [_as_floats(row, f"{name}[{d}]", 1) for d, row in enumerate(values)]
    if len({len(row) for row in rows}) != 1:
        raise ValueError(f"{name}: every draw needs the same seeds; got {[len(r) for r in rows]} values per draw "
                         "(keep the seeds every draw has).")
    return rows


def two_level_bootstrap(values: Sequence[Sequence[float]], level: float = 0.95, n_boot: int = 10_000,
                        seed: int = 0) -> dict:
    """``{"mean", "low", "high", "level", "n_draws", "n_seeds", "n", "n_boot", "method"}`` for a D x S table.

    ``values[d][s]``: the result of source draw d with target seed s (one row for an arm that uses no
    source). Each of ``n_boot`` replicates picks D draw indices and S seed indices uniformly with
    replacement (seed indices from ``random.Random(seed).choices``, draw indices from ``random.Random(seed + 1)``:
    two streams, so that with identical draws the answer equals the one-draw bootstrap's exactly) and takes
    the mean of the D x S table they select. The interval is the replicates' ``floor(B α/2)``-th and
    ``ceil(B (1 - α/2))``-th order statistics (1-based), α = 1 - level: both are means of the data, so they lie
    within its range.
    """
    rows = _table(values)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} must be strictly between 0 and 1, e.g. 0.95.")
    if n_boot < 100:
        raise ValueError(f"n_boot={n_boot!r} is too few replicates for a 95% interval; use at least 100.")
    D, S = len(rows), len(rows[0])
    seed_rng, draw_rng = random.Random(seed), random.Random(seed + 1)
    stats = []
    for _ in range(n_boot):
        seeds = seed_rng.choices(range(S), k=S)  # S seed indices, with replacement
        draws = draw_rng.choices(range(D), k=D)  # D draw indices, with replacement
        # the mean of the selected D x S table: each draw's sum over the selected seeds, summed over the draws
        row_sums = [sum(map(row.__getitem__, seeds)) for row in rows]
        stats.append(sum(map(row_sums.__getitem__, draws)) / (D * S))
    stats.sort()
    alpha = 1.0 - level
    low = stats[max(0, math.floor(n_boot * alpha / 2) - 1)]
    high = stats[min(n_boot, math.ceil(n_boot * (1 - alpha / 2))) - 1]
    return {"mean": math.fsum(map(math.fsum, rows)) / (D * S), "low": low, "high": high, "level": level,
            "n_draws": D, "n_seeds": S, "n": D * S, "n_boot": n_boot,
            "method": "two-level percentile bootstrap (draws, then the same seeds in each draw)"}


def _mean_squares(rows: list[list[float]]) -> dict:
    """The crossed two-way ANOVA's mean squares and degrees of freedom (one value per draw and seed)."""
    D, S = len(rows), len(rows[0])
    grand = math.fsum(map(math.fsum, rows)) / (D * S)
    draw_means = [math.fsum(row) / S for row in rows]
    seed_means = [math.fsum(row[s] for row in rows) / D for s in range(S)]
    ss_draws = S * math.fsum((m - grand) ** 2 for m in draw_means)
    ss_seeds = D * math.fsum((m - grand) ** 2 for m in seed_means)
    ss_resid = math.fsum((rows[d][s] - draw_means[d] - seed_means[s] + grand) ** 2 for d in range(D) for s in range(S))
    df = {"draws": D - 1, "seeds": S - 1, "residual": (D - 1) * (S - 1)}
    return {"ms": {k: (ss / df[k] if df[k] else None) for k, ss in
                   (("draws", ss_draws), ("seeds", ss_seeds), ("residual", ss_resid))},
            "df": df, "grand": grand, "draw_means": draw_means}


def variance_components(values: Sequence[Sequence[float]]) -> dict:
    """How much of the spread comes from the source draw and how much from the target seed.

    The model ``y[d][s] = mu + a_d + b_s + e_ds`` (draws crossed with seeds, one value per cell); the
    method-of-moments estimates ``draw = (MS_draws - MS_res) / S``, ``seed = (MS_seeds - MS_res) / D``,
    ``residual = MS_res``, each clipped at 0. ``within_draw = seed + residual``: the variance of one draw's
    values around its mean, what the target seed moves. With one draw the split is not estimable:
    ``draw`` is None and ``within_draw`` is the sample variance over seeds. ``share_draw``: ``draw`` over
    ``draw + within_draw`` (None if both are 0 or ``draw`` is None). ``draw_means``: each draw's mean.
    """
    rows = _table(values)
    D, S = len(rows), len(rows[0])
    a = _mean_squares(rows)
    ms = a["ms"]
    if D == 1:
        within = ms["seeds"] if S > 1 else 0.0
        return {"draw": None, "seed": None, "residual": None, "within_draw": within, "share_draw": None,
                "n_draws": 1, "n_seeds": S, "draw_means": a["draw_means"]}
    if S == 1:
        return {"draw": ms["draws"], "seed": None, "residual": None, "within_draw": None, "share_draw": None,
                "n_draws": D, "n_seeds": 1, "draw_means": a["draw_means"]}
    draw = max(0.0, (ms["draws"] - ms["residual"]) / S)
    seed = max(0.0, (ms["seeds"] - ms["residual"]) / D)
    within = seed + ms["residual"]
    total = draw + within
    return {"draw": draw, "seed": seed, "residual": ms["residual"], "within_draw": within,
            "share_draw": draw / total if total > 0 else None, "n_draws": D, "n_seeds": S,
            "draw_means": a["draw_means"]}


def mixed_model_t_interval(values: Sequence[Sequence[float]], level: float = 0.95,
                           bounds: tuple[float, float] | None = (0.0, 1.0)) -> dict:
    """The crossed random-effects model's t interval for the grand mean, clipped to ``bounds``.

    ``Var(mean) = σ²_draw / D + σ²_seed / S + σ²_res / (D S)`` is estimated by
    ``V = (MS_draws + MS_seeds - MS_res) / (D S)`` (floored at ``MS_res / (D S)``), on Satterthwaite's
    degrees of freedom ``V² / Σ (c_i MS_i)² / df_i``. One draw: the ordinary t interval over seeds
    (:func:`mean_ci`). ``clipped`` says whether an end was moved to a bound (accuracies: (0, 1); paired
    differences: (-1, 1)); ``bounds=None`` leaves the ends as computed.
    """
    rows = _table(values)
    D, S = len(rows), len(rows[0])
    if D == 1:
        ci = mean_ci(rows[0], level)
        out = {"mean": ci["mean"], "low": ci["low"], "high": ci["high"], "df": S - 1 if S > 1 else None}
    elif S == 1:
        ci = mean_ci([row[0] for row in rows], level)
        out = {"mean": ci["mean"], "low": ci["low"], "high": ci["high"], "df": D - 1}
    else:
        a = _mean_squares(rows)
        ms, df = a["ms"], a["df"]
        terms = [(ms["draws"], df["draws"]), (ms["seeds"], df["seeds"]), (-ms["residual"], df["residual"])]
        v = sum(c for c, _ in terms)
        if v <= ms["residual"]:  # the draw and seed components estimated at 0: the residual alone
            v, terms = ms["residual"], [(ms["residual"], df["residual"])]
        v /= D * S
        dof = (v * D * S) ** 2 / sum(c * c / f for c, f in terms) if v > 0 else float("inf")
        half = t_quantile(0.5 + level / 2.0, dof) * math.sqrt(v) if v > 0 else 0.0
        out = {"mean": a["grand"], "low": a["grand"] - half, "high": a["grand"] + half, "df": dof}
    clipped = False
    if bounds is not None and out["low"] is not None:
        lo, hi = max(out["low"], bounds[0]), min(out["high"], bounds[1])
        clipped = (lo, hi) != (out["low"], out["high"])
        out["low"], out["high"] = lo, hi
    return out | {"level": level, "n_draws": D, "n_seeds": S, "clipped": clipped,
                  "method": "crossed random-effects t interval (Satterthwaite df), clipped to the range"}



# ------------------------------------------------------------ accuracies: one, over seeds, two on the same examples
def _z(level: float) -> float:
    """The normal quantile for a two-sided ``level`` (the t quantile's limit: no SciPy needed)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} must be strictly between 0 and 1, e.g. 0.95.")
    return t_quantile(0.5 + level / 2.0, 1e7)


def wilson_interval(correct: int, n: int, level: float = 0.95) -> dict:
    """One accuracy ``correct / n`` on ``n`` examples with its Wilson score interval (Wilson 1927).

    ``p ± z sqrt(p(1-p)/n)`` (the Wald interval) can leave [0, 1] and collapses to a point at 0 or n correct;
    the Wilson interval inverts the score test instead: centre ``(p + z²/2n) / (1 + z²/n)``, half-width
    ``z sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)``. It stays inside [0, 1] and is never empty.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} must be a positive number of examples.")
    if isinstance(correct, bool) or not isinstance(correct, int) or not 0 <= correct <= n:
        raise ValueError(f"correct={correct!r} must be a whole number of examples between 0 and n={n}.")
    z = _z(level)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"mean": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half), "n": n, "level": level,
            "interval": f"{level:.0%} Wilson score interval over {n} examples"}


def logit_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean accuracy over seeds with an interval on the logit scale: inside [0, 1] by construction.

    The t interval's half-width ``h = t s / sqrt(n)`` (:func:`mean_ci`) is carried to the logit scale by the delta
    method, ``logit(mean) ± h / (mean (1 - mean))``, and mapped back with the sigmoid, so the interval stays in
    (0, 1) and around the mean (a plain t interval of accuracies near 1 can pass 1.0). A mean of exactly 0 or 1,
    or seeds that all agree, gets the point interval; one seed gets none (``low``/``high`` None).
    """
    values = _as_floats(values, "values", 1)
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"logit_interval is for accuracies in [0, 1]; got {values}. Use mean_ci for other values.")
    ci = mean_ci(values, level)
    m, h = ci["mean"], ci["half_width"]
    if h is None:
        low = high = None
    elif h == 0 or m <= 0.0 or m >= 1.0:
        low = high = m
    else:
        z, w = math.log(m / (1 - m)), h / (m * (1 - m))
        low, high = 1 / (1 + math.exp(-(z - w))), 1 / (1 + math.exp(-(z + w)))
    return {"mean": m, "low": low, "high": high, "n": len(values), "std": ci["std"], "level": level,
            "interval": f"{level:.0%} t interval over seeds, carried to the logit scale (delta method) and back"}


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool], level: float = 0.95) -> dict:
    """Two accuracies measured on the *same* examples, compared example by example (a paired comparison).

    ``a_correct[i]``, ``b_correct[i]``: whether each method got example ``i`` right. Only the examples where
    exactly one is right carry information: ``b`` of them favour a, ``c`` favour b. Returns the difference of
    accuracies ``(b - c) / n``; its paired standard error ``sd(a_i - b_i) / sqrt(n)`` (smaller than the
    independent-samples ``sqrt(se_a² + se_b²)`` when the two methods tend to get the same examples right) and the
    normal interval from it, intersected with [-1, 1]; and the exact McNemar test (McNemar 1947): if the methods
    were equally good, each discordant example would favour either with probability 1/2, so
    ``p = min(1, 2 P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``.
    """
    a = [bool(x) for x in a_correct]
    b_ = [bool(x) for x in b_correct]
    if len(a) != len(b_) or not a:
        raise ValueError(f"mcnemar needs two equally long, non-empty lists of right/wrong per example; got {len(a)} "
                         f"and {len(b_)} (score both methods on the same examples, in the same order).")
    n = len(a)
    b = sum(x and not y for x, y in zip(a, b_))
    c = sum(y and not x for x, y in zip(a, b_))
    d = [int(x) - int(y) for x, y in zip(a, b_)]
    diff = (b - c) / n
    se = sample_std(d) / math.sqrt(n) if n > 1 else float("nan")
    z = _z(level)
    k, m = min(b, c), b + c
    p = min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m) if m else 1.0
    return {"difference": diff, "se": se, "low": max(-1.0, diff - z * se), "high": min(1.0, diff + z * se),
            "a_only": b, "b_only": c, "both": sum(x and y for x, y in zip(a, b_)), "n": n, "p_value": p,
            "level": level,
            "interval": f"{level:.0%} normal interval of the paired difference (se from the per-example differences)"}

def _as_floats(values, name: str, at_least: int) -> list[float]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of numbers, not a string.")
    out = [float(v) for v in values]
    if len(out) < at_least:
        raise ValueError(f"{name} needs at least {at_least} value(s); got {len(out)}.")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} holds a non-finite value: {out}.")
    return out
