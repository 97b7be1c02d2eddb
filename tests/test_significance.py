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
