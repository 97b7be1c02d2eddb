"""Fault injection through the data API: every damaged or inconsistent data set ends in a
DataError that names the file (and the problem), and reading it changes nothing on disk.

The API: ``Source.open`` / ``load_manifest``, ``make_modality_dataset``,
``speaker_statistics``, ``verify_shards``; a failure inside ``tf.data`` is traced to
the file with ``data_error_from``, as training does.
"""

import glob
import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from emobed_tf.data import pipeline, source, speakers
from emobed_tf.records import parse
from emobed_tf.records import schema
from emobed_tf.records.manifest import load_manifest
from emobed_tf.records.schema import DataError
from tests.conftest import write_classification


@pytest.fixture
def data(tmp_path):
    """A tiny audio-only classification data set, several shards per split."""
    manifest, _ = write_classification(tmp_path / "d", n=(8, 3, 3), dims={"audio": 6},
                                       max_shard_bytes=1200)
    assert len(manifest.modalities["audio"].shards["train"]) > 1
    return str(tmp_path / "d"), manifest


def _hashes(folder):
    return {os.path.relpath(p, folder): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True))
            if os.path.isfile(p)}


def _shard(folder, manifest, split="train", i=0):
    return os.path.join(folder, manifest.modalities["audio"].shards[split][i].path)


def _edit_manifest(folder, edit):
    path = os.path.join(folder, schema.MANIFEST_NAME)
    raw = json.load(open(path))
    edit(raw)
    json.dump(raw, open(path, "w"))
    return path


def _record_size_in_manifest(folder, shard_path):
    def edit(raw):
        for sh in raw["modalities"]["audio"]["shards"]["train"]:
            if os.path.join(folder, sh["path"]) == shard_path:
                sh["bytes"] = os.path.getsize(shard_path)
    _edit_manifest(folder, edit)


def _rewrite_record(folder, path, mutate, index=1):
    """Shard ``path`` with record ``index`` replaced by ``mutate(example)`` (size recorded)."""
    recs = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    ex = tf.train.Example.FromString(recs[index])
    mutate(ex.features.feature)
    recs[index] = ex.SerializeToString()
    with tf.io.TFRecordWriter(path) as w:
        for r in recs:
            w.write(r)
    _record_size_in_manifest(folder, path)
    return ex.features.feature[schema.KEY_RECORDING].bytes_list.value[0].decode()


def _read(src, split="train", **options):
    """Reads a split to its end; the DataError it ends with (tf.data failures traced)."""
    shards = [(p, src.manifest.compression) for p in source.shard_paths(src, "audio", split)]
    try:
        for _ in pipeline.make_modality_dataset(src, "audio", split, 4,
                                         options=pipeline.PipelineOptions(**options)):
            pass
    except DataError as err:
        return str(err)
    except (tf.errors.OpError, UnicodeDecodeError) as err:
        found = parse.data_error_from(err, shards)
        assert found is not None, f"not traced to the data: {err}"
        return str(found)
    pytest.fail("the damaged data set was read without an error")


def _fails(fn, *args, **kwargs):
    with pytest.raises(DataError) as err:
        fn(*args, **kwargs)
    return str(err.value)


# -- damaged shard files --------------------------------------------------------------


def test_flipped_bytes_in_a_shard(data):
    folder, manifest = data
    path = _shard(folder, manifest, i=1)
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 2] ^= 0x55  # same size: only the CRC finds it
    open(path, "wb").write(bytes(raw))
    before = _hashes(folder)
    src = source.Source.open(folder)
    for cache in ("none", "memory"):
        assert _read(src, cache=cache).startswith(f"{path}: corrupt or truncated TFRecord")
    assert _fails(parse.verify_shards, [path]).startswith(f"{path}: corrupt or truncated")
    assert _fails(speakers.speaker_statistics, src, "audio").startswith(f"{path}: corrupt")
    assert _hashes(folder) == before


def test_truncated_shard(data):
    folder, manifest = data
    path = _shard(folder, manifest)
    open(path, "r+b").truncate(os.path.getsize(path) - 5)
    before = _hashes(folder)
    src = source.Source.open(folder)
    msg = _fails(pipeline.make_modality_dataset, src, "audio", "train", 4)
    assert msg.startswith(f"{path}: shard is ") and "truncated or modified" in msg
    assert _fails(parse.verify_shards, [path]).startswith(f"{path}: corrupt or truncated")
    assert _fails(speakers.speaker_statistics, src, "audio").startswith(f"{path}: corrupt")
    assert _hashes(folder) == before


def test_truncated_shard_whose_size_the_manifest_agrees_with(data):
    folder, manifest = data
    path = _shard(folder, manifest)
    open(path, "r+b").truncate(os.path.getsize(path) - 5)
    _record_size_in_manifest(folder, path)
    before = _hashes(folder)
    for cache in ("none", "memory"):
        assert _read(source.Source.open(folder), cache=cache).startswith(
            f"{path}: corrupt or truncated TFRecord")
    assert _hashes(folder) == before


def test_missing_shard(data):
    folder, manifest = data
    path = _shard(folder, manifest, "dev")
    os.remove(path)
    before = _hashes(folder)
    src = source.Source.open(folder)
    want = f"{path}: shard listed in the manifest is missing"
    assert _fails(pipeline.make_modality_dataset, src, "audio", "dev", 4) == want
    assert _fails(speakers.speaker_statistics, src, "audio") == want
    assert _hashes(folder) == before


# -- manifests that disagree with the shards or themselves --------------------------


def test_manifest_counts_at_odds_with_its_own_shard_list(data):
    folder, _ = data
    path = _edit_manifest(folder, lambda raw: raw["modalities"]["audio"]["counts"].update(
        train=9))
    before = _hashes(folder)
    msg = _fails(source.Source.open, folder)
    assert msg.startswith(f"{path}: audio split 'train' counts 9 examples but its shards list 8")
    assert _hashes(folder) == before


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_manifest_example_count_disagrees_with_the_shards(data, cache):
    folder, _ = data

    def edit(raw):  # consistent in itself, wrong about the files
        info = raw["modalities"]["audio"]
        info["counts"]["train"] += 3
        info["shards"]["train"][0]["examples"] += 3
    path = _edit_manifest(folder, edit)
    before = _hashes(folder)
    msg = _read(source.Source.open(folder), cache=cache)
    if cache == "memory":  # the up-front pass counts
        assert "hold 8 examples but the manifest lists 11" in msg
        assert _shard(folder, load_manifest(folder)) in msg
    else:  # streamed: tf.data's cardinality check, traced to the manifest
        assert msg.startswith(f"{path}: the shards hold fewer examples than the manifest "
                              "lists (3 batches expected, 2 read)")
    assert _hashes(folder) == before


@pytest.mark.parametrize("stats", ["stale", "rewritten"])
def test_manifest_feature_dimension_disagrees_with_the_shards(data, stats):
    folder, manifest = data

    def edit(raw):
        info = raw["modalities"]["audio"]
        info["dim"] = 5
        if stats == "rewritten":  # a manifest consistent in itself, of other shards
            info["mean"], info["std"] = info["mean"][:5], info["std"][:5]
    path = _edit_manifest(folder, edit)
    before = _hashes(folder)
    src = source.Source.open(folder)
    shards = source.shard_paths(src, "audio", "train")
    msg = _read(src, cache="memory")
    assert path in msg and any(s in msg for s in shards), msg
    assert "dimension 6" in msg and "5" in msg
    msg = _fails(speakers.speaker_statistics, src, "audio")
    assert msg.startswith(f"{schema.BAD_RECORD} 'audio-train-0' in {shards[0]}: feature "
                          f"dimension 6 differs from the manifest {path}, which says 5")
    assert _hashes(folder) == before


@pytest.mark.parametrize("content,says", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "\ufeff" + text, "not valid JSON"),
    (lambda text: text.encode("utf-16"), "not UTF-8 text"),
    (lambda text: b"\xff\xfe" + text.encode(), "not UTF-8 text"),
    (lambda text: "[]", "a JSON list, not an object"),
    (lambda text: "{}", "field 'name' is missing"),
], ids=["truncated", "bom", "utf-16", "latin-bytes", "list", "empty-object"])
def test_unreadable_manifest_is_named(data, content, says):
    folder, _ = data
    path = os.path.join(folder, schema.MANIFEST_NAME)
    new = content(open(path).read())
    open(path, "wb" if isinstance(new, bytes) else "w").write(new)
    before = _hashes(folder)
    for fn in (source.Source.open, load_manifest):
        msg = _fails(fn, folder)
        assert msg.startswith(f"{path}: unreadable manifest (") and says in msg
    assert _hashes(folder) == before


def test_missing_dev_split_where_one_is_required(tmp_path):
    write_classification(tmp_path / "d", n=(6, 0, 3), dims={"audio": 6})
    folder = str(tmp_path / "d")
    before = _hashes(folder)
    src = source.Source.open(folder)
    assert source.shard_paths(src, "audio", "dev", required=False) == []
    msg = _fails(pipeline.make_modality_dataset, src, "audio", "dev", 4)
    assert msg == (f"{src.manifest_path}: data set 'toy' has no audio shards for split 'dev' "
                   "(splits: ['test', 'train'])")
    assert _hashes(folder) == before


# -- bad records ------------------------------------------------------------------


def _nan(f):
    x = np.zeros((2, 6), np.float32)
    x[1, 3] = np.nan
    f[schema.KEY_FEATURES].bytes_list.value[0] = x.tobytes()
    f[schema.KEY_SHAPE].int64_list.value[:] = [2, 6]


def _inf(f):
    x = np.zeros((3, 6), np.float32)
    x[0, 0] = np.inf
    f[schema.KEY_FEATURES].bytes_list.value[0] = x.tobytes()
    f[schema.KEY_SHAPE].int64_list.value[:] = [3, 6]


def _label(value):
    def mutate(f):
        f[schema.KEY_LABEL_CLASS].int64_list.value[:] = [value]
    return mutate


@pytest.mark.parametrize("mutate,says", [
    (_nan, "NaN/inf features"),
    (_inf, "NaN/inf features"),
    (_label(3), "label 3 outside the label set (labels are 0..2)"),
    (_label(-2), "label -2 outside the label set (labels are 0..2)"),
], ids=["nan", "inf", "label-too-large", "label-negative"])
def test_bad_record_values(data, mutate, says):
    folder, manifest = data
    path = _shard(folder, manifest)
    rec = _rewrite_record(folder, path, mutate)
    before = _hashes(folder)
    src = source.Source.open(folder)
    want = f"{schema.BAD_RECORD} '{rec}' in {path}: {says}"
    for cache in ("none", "memory"):
        assert _read(src, cache=cache) == want
    assert _fails(parse.verify_shards, [path], expected=src.expected("audio")) == want
    assert _fails(speakers.speaker_statistics, src, "audio") == want
    assert _hashes(folder) == before


def test_record_that_is_no_example_is_named(data):
    folder, manifest = data
    path = _shard(folder, manifest)
    recs = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    recs[1] = b"\xff\xfe not a tf.train.Example"  # valid CRC, unparsable content
    with tf.io.TFRecordWriter(path) as w:
        for r in recs:
            w.write(r)
    _record_size_in_manifest(folder, path)
    before = _hashes(folder)
    src = source.Source.open(folder)
    for cache in ("none", "memory"):
        assert _read(src, cache=cache).startswith(f"{schema.BAD_RECORD} in {path}: not a "
                                                  "tf.train.Example")
    assert _hashes(folder) == before
