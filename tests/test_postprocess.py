import numpy as np
import pytest
import tensorflow as tf
from scipy.ndimage import median_filter

from emobed_tf.experiments import postprocess
from emobed_tf.model.metrics import ccc


def test_grids_match_the_paper():
    assert [postprocess.frames(w) for w in postprocess.MEDIAN_WINDOWS_S] == [3, 5, 7, 9, 11]
    assert [postprocess.frames(d) for d in postprocess.SHIFTS_S] == list(range(1, 16))


def test_shift_forward_hand_example():
    np.testing.assert_array_equal(postprocess.shift_forward(np.array([1.0, 2, 3, 4]), 2), [1, 1, 1, 2])
    np.testing.assert_array_equal(postprocess.shift_forward(np.array([1.0, 2]), 5), [1, 1])


def test_worked_example_each_step_by_hand():
    # prediction = gold advanced by 2 frames, halved and offset; one outlier frame
    t = np.arange(200)
    gold = np.sin(t / 9.0)
    pred = 0.5 * np.concatenate([gold[2:], np.repeat(gold[-1:], 2)]) - 0.3
    pred[50] += 3.0
    p = postprocess.fit_dim([gold], [pred])
    assert p["median_window"] >= 3  # removes the outlier
    assert p["bias"] == pytest.approx(gold.mean() - median_filter(
        pred, size=p["median_window"], mode="nearest").mean())
    assert p["scale"] is not None and p["scale"] > 1.5
    assert p["shift"] == 2
    assert p["dev_ccc"] > 0.99 > p["dev_ccc_raw"]
    out = postprocess.apply_dim([pred], p)[0]
    assert ccc(gold, out) == pytest.approx(p["dev_ccc"])


def test_steps_that_do_not_help_are_left_out():
    rng = np.random.default_rng(0)
    gold = np.cumsum(rng.normal(size=300)) / 10
    p = postprocess.fit_dim([gold], [gold.copy()])
    assert p == {"median_window": 0, "bias": None, "scale": None, "shift": 0,
                 "dev_ccc_raw": pytest.approx(1.0), "dev_ccc": pytest.approx(1.0)}


def test_fit_on_dev_apply_to_test_per_recording():
    rng = np.random.default_rng(1)
    golds = [np.cumsum(rng.normal(size=(n, 2)), 0) / 10 for n in (120, 90)]
    preds = [0.4 * g + 0.2 + rng.normal(size=g.shape) * 0.05 for g in golds]
    chain = postprocess.fit_chain(golds, preds, ["arousal", "valence"])
    out = postprocess.apply_chain(preds, chain, ["arousal", "valence"])
    for k, n in enumerate(["arousal", "valence"]):
        pooled = ccc(np.concatenate([g[:, k] for g in golds]),
                     np.concatenate([o[:, k] for o in out]))
        assert pooled == pytest.approx(chain[n]["dev_ccc"])
        assert pooled >= chain[n]["dev_ccc_raw"]


def test_tensorflow_chain_equals_numpy_chain_on_padded_batch():
    rng = np.random.default_rng(2)
    lengths = [40, 17, 3]
    preds = [rng.normal(size=(n, 2)) for n in lengths]
    chain = {"arousal": {"median_window": 5, "bias": 0.1, "scale": 1.7, "shift": 3},
             "valence": {"median_window": 0, "bias": None, "scale": 0.5, "shift": 0}}
    want = postprocess.apply_chain(preds, chain, ["arousal", "valence"])
    y = np.zeros((3, 40, 2), np.float32)
    mask = np.zeros((3, 40), bool)
    for i, p in enumerate(preds):
        y[i, : len(p)] = p
        mask[i, : len(p)] = True
    got = postprocess.apply_chain_tf(tf.constant(y), tf.constant(mask), chain,
                           ["arousal", "valence"]).numpy()
    for i, w in enumerate(want):
        np.testing.assert_allclose(got[i, : len(w)], w, rtol=1e-5, atol=1e-5)
