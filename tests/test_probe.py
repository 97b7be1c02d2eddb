"""The linear probe against scikit-learn's own cross-validated predictions and scores."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.model_selection import PredefinedSplit, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emobed_tf.data.memory import InMemorySplit
from emobed_tf.experiments import probe


def _split(rng, n, speakers, d=6, classes=3, shift=1.0):
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, 1, d)) + shift * np.eye(classes, d)[y][:, None, :]
    spk = [speakers[i % len(speakers)] for i in range(n)]
    return InMemorySplit(x.astype(np.float32), np.ones((n, 1), bool), y, [f"r{i}" for i in range(n)],
                         spk)


def test_inner_speaker_folds_hold_out_whole_speakers_once():
    spk = ["s3", "s1", "s2", "s1", "s4", "s5", "s3"]
    folds = probe.inner_speaker_folds(spk, 2)
    held = sorted(i for _, h in folds for i in h)
    assert held == list(range(len(spk)))  # every row held out exactly once
    for fit, h in folds:
        assert not {spk[i] for i in fit} & {spk[i] for i in h}  # whole speakers
    assert probe.inner_speaker_folds(["a", "a"], 4) == []  # one speaker: no inner folds


def test_the_chosen_c_and_the_scores_equal_scikit_learn():
    rng = np.random.default_rng(0)
    train = _split(rng, 120, [f"s{i}" for i in range(8)], shift=0.6)
    test = _split(rng, 60, ["t0", "t1"], shift=0.6)
    got = probe.fit_and_score(train, {"test": test}, ["a", "b", "c"])
    x = train.features[:, 0].astype(np.float64)
    y = train.label
    # scikit-learn's own cross-validated predictions over the same speaker groups
    ids = sorted(set(train.speakers))
    group = np.array([ids.index(s) % 4 for s in train.speakers])
    inner = {}
    for c in probe.PROBE_CS:
        pred = cross_val_predict(make_pipeline(StandardScaler(),
                                               LogisticRegression(C=c, max_iter=3000)),
                                 x, y, cv=PredefinedSplit(group))
        inner[c] = f1_score(y, pred, average="macro")
    for c in probe.PROBE_CS:
        assert got["probe"]["inner_f1_macro"][str(c)] == pytest.approx(inner[c], abs=1e-9)
    best = max(probe.PROBE_CS, key=lambda c: (inner[c], -c))
    assert got["probe"]["C"] == best
    model = make_pipeline(StandardScaler(), LogisticRegression(C=best, max_iter=3000)).fit(x, y)
    pred = model.predict(test.features[:, 0].astype(np.float64))
    assert got["test"]["f1_macro"] == pytest.approx(f1_score(test.label, pred, average="macro"))
    assert got["test"]["accuracy"] == pytest.approx(accuracy_score(test.label, pred))
    assert got["test"]["uar"] == pytest.approx(recall_score(test.label, pred, average="macro"))
    assert got["probe"]["train_speakers"] == ids and got["test"]["n"] == 60


def test_sequences_are_pooled_to_mean_and_sd_over_valid_frames():
    x = np.array([[[1.0, 0.0], [3.0, 2.0], [99.0, 99.0]]], np.float32)  # last frame is padding
    split = InMemorySplit(x, np.array([[True, True, False]]), np.array([0]), ["r"], ["s"])
    np.testing.assert_allclose(probe.pooled_features(split), [[2.0, 1.0, 1.0, 1.0]])
