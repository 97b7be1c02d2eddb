import glob
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from emobed_tf.records import parse, schema
from emobed_tf.records.manifest import load_manifest
from emobed_tf.records.schema import DataError, Item
from emobed_tf.records.writer import DatasetWriter, ShardWriter
from tests.conftest import CLASSES, write_classification


def test_item_round_trip_eager_and_graph():
    feats = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    dims = np.array([[0.1, -0.2], [0.3, 0.4], [0.5, 0.6]], np.float32)
    item = Item("video", feats, 2, dims, "corp", "spk", "rec1", "dev")
    rec = schema.serialize_item(item)
    back = schema.decode_example(rec)
    np.testing.assert_array_equal(back.features, feats)
    np.testing.assert_array_equal(back.label_dims, dims)
    assert (back.modality, back.label_class, back.corpus, back.speaker, back.recording,
            back.split) == ("video", 2, "corp", "spk", "rec1", "dev")
    parsed = parse.parse_record(tf.constant(rec), "x.tfrecord")
    np.testing.assert_array_equal(parsed["features"].numpy(), feats)
    np.testing.assert_array_equal(parsed["label_dims"].numpy(), dims)
    assert int(parsed["label_class"]) == 2


@pytest.mark.parametrize("bad,msg", [
    (np.array([[1.0, np.nan]]), "NaN"),
    (np.zeros((0, 3)), "T, D > 0"),
    (np.zeros((2, 2, 2)), "must be"),
])
def test_serialize_rejects_bad_features(bad, msg):
    with pytest.raises(DataError, match=msg) as err:
        schema.serialize_item(Item("audio", bad, 0, recording="r7"))
    assert "r7" in str(err.value)


def test_other_schema_version_is_rejected():
    ex = tf.train.Example()
    ex.features.feature[schema.KEY_VERSION].int64_list.value.append(0)
    ex.features.feature[schema.KEY_RECORDING].bytes_list.value.append(b"old")
    with pytest.raises(DataError, match="schema version 0"):
        schema.decode_example(ex.SerializeToString())


def test_writer_shards_manifest_and_statistics(tmp_path):
    manifest, items = write_classification(tmp_path / "d", max_shard_bytes=1500)
    assert not glob.glob(str(tmp_path / "d" / "**" / "*.tmp"), recursive=True)
    for mod in ("audio", "video"):
        info = manifest.modalities[mod]
        assert info.counts == {"train": 24, "dev": 12, "test": 12}
        mine = [it for it in items if it.modality == mod]
        for split in ("train", "dev", "test"):
            shards = info.shards[split]
            assert len(shards) > 1  # the size bound split them
            assert sum(s.examples for s in shards) == info.counts[split]
            for s in shards:
                assert os.path.getsize(tmp_path / "d" / s.path) == s.bytes
            assert info.frames[split] == sum(it.features.shape[0] for it in mine
                                             if it.split == split)
        train = np.concatenate([it.features for it in mine if it.split == "train"])
        np.testing.assert_allclose(info.mean, train.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(info.std, train.std(0), rtol=1e-4)
    loaded = load_manifest(str(tmp_path / "d"))
    assert loaded == manifest
    assert loaded.label_names == CLASSES


def test_writer_records_read_back_in_order(tmp_path):
    _, items = write_classification(tmp_path / "d")
    manifest = load_manifest(str(tmp_path / "d"))
    got = []
    for s in manifest.modalities["audio"].shards["dev"]:
        for rec in tf.data.TFRecordDataset(str(tmp_path / "d" / s.path)):
            got.append(schema.decode_example(rec.numpy()))
    want = [it for it in items if it.modality == "audio" and it.split == "dev"]
    assert [g.recording for g in got] == [w.recording for w in want]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.features, w.features)


def test_gzip_shards(tmp_path):
    manifest, _ = write_classification(tmp_path / "g", compression="GZIP")
    path = tmp_path / "g" / manifest.modalities["audio"].shards["train"][0].path
    assert str(path).endswith(".tfrecord.gz")
    n = sum(1 for _ in tf.data.TFRecordDataset(str(path), compression_type="GZIP"))
    assert n == manifest.modalities["audio"].shards["train"][0].examples


@pytest.mark.parametrize("item,msg", [
    (Item("audio", np.zeros((2, 5)), 0, recording="r1"), "dimension 5 differs"),
    (Item("audio", np.zeros((2, 6)), 3, recording="r2"), "outside the label set"),
    (Item("audio", np.zeros((2, 6)), -1, recording="r3"), "outside the label set"),
    (Item("video", np.zeros((2, 6)), 0, recording="r4"), "not declared"),
    (Item("audio", np.zeros((2, 6)), 0, recording="r5", split="val"), "unknown split"),
    (Item("audio", np.full((2, 6), np.inf), 0, recording="r6"), "NaN/inf"),
])
def test_writer_rejects_bad_items_naming_them(tmp_path, item, msg):
    w = DatasetWriter(str(tmp_path / "x"), "x", "classification", CLASSES, {"audio": 6})
    with pytest.raises(DataError, match=msg) as err:
        w.add(item)
    assert item.recording in str(err.value)


def test_writer_regression_label_shape(tmp_path):
    w = DatasetWriter(str(tmp_path / "x"), "x", "regression", ("arousal", "valence"),
                      {"audio": 3})
    with pytest.raises(DataError, match="label_dims shape"):
        w.add(Item("audio", np.zeros((4, 3)), label_dims=np.zeros((3, 2)), recording="r"))
    with pytest.raises(DataError, match="without label_dims"):
        w.add(Item("audio", np.zeros((4, 3)), recording="r"))


def test_writer_never_overwrites_a_written_data_set(tmp_path):
    write_classification(tmp_path / "d")
    before = json.load(open(tmp_path / "d" / "manifest.json"))
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        DatasetWriter(str(tmp_path / "d"), "x", "classification", CLASSES, {"audio": 6})
    assert json.load(open(tmp_path / "d" / "manifest.json")) == before


def test_failed_writer_leaves_no_manifest_or_tmp(tmp_path):
    with pytest.raises(DataError):
        with DatasetWriter(str(tmp_path / "f"), "f", "classification", CLASSES,
                           {"audio": 2}) as w:
            w.add(Item("audio", np.zeros((1, 2)), 0, recording="ok"))
            w.add(Item("audio", np.zeros((1, 3)), 0, recording="bad"))
    assert not os.path.exists(tmp_path / "f" / "manifest.json")
    assert not glob.glob(str(tmp_path / "f" / "**" / "*.tmp"), recursive=True)


def test_shard_writer_is_atomic(tmp_path):
    w = ShardWriter(str(tmp_path), "p", max_bytes=10 ** 9)
    w.write(b"abc")
    assert os.listdir(tmp_path) == ["p-00000.tfrecord.tmp"]
    shards = w.close()
    assert os.listdir(tmp_path) == ["p-00000.tfrecord"]
    assert shards[0].examples == 1


def test_load_manifest_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_manifest(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="no manifest.json"):
        load_manifest(str(tmp_path))
    write_classification(tmp_path / "d")
    path = tmp_path / "d" / "manifest.json"
    raw = json.load(open(path))
    raw["schema_version"] = 0
    json.dump(raw, open(path, "w"))
    with pytest.raises(DataError, match="schema version 0"):
        load_manifest(str(tmp_path / "d"))
    path.write_text("{not json")
    with pytest.raises(DataError, match="unreadable manifest"):
        load_manifest(str(tmp_path / "d"))


_ITEM = ('Item("video", np.arange(12, dtype=np.float32).reshape(3, 4) / 7, 2, '
         'np.ones((3, 2), np.float32), "corp", "spk", "rec1", "dev", \'{"take": "01"}\')')


def test_serialised_bytes_are_the_same_in_every_process():
    """Issue 14: the feature map's order must not depend on the process (upb hash seeds)."""
    code = ("import hashlib, sys\nimport numpy as np\nfrom emobed_tf.records.schema import Item, "
            f"serialize_item\nsys.stdout.write(hashlib.sha256(serialize_item({_ITEM})).hexdigest())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=root, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONHASHSEED": seed,
                                   "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
             for seed in ("0", "12345")]  # two processes at once, other hash seeds
    digests = set()
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        digests.add(out.strip())
    digests.add(hashlib.sha256(schema.serialize_item(eval(_ITEM))).hexdigest())  # this process
    assert len(digests) == 1


def _files(folder):
    return {os.path.relpath(p, folder): open(p, "rb").read()
            for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
            if os.path.isfile(p)}


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_writing_the_same_items_twice_gives_identical_files(tmp_path, compression):
    for name in ("a", "b"):
        write_classification(tmp_path / name, n=(6, 3, 3), max_shard_bytes=1000,
                             compression=compression)
    a, b = _files(str(tmp_path / "a")), _files(str(tmp_path / "b"))
    assert len(a) > 6 and "manifest.json" in a
    assert sorted(a) == sorted(b)
    assert [p for p in a if a[p] != b[p]] == []
