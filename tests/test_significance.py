import math

import numpy as np
import pytest
from scipy.stats import norm

from emobed_tf.experiments import significance


def test_fisher_z_hand_derived():
    # atanh(.6) = .693147, atanh(.5) = .549306; se = sqrt(2 / 100) for n = 103
    res = significance.fisher_z_test(0.6, 0.5, 103)
    assert res["z"] == pytest.approx((0.6931472 - 0.5493061) / math.sqrt(0.02), rel=1e-6)
    assert res["p"] == pytest.approx(1 - norm.cdf(res["z"]))
    assert significance.fisher_z_test(0.5, 0.6, 103)["p"] == pytest.approx(1 - res["p"])
    with pytest.raises(ValueError):
        significance.fisher_z_test(0.5, 0.4, 3)


def test_fisher_z_on_long_sequences_detects_small_gains():
    # RECOLA-sized test partition (67.5k frames): .644 vs .605 is significant
    assert significance.fisher_z_test(0.644, 0.605, 67_500)["p"] < 1e-6
    assert significance.fisher_z_test(0.606, 0.605, 1_000)["p"] > 0.4


def test_two_proportion_z_hand_derived():
    # 60/100 vs 50/100: pooled .55, se = sqrt(.55 * .45 * .02) = .070356
    res = significance.two_proportion_z_test(0.6, 0.5, 100)
    assert res["z"] == pytest.approx(0.1 / math.sqrt(0.55 * 0.45 * 0.02), rel=1e-9)
    assert res["p"] == pytest.approx(0.0774, abs=1e-3)
    assert significance.two_proportion_z_test(0.5, 0.5, 10)["p"] == pytest.approx(0.5)


def test_two_proportion_matches_simulated_null_rate():
    rng = np.random.default_rng(0)
    n, hits = 400, 0
    for _ in range(2000):
        a = rng.binomial(n, 0.4) / n
        b = rng.binomial(n, 0.4) / n
        hits += significance.two_proportion_z_test(a, b, n)["p"] < 0.05
    assert 0.03 < hits / 2000 < 0.07  # one-tailed test at .05 under the null


def test_holm_against_hand_values_and_bonferroni_bounds():
    # by hand: sorted .001 .01 .02 .5 x 4, 3, 2, 1 -> .004 .03 .04 .5
    assert significance.holm([0.5, 0.02, 0.001, 0.01]) == pytest.approx([0.5, 0.04, 0.004, 0.03])
    # monotone: a larger raw p never gets a smaller adjusted one; ties; the cap at 1
    assert significance.holm([0.03, 0.03, 0.9]) == pytest.approx([0.09, 0.09, 0.9])
    assert significance.holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])
    rng = np.random.default_rng(0)
    ps = rng.uniform(size=12)
    adj = np.array(significance.holm(ps))
    assert np.all(adj >= ps) and np.all(adj <= np.minimum(1, 12 * ps) + 1e-12)
    order = np.argsort(ps)
    assert np.all(np.diff(adj[order]) >= 0)
    assert significance.holm([]) == []


def test_paired_differences_against_scipy():
    from scipy import stats

    rng = np.random.default_rng(4)
    d = rng.normal(0.01, 0.02, 8)
    r = significance.paired_differences(d)
    assert r["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
    wins = int(np.sum(d > 0))
    assert r["p_sign"] == pytest.approx(stats.binomtest(wins, 8).pvalue)
    lo, hi = stats.t.interval(0.95, 7, loc=d.mean(), scale=stats.sem(d))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi))
    assert r["mean_diff"] == pytest.approx(d.mean()) and r["n_pairs"] == 8
    one = significance.paired_differences([0.1])
    assert math.isnan(one["ci_low"]) and one["p_sign"] == 1.0
    assert significance.paired_differences([0.0, 0.0])["p_wilcoxon"] == 1.0


def test_paired_analysis_averages_seeds_within_folds_first():
    rng = np.random.default_rng(5)
    a = {(f, s): rng.uniform() for f in range(6) for s in range(3)}
    b = {(f, s): rng.uniform() for f in range(6) for s in range(3)}
    b.pop((2, 1))  # a run only one system has is left out of both
    r = significance.paired_analysis(a, b)
    diffs = []
    for f in range(6):
        seeds = [s for s in range(3) if (f, s) in b]
        diffs.append(np.mean([a[f, s] for s in seeds]) - np.mean([b[f, s] for s in seeds]))
    ref = significance.paired_differences(diffs)
    assert r["n_folds"] == 6 and r["n_seeds"] == 3
    for k in ("mean_diff", "ci_low", "ci_high", "p_wilcoxon", "p_sign"):
        assert r[k] == pytest.approx(ref[k])
    # a system with one score per fold (the probe) pairs with every seed of the other
    probe = {f: 0.5 for f in range(6)}
    r = significance.paired_analysis(a, probe)
    want = [np.mean([a[f, s] for s in range(3)]) - 0.5 for f in range(6)]
    assert r["mean_diff"] == pytest.approx(np.mean(want)) and r["n_folds"] == 6


def test_mcnemar_exact_and_paired_bootstrap():
    from scipy import stats
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 200)
    pa = np.where(rng.uniform(size=200) < 0.7, y, rng.integers(0, 3, 200))
    pb = np.where(rng.uniform(size=200) < 0.5, y, rng.integers(0, 3, 200))
    m = significance.mcnemar_exact(pa == y, pb == y)
    n01, n10 = int(np.sum((pa == y) & (pb != y))), int(np.sum((pa != y) & (pb == y)))
    assert (m["only_a"], m["only_b"]) == (n01, n10)
    assert m["p"] == pytest.approx(stats.binomtest(n01, n01 + n10).pvalue)
    f1 = lambda t, p: f1_score(t, p, average="macro", labels=[0, 1, 2], zero_division=0)
    r = significance.paired_bootstrap(y, pa, pb, f1, n_boot=300, seed=1)
    # an independent loop over the same seeded draws
    gen, diffs = np.random.default_rng(1), []
    for _ in range(300):
        idx = gen.integers(0, 200, 200)
        diffs.append(f1(y[idx], pa[idx]) - f1(y[idx], pb[idx]))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])))
    assert r["diff"] == pytest.approx(f1(y, pa) - f1(y, pb)) and r["diff"] > 0
    assert r["p"] == pytest.approx(max(2 * min(np.mean(np.array(diffs) <= 0),
                                               np.mean(np.array(diffs) >= 0)), 1 / 300))
    same = significance.paired_bootstrap(y, pa, pa, f1, n_boot=50)
    assert same["diff"] == 0 and same["p"] == 1.0
    with pytest.raises(ValueError, match="same items"):
        significance.mcnemar_exact([True, False], [True])
