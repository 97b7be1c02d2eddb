"""The streaming CCC metric against numpy in float64, where raw float32 sums would fail."""

import numpy as np
import pytest

from emobed_tf.model import metrics


def _raw_sums_ccc(gold, pred):
    """CCC from raw float32 sums of squares: what the merged moments replace."""
    g, p = gold.astype(np.float32), pred.astype(np.float32)
    n = np.float32(len(g))
    mg, mp = g.sum(dtype=np.float32) / n, p.sum(dtype=np.float32) / n
    vg = (g * g).sum(dtype=np.float32) / n - mg * mg
    vp = (p * p).sum(dtype=np.float32) / n - mp * mp
    cov = (g * p).sum(dtype=np.float32) / n - mg * mp
    return float(2 * cov / (vg + vp + (mg - mp) ** 2))


def test_pooled_ccc_over_70k_masked_frames_is_exact_in_float32():
    rng = np.random.default_rng(0)
    gold = 50.0 + 0.05 * np.cumsum(rng.normal(size=(70_000, 2)), 0) / 50
    pred = gold + rng.normal(scale=0.02, size=gold.shape) + 0.01
    metric = metrics.ConcordanceCC(num_dims=2)
    kept = []
    start = 0
    for size in rng.integers(50, 3000, size=80):
        batch = slice(start, min(start + size, len(gold)))
        t = batch.stop - batch.start
        if t <= 0:
            break
        mask = rng.random(t) > 0.2
        metric.update_state(gold[batch].astype(np.float32), pred[batch].astype(np.float32),
                            sample_weight=mask.astype(np.float32))
        kept.append(np.flatnonzero(mask) + batch.start)
        start = batch.stop
    idx = np.concatenate(kept)
    want = np.mean([metrics.ccc(gold[idx, k], pred[idx, k]) for k in range(2)])
    assert float(metric.result()) == pytest.approx(want, abs=2e-4)
    # raw float32 sums, the former accumulation in float32, are far off on the same data
    raw = np.mean([_raw_sums_ccc(gold[idx, k], pred[idx, k]) for k in range(2)])
    assert abs(raw - want) > 5e-3  # 0.008 here, 40x the streaming error bound


def test_empty_batches_and_reset_leave_the_result_unchanged():
    m = metrics.ConcordanceCC()
    g, p = np.array([[1.0], [2.0], [4.0]]), np.array([[1.5], [2.0], [3.0]])
    m.update_state(g, p)
    before = float(m.result())
    m.update_state(g, p, sample_weight=np.zeros(3))
    assert float(m.result()) == pytest.approx(before, abs=1e-6)
    assert before == pytest.approx(metrics.ccc(g.ravel(), p.ravel()), abs=1e-6)
    m.reset_state()
    m.update_state(g[:2], p[:2])
    assert float(m.result()) == pytest.approx(metrics.ccc(g[:2].ravel(), p[:2].ravel()), abs=1e-6)
