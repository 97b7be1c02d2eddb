"""A seeded run is reproducible on one machine (issue 21, item 18).

The auxiliary stream repeats inside an epoch and is read ahead by
prefetching; its shuffles used to carry their reshuffle state from one
Keras epoch's iterator to the next, so epoch 2 depended on how far the
prefetch threads had read when epoch 1 ended.
"""

import json
import os

import numpy as np
import pytest

from emobed_tf.data import pipeline, source
from tests.conftest import train_cli, write_classification


def _labels_of_next_iterator(data_dir, cache, read_first):
    """Labels of the first batches of a fresh stream's second iterator, after the first
    iterator read ``read_first`` batches (a stand-in for read-ahead)."""
    ds = pipeline.make_modality_dataset(source.Source.open(data_dir), "video", "train", 8, training=True,
                                 repeat=True, seed=1, options=pipeline.PipelineOptions(cache=cache))
    it = iter(ds)
    first = [next(it)["features"].numpy() for _ in range(read_first)]
    del it
    it = iter(ds)
    return first, [next(it)["features"].numpy() for _ in range(6)]


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_repeated_stream_next_epoch_does_not_depend_on_how_far_the_last_was_read(cls_data,
                                                                                  cache):
    d, _, _ = cls_data  # 24 video training items: 3 batches of 8 per pass
    short_first, a = _labels_of_next_iterator(d, cache, 1)
    _, b = _labels_of_next_iterator(d, cache, 11)  # crosses three reshuffles
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # and the next epoch is still a new order, not a replay of the first
    assert not all(np.array_equal(x, y) for x, y in zip(short_first, a[:1]))
    _, again = _labels_of_next_iterator(d, cache, 1)
    assert any(not np.array_equal(x, y) for x, y in zip(a, a[3:]))  # reshuffled within
    for x, y in zip(a, again):
        np.testing.assert_array_equal(x, y)


def test_same_command_and_seed_give_the_same_emobed_run(tmp_path):
    # a small auxiliary corpus read in large batches: it repeats several times per epoch
    write_classification(tmp_path / "d", n=(40, 12, 12), dims={"audio": 6, "video": 5})
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        train_cli(["--dataset", "custom", "--data-dir", str(tmp_path / "d"), "--out", str(out),
                   "--mode", "emobed", "--epochs", "3", "--patience", "5", "--batch-size", "4",
                   "--aux-batch-size", "32", "--encoder-units", "8", "--shared-units", "8",
                   "--seed", "0", "--verbose", "0"])
        with open(os.path.join(out, "history.json")) as fh:
            history = json.load(fh)
        with open(os.path.join(out, "metrics.json")) as fh:
            runs.append((history, json.load(fh)))
    (h1, m1), (h2, m2) = runs
    assert len(h1) == len(h2) == 3
    for e1, e2 in zip(h1, h2):
        assert e1.keys() == e2.keys()
        for k in e1:
            assert e1[k] == pytest.approx(e2[k], abs=1e-6), (e1["epoch"], k)
    for split in ("dev", "test"):
        for k in ("f1_macro", "accuracy"):
            assert m1[split][k] == pytest.approx(m2[split][k], abs=1e-6)
