"""softprompt.stats against known values, and the two-level statistics against a reference.

The two-level bootstrap is checked against an explicit, slow resampling (the same random streams, the
resampled table built cell by cell), against the enumerated bootstrap distribution of a 3 x 3 table, and on
known answers (identical draws = the one-draw bootstrap, a fixed seed = a fixed answer). The t-interval
reference numbers were computed with SciPy 1.17.1 (``scipy.stats.t.ppf``, ``t.cdf``,
``t.interval(0.95, n - 1, loc=mean, scale=sem)``) and typed here as constants, so the test
needs no SciPy.
"""

import itertools
import math
import random

import pytest

from softprompt.stats import (
    logit_interval, mcnemar, mean, mean_ci, mixed_model_t_interval, paired_difference, sample_std, t_cdf, t_quantile,
    two_level_bootstrap, variance_components, wilson_interval,
)

# scipy.stats.t.ppf(p, df)
T_PPF = [
    (0.975, 1, 12.706204736174694),
    (0.975, 2, 4.302652729749462),
    (0.975, 4, 2.7764451051977934),
    (0.975, 9, 2.262157162798205),
    (0.975, 29, 2.045229642132703),
    (0.95, 10, 1.8124611228116756),
    (0.995, 4, 4.604094871349992),
    (0.975, 1000, 1.9623390808264083),
]


@pytest.mark.parametrize("p, df, expected", T_PPF)
def test_t_quantile_matches_scipy(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-9)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, rel=1e-9)  # symmetric


def test_t_cdf_matches_scipy():
    assert t_cdf(1.5, 3) == pytest.approx(0.8847080673775886, rel=1e-10)  # scipy.stats.t.cdf(1.5, 3)
    assert t_cdf(-0.7, 7) == pytest.approx(0.2532587760978, rel=1e-10)  # scipy.stats.t.cdf(-0.7, 7)
    assert t_cdf(0.0, 5) == 0.5


def test_mean_ci_matches_scipy_interval():
    x = [0.61, 0.64, 0.58, 0.70, 0.66]
    ci = mean_ci(x)
    # scipy.stats.t.interval(0.95, 4, loc=np.mean(x), scale=scipy.stats.sem(x))
    assert ci["mean"] == pytest.approx(0.638, abs=1e-12)
    assert ci["low"] == pytest.approx(0.5808294961802597, abs=1e-10)
    assert ci["high"] == pytest.approx(0.6951705038197405, abs=1e-10)
    assert ci["n"] == 5 and ci["std"] == pytest.approx(sample_std(x))
    assert ci["half_width"] == pytest.approx(ci["high"] - ci["mean"])


def test_paired_difference_matches_scipy_and_is_narrower_than_each_arm():
    a = [0.71, 0.69, 0.75, 0.73, 0.70]
    b = [0.66, 0.68, 0.70, 0.69, 0.64]
    d = paired_difference(a, b)
    # d = a - b; scipy.stats.t.interval(0.95, 4, loc=d.mean(), scale=scipy.stats.sem(d))
    assert d["mean"] == pytest.approx(0.042, abs=1e-12)
    assert d["low"] == pytest.approx(0.018116116119000138, abs=1e-10)
    assert d["high"] == pytest.approx(0.0658838838809998, abs=1e-10)
    assert (d["wins"], d["ties"], d["losses"]) == (5, 0, 0)
    # the t statistic scipy.stats.ttest_rel(a, b) reports: 4.882400827240399
    assert d["mean"] / (d["std"] / math.sqrt(5)) == pytest.approx(4.882400827240399, rel=1e-9)
    assert paired_difference(b, a)["mean"] == pytest.approx(-0.042)


def test_small_samples_and_bad_input():
    assert mean([3.0]) == 3.0 and sample_std([3.0]) == 0.0
    one = mean_ci([0.5])
    assert one["mean"] == 0.5 and one["low"] is None and one["half_width"] is None
    assert mean_ci([1.0, 1.0, 1.0])["half_width"] == 0.0
    with pytest.raises(ValueError, match="same length"):
        paired_difference([1, 2], [1])
    with pytest.raises(ValueError, match="at least 1"):
        mean([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="strictly between"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df="):
        t_cdf(1.0, 0)
    with pytest.raises(TypeError, match="string"):
        mean("0.5")


# ---------------------------------------------------------------------------------------------- two levels
def _naive_two_level(values, level, n_boot, seed):
    """The reference: the same index streams, the resampled table built explicitly, its mean, the percentile."""
    seed_rng, draw_rng = random.Random(seed), random.Random(seed + 1)
    D, S = len(values), len(values[0])
    means = []
    for _ in range(n_boot):
        seeds = seed_rng.choices(range(S), k=S)
        draws = draw_rng.choices(range(D), k=D)
        table = [[values[d][s] for s in seeds] for d in draws]  # (D, S), resampled
        means.append(sum(map(sum, table)) / (D * S))
    means.sort()
    a = 1 - level
    return means[max(0, math.floor(n_boot * a / 2) - 1)], means[math.ceil(n_boot * (1 - a / 2)) - 1]


def _exact_bootstrap_quantiles(values, qs):
    """Every one of the D^D x S^S equally likely replicates, enumerated: the bootstrap distribution itself."""
    D, S = len(values), len(values[0])
    every_draws, every_seeds = itertools.product(range(D), repeat=D), list(itertools.product(range(S), repeat=S))
    means = sorted(sum(values[d][s] for d in draws for s in seeds) / (D * S)
                   for draws in every_draws for seeds in every_seeds)
    return [means[min(len(means) - 1, int(q * len(means)))] for q in qs]


TABLE = [[0.81, 0.74, 0.90, 0.78], [0.62, 0.70, 0.66, 0.59], [0.85, 0.80, 0.92, 0.77]]  # 3 draws x 4 seeds


def test_two_level_bootstrap_equals_the_explicit_resampling():
    b = two_level_bootstrap(TABLE, n_boot=2000, seed=7)
    assert (b["low"], b["high"]) == pytest.approx(_naive_two_level(TABLE, 0.95, 2000, 7), abs=1e-12)
    assert b["mean"] == pytest.approx(sum(map(sum, TABLE)) / 12)
    assert (b["n_draws"], b["n_seeds"], b["n"]) == (3, 4, 12)


def test_two_level_bootstrap_approaches_the_enumerated_bootstrap_distribution():
    small = [[0.8, 0.7, 0.9], [0.6, 0.7, 0.5], [0.85, 0.95, 0.75]]  # 27 x 27 = 729 replicates, all listed
    exact_low, exact_high = _exact_bootstrap_quantiles(small, [0.025, 0.975])
    b = two_level_bootstrap(small, n_boot=20_000, seed=1)
    assert b["low"] == pytest.approx(exact_low, abs=0.01) and b["high"] == pytest.approx(exact_high, abs=0.01)


def test_two_level_bootstrap_known_answers():
    # a fixed seed, a fixed answer (pure-Python Mersenne Twister: the same on every machine)
    assert two_level_bootstrap(TABLE, seed=3) == two_level_bootstrap(TABLE, seed=3)
    pinned = two_level_bootstrap(TABLE, n_boot=1000, seed=0)
    assert (pinned["low"], pinned["high"]) == pytest.approx((0.65, 0.8725), abs=1e-12)
    # identical draws (no draw variance): exactly the seed-level bootstrap of one draw
    row = [0.81, 0.74, 0.90, 0.78, 0.69]
    one, three = two_level_bootstrap([row], seed=5), two_level_bootstrap([row, row, row], seed=5)
    assert (three["low"], three["high"], three["mean"]) == pytest.approx((one["low"], one["high"], one["mean"]),
                                                                          abs=1e-12)  # fsum over 3 rows vs 1
    # two seeds 0 and 1, one draw: replicate means 0, 0.5, 1 with probability 1/4, 1/2, 1/4
    b = two_level_bootstrap([[0.0, 1.0]], n_boot=4000)
    assert (b["low"], b["high"]) == (0.0, 1.0)
    assert two_level_bootstrap([[0.7] * 5] * 3)["low"] == two_level_bootstrap([[0.7] * 5] * 3)["high"] == 0.7
    # between-draw variation widens the interval: the same values, rows shifted apart
    spread = [[v + shift for v in row] for row, shift in zip([row] * 3, (-0.1, 0.0, 0.1))]
    assert two_level_bootstrap(spread)["high"] - two_level_bootstrap(spread)["low"] > three["high"] - three["low"]


def test_two_level_bootstrap_stays_in_the_range_where_t_does_not():
    near_one = [[1.0, 1.0, 0.98, 1.0, 0.92]]  # like intent/32 class_labels: t interval high > 1
    assert mean_ci(near_one[0])["high"] > 1.0
    b = two_level_bootstrap(near_one)
    assert 0.0 <= b["low"] <= b["high"] <= 1.0
    m = mixed_model_t_interval(near_one)
    assert m["high"] == 1.0 and m["clipped"]
    rng = random.Random(0)
    for _ in range(20):
        t = [[rng.random() ** 0.2 for _ in range(5)] for _ in range(3)]
        b = two_level_bootstrap(t, n_boot=500)
        assert 0.0 <= b["low"] <= b["mean"] <= b["high"] <= 1.0


def test_variance_components_by_hand():
    # additive, no noise: y = a_d + b_s, so the draw and seed components are the sample variances of a and b
    a, b = [0.0, 0.1, -0.1], [0.02, -0.02, 0.04, -0.04]
    y = [[0.7 + ad + bs for bs in b] for ad in a]
    v = variance_components(y)
    assert v["draw"] == pytest.approx(sample_std(a) ** 2) and v["seed"] == pytest.approx(sample_std(b) ** 2)
    assert v["residual"] == pytest.approx(0.0, abs=1e-15)
    assert v["share_draw"] == pytest.approx(0.01 / (0.01 + 0.0040 / 3))  # var(a) = 0.01, var(b) = 0.004 / 3
    # TABLE by hand: draw means .8075 .6425 .835, seed means .76 .7466 .8266 .7133, grand .761666
    # MS_draws = 4 * sum((m - g)^2) / 2, MS_seeds = 3 * sum(...) / 3, MS_res = SS_res / 6
    v = variance_components(TABLE)
    ms_d = 4 * ((0.8075 - 0.76166667) ** 2 + (0.6425 - 0.76166667) ** 2 + (0.835 - 0.76166667) ** 2) / 2
    ss_total = sum((x - 0.76166667) ** 2 for r in TABLE for x in r)
    ms_s = 3 * sum((m - 0.76166667) ** 2 for m in (0.76, 0.74666667, 0.82666667, 0.71333333)) / 3
    ms_r = (ss_total - 2 * ms_d - 3 * ms_s) / 6
    assert v["draw"] == pytest.approx((ms_d - ms_r) / 4, rel=1e-5)
    assert v["seed"] == pytest.approx((ms_s - ms_r) / 3, rel=1e-5)
    assert v["residual"] == pytest.approx(ms_r, rel=1e-5)
    assert v["draw_means"] == pytest.approx([0.8075, 0.6425, 0.835])
    # identical draws: the draw component is clipped at 0, all the spread is within a draw
    row = [0.81, 0.74, 0.90, 0.78, 0.69]
    v = variance_components([row, row, row])
    assert v["draw"] == 0.0 and v["share_draw"] == 0.0 and v["within_draw"] == pytest.approx(sample_std(row) ** 2)
    one = variance_components([row])
    assert one["draw"] is None and one["within_draw"] == pytest.approx(sample_std(row) ** 2)


def test_mixed_model_t_interval():
    row = [0.61, 0.64, 0.58, 0.70, 0.66]
    one = mixed_model_t_interval([row])  # one draw: the t interval over seeds (scipy's, see above)
    assert one["low"] == pytest.approx(0.5808294961802597) and one["high"] == pytest.approx(0.6951705038197405)
    # additive table (no residual): Var(mean) = s_a^2/D + s_b^2/S, df by Satterthwaite
    a, b = [0.0, 0.1, -0.1], [0.02, -0.02, 0.04, -0.04]
    y = [[0.7 + ad + bs for bs in b] for ad in a]
    m = mixed_model_t_interval(y)
    ms_d, ms_s = 4 * sample_std(a) ** 2, 3 * sample_std(b) ** 2
    v = (ms_d + ms_s) / 12
    df = (ms_d + ms_s) ** 2 / (ms_d ** 2 / 2 + ms_s ** 2 / 3)
    assert m["df"] == pytest.approx(df)
    assert m["high"] - m["mean"] == pytest.approx(t_quantile(0.975, df) * math.sqrt(v))
    # few draws: wider than the bootstrap, which cannot see past the extreme draws
    boot = two_level_bootstrap(TABLE)
    t = mixed_model_t_interval(TABLE)
    assert t["low"] < boot["low"] and t["high"] > boot["high"]
    assert mixed_model_t_interval([[-0.9, -1.0, -0.95]], bounds=(-1, 1))["low"] == -1.0


def test_two_level_bad_input():
    with pytest.raises(ValueError, match="same seeds"):
        two_level_bootstrap([[0.5, 0.6], [0.5]])
    with pytest.raises(ValueError, match="non-empty"):
        variance_components([])
    with pytest.raises(ValueError, match="n_boot"):
        two_level_bootstrap([[0.5, 0.6]], n_boot=10)


# statsmodels.stats.proportion.proportion_confint(count, n, method="wilson")
WILSON = [(8, 10, 0.4901624344289994, 0.9433178564851742), (0, 20, 0.0, 0.16112519082345544),
          (20, 20, 0.8388748091765445, 1.0)]


@pytest.mark.parametrize("correct,n,low,high", WILSON)
def test_wilson_interval_matches_statsmodels(correct, n, low, high):
    ci = wilson_interval(correct, n)
    assert ci["mean"] == correct / n
    assert ci["low"] == pytest.approx(low, abs=1e-6) and ci["high"] == pytest.approx(high, abs=1e-6)
    assert 0.0 <= ci["low"] <= ci["mean"] <= ci["high"] <= 1.0


def test_wilson_interval_inverts_the_score_test():
    """The ends are the two roots pi of (p - pi)^2 = z^2 pi (1 - pi) / n: a quadratic, solved here directly."""
    correct, n, z = 56, 128, 1.959963984540054
    p = correct / n
    qa, qb, qc = 1 + z * z / n, -(2 * p + z * z / n), p * p  # qa pi^2 + qb pi + qc = 0
    root = math.sqrt(qb * qb - 4 * qa * qc)
    ci = wilson_interval(correct, n)
    assert ci["low"] == pytest.approx((-qb - root) / (2 * qa), abs=1e-6)
    assert ci["high"] == pytest.approx((-qb + root) / (2 * qa), abs=1e-6)


def test_wilson_interval_bad_input():
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="positive number of examples"):
        wilson_interval(0, 0)


def test_logit_interval_stays_inside_and_around_the_mean():
    near_one = [0.9, 0.95, 0.99]
    assert mean_ci(near_one)["high"] > 1.0  # the plain t interval leaves [0, 1] here ...
    ci = logit_interval(near_one)  # ... the logit one cannot
    assert 0.0 < ci["low"] < ci["mean"] < ci["high"] < 1.0
    m, h = ci["mean"], mean_ci(near_one)["half_width"]  # the delta method, by hand
    z, w = math.log(m / (1 - m)), h / (m * (1 - m))
    assert ci["high"] == pytest.approx(1 / (1 + math.exp(-(z + w))))
    assert logit_interval([1.0, 1.0, 1.0])["low"] == 1.0 and logit_interval([0.7])["low"] is None
    with pytest.raises(ValueError, match="accuracies in"):
        logit_interval([0.5, 1.5])


def test_mcnemar_exact_p_and_paired_se():
    a = [1] * 9 + [0] + [1] * 5  # a alone right on 9 examples, b alone on 1, both on 5
    b = [0] * 9 + [1] + [1] * 5
    r = mcnemar(a, b)
    assert (r["a_only"], r["b_only"], r["both"], r["n"]) == (9, 1, 5, 15)
    assert r["p_value"] == pytest.approx(0.021484375)  # scipy.stats.binomtest(1, 10).pvalue: 2 * 11 / 1024
    assert r["difference"] == pytest.approx(8 / 15)
    d = [x - y for x, y in zip(a, b)]
    assert r["se"] == pytest.approx(sample_std(d) / math.sqrt(15))
    assert mcnemar([1, 0, 1], [1, 0, 1])["p_value"] == 1.0  # no discordant example: no evidence either way


def test_mcnemar_pairing_beats_the_independent_se_when_errors_agree():
    rng = random.Random(0)
    hard = [rng.random() < 0.3 for _ in range(400)]  # examples both methods tend to miss
    a = [not h or rng.random() < 0.2 for h in hard]
    b = [not h or rng.random() < 0.1 for h in hard]
    paired = mcnemar(a, b)["se"]
    pa, pb = sum(a) / 400, sum(b) / 400
    independent = math.sqrt(pa * (1 - pa) / 400 + pb * (1 - pb) / 400)
    assert paired < 0.75 * independent
    with pytest.raises(ValueError, match="same examples"):
        mcnemar([1, 0], [1])
