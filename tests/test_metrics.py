import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from emobed_tf.model import metrics


def test_ccc_hand_derived():
    g = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([2.0, 3.0, 4.0, 5.0])  # perfectly correlated, offset by 1
    # cov = 1.25, var = 1.25 each, (mean diff)^2 = 1 -> 2.5 / 3.5
    assert metrics.ccc(g, p) == pytest.approx(2.5 / 3.5)
    assert metrics.ccc(g, g) == pytest.approx(1.0)
    assert metrics.ccc(g, -g) == pytest.approx(-1.0 * 2 * 1.25 / (2.5 + 25.0))
    # AVEC 2016 variant: variances with 1/(N-1) = 5/3, covariance with 1/N = 1.25
    assert metrics.ccc(g, p, "avec2016") == pytest.approx(2.5 / (10 / 3 + 1))


def test_ccc_equals_formula_with_pearson():
    rng = np.random.default_rng(0)
    g = rng.normal(size=500)
    p = 0.6 * g + rng.normal(size=500) * 0.5 + 0.3
    r = stats.pearsonr(g, p)[0]
    want = 2 * r * g.std() * p.std() / (g.var() + p.var() + (g.mean() - p.mean()) ** 2)
    assert metrics.ccc(g, p) == pytest.approx(want, rel=1e-10)
    assert metrics.pcc(g, p) == pytest.approx(r, rel=1e-10)
    assert metrics.rmse(g, p) == pytest.approx(np.sqrt(skm.mean_squared_error(g, p)))
    assert abs(metrics.ccc(g, p) - metrics.ccc(g, p, "avec2016")) < 5e-3


def test_classification_scores_match_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(5):
        t = rng.integers(0, 7, 200)
        p = np.where(rng.random(200) < 0.5, t, rng.integers(0, 7, 200))
        s = metrics.classification_scores(t, p, 7)
        labels = sorted(set(t) | set(p))
        assert s["f1_macro"] == pytest.approx(skm.f1_score(t, p, average="macro", labels=labels))
        assert s["f1_micro"] == pytest.approx(skm.f1_score(t, p, average="micro"))
        assert s["uar"] == pytest.approx(skm.recall_score(t, p, average="macro",
                                                          labels=sorted(set(t))))
        assert s["accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    with pytest.raises(ValueError, match="outside"):
        metrics.classification_scores([0, 7], [0, 1], 7)


def test_missing_class_counts_as_zero_f1():
    # class 2 has gold examples but is never predicted: its F1 is 0
    s = metrics.classification_scores([0, 1, 2, 2], [0, 1, 1, 1], 3)
    assert s["f1_macro"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_regression_scores_keys():
    g = np.stack([np.linspace(0, 1, 50), np.sin(np.arange(50))], 1)
    s = metrics.regression_scores(g, g * 0.9, ["arousal", "valence"])
    assert set(s) == {"ccc_arousal", "ccc_valence", "pcc_arousal", "pcc_valence",
                      "rmse_arousal", "rmse_valence", "ccc_mean"}
    assert s["pcc_arousal"] == pytest.approx(1.0)


def test_streaming_ccc_equals_pooled_numpy():
    rng = np.random.default_rng(2)
    m = metrics.ConcordanceCC(num_dims=2)
    gs, ps = [], []
    for _ in range(4):
        g = rng.normal(size=(3, 11, 2)).astype(np.float32)
        p = (0.7 * g + rng.normal(size=g.shape) * 0.4).astype(np.float32)
        mask = rng.random((3, 11)) > 0.3
        m.update_state(g, p, mask)
        gs.append(g[mask])
        ps.append(p[mask])
    g, p = np.concatenate(gs), np.concatenate(ps)
    want = np.mean([metrics.ccc(g[:, k], p[:, k]) for k in range(2)])
    assert float(m.result()) == pytest.approx(want, rel=1e-5)
    m.reset_state()
    assert float(m.result()) == 0.0


@pytest.mark.parametrize("score", ["f1_macro", "f1_micro", "uar", "accuracy"])
def test_streaming_confusion_scores(score):
    rng = np.random.default_rng(3)
    m = metrics.ConfusionScore(5, score)
    ts, ps = [], []
    for _ in range(3):
        t = rng.integers(0, 5, 40)
        probs = rng.random((40, 5)).astype(np.float32)
        m.update_state(t, probs)
        ts.append(t)
        ps.append(probs.argmax(1))
    want = metrics.classification_scores(np.concatenate(ts), np.concatenate(ps), 5)[score]
    assert float(m.result()) == pytest.approx(want, rel=1e-5)
