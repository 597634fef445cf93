"""softprompt.stats against known values.

The reference numbers were computed with SciPy 1.17.1 (``scipy.stats.t.ppf``, ``t.cdf``,
``t.interval(0.95, n - 1, loc=mean, scale=sem)``) and typed here as constants, so the test
needs no SciPy.
"""

import math

import pytest

from softprompt.stats import mean, mean_ci, paired_difference, sample_std, t_cdf, t_quantile

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
