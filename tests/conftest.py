"""Shared fixtures: tiny data sets written through the real writer."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from emobed_tf.schema import Item  # noqa: E402
from emobed_tf.writer import DatasetWriter  # noqa: E402

CLASSES = ("a", "b", "c")


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory):
    os.environ["EMOBED_TF_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def write_classification(out, n=(24, 12, 12), dims=None, seed=0, max_shard_bytes=4000,
                         lengths=(1, 5), compression=""):
    """Class-separable toy corpus: class c shifts the features by c."""
    dims = dims or {"audio": 6, "video": 10}
    rng = np.random.default_rng(seed)
    items = []
    with DatasetWriter(str(out), "toy", "classification", CLASSES, dims,
                       max_shard_bytes=max_shard_bytes, compression=compression) as w:
        for mod, d in dims.items():
            for split, count in zip(("train", "dev", "test"), n):
                for i in range(count):
                    c = i % 3
                    t = int(rng.integers(lengths[0], lengths[1] + 1))
                    x = rng.normal(size=(t, d)) + 2.0 * c
                    it = Item(mod, x.astype(np.float32), label_class=c, corpus="toy",
                              speaker=f"s{i % 4}", recording=f"{mod}-{split}-{i}", split=split)
                    w.add(it)
                    items.append(it)
    return w.manifest, items


def write_regression(out, n=(3, 2, 2), frames=(50, 80), dims=None, seed=0):
    dims = dims or {"audio": 5, "video": 7}
    rng = np.random.default_rng(seed)
    items = []
    with DatasetWriter(str(out), "toyreg", "regression", ("arousal", "valence"), dims) as w:
        for mod, d in dims.items():
            for split, count in zip(("train", "dev", "test"), n):
                for i in range(count):
                    t = int(rng.integers(frames[0], frames[1] + 1))
                    lab = np.tanh(np.cumsum(rng.normal(scale=0.2, size=(t, 2)), 0))
                    x = np.concatenate([lab, rng.normal(size=(t, d - 2))], 1) * 3 + 1
                    it = Item(mod, x.astype(np.float32), label_dims=lab.astype(np.float32),
                              corpus="toyreg", speaker=f"s{i}", recording=f"{mod}-{split}-{i}",
                              split=split)
                    w.add(it)
                    items.append(it)
    return w.manifest, items


@pytest.fixture
def cls_data(tmp_path):
    manifest, items = write_classification(tmp_path / "cls")
    return str(tmp_path / "cls"), manifest, items


@pytest.fixture
def reg_data(tmp_path):
    manifest, items = write_regression(tmp_path / "reg")
    return str(tmp_path / "reg"), manifest, items
