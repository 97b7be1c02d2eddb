import os

import numpy as np
import pytest
import tensorflow as tf

from emobed_tf.data import pipeline, source, speakers
from emobed_tf.records import parse
from emobed_tf.records import schema
from emobed_tf.records.manifest import load_manifest, Manifest
from emobed_tf.records.schema import DataError, Item
from emobed_tf.records.writer import DatasetWriter
from tests.conftest import write_classification, write_regression


def _batches(ds):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds]


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_mixed_batches_hold_both_modalities(cls_data, cache):
    d, manifest, items = cls_data
    src = {m: source.Source.open(d) for m in ("audio", "video")}
    ds = pipeline.make_mixed_dataset(src, "audio", {"audio": 5, "video": 3}, seed=1,
                              options=pipeline.PipelineOptions(cache=cache))
    batches = _batches(ds)
    # the target stream (24 items, batch 5) defines the epoch, known before reading
    assert len(batches) == 5 and int(ds.cardinality()) == 5
    assert [b["audio"]["label"].shape[0] for b in batches] == [5, 5, 5, 5, 4]
    assert all(b["video"]["features"].shape[0] == 3 for b in batches)
    assert all(b["video"]["features"].shape[2] == 10 and b["audio"]["features"].shape[2] == 6
               for b in batches)
    # every audio training item appears exactly once per epoch
    n_audio = sum(int(b["audio"]["mask"].any(1).sum()) for b in batches)
    assert n_audio == 24


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_same_seed_same_batches_other_seed_other_order(cls_data, cache):
    d, _, _ = cls_data
    src = {m: source.Source.open(d) for m in ("audio", "video")}
    opts = pipeline.PipelineOptions(cache=cache)
    a, b, c = (_batches(pipeline.make_mixed_dataset(src, "audio", {"audio": 4, "video": 4}, seed=s,
                                             options=opts)) for s in (3, 3, 4))
    for x, y in zip(a, b):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)
    assert any(not np.array_equal(x["audio"]["label"], y["audio"]["label"]) for x, y in zip(a, c))


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_standardisation_padding_and_mask(cls_data, cache):
    d, manifest, items = cls_data
    src = source.Source.open(d)
    ds = pipeline.make_modality_dataset(src, "audio", "dev", 4, with_ids=True,
                                 options=pipeline.PipelineOptions(cache=cache))
    info = manifest.modalities["audio"]
    by_rec = {it.recording: it for it in items}
    for b in _batches(ds):
        for i, rec in enumerate(b["recording"]):
            it = by_rec[rec.decode()]
            t = it.features.shape[0]
            assert b["mask"][i].sum() == t
            assert not b["mask"][i, t:].any()
            want = (it.features - np.asarray(info.mean)) / np.asarray(info.std)
            np.testing.assert_allclose(b["features"][i, :t], want, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(b["features"][i, t:], 0)
            assert b["label"][i] == it.label_class


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_windows_and_label_delay(tmp_path, cache):
    _, items = write_regression(tmp_path / "r", n=(1, 0, 0), frames=(23, 23),
                                dims={"audio": 3})
    src = source.Source.open(str(tmp_path / "r"))
    opts = pipeline.PipelineOptions(window=10, window_shift=5, label_delay_frames=2, standardize=False,
                             cache=cache)
    ds = pipeline.make_modality_dataset(src, "audio", "train", 100, training=True, options=opts)
    b = _batches(ds)[0]
    # windows start at 0, 5, 10, 15 (the one at 15 reaches frame 22, the end)
    assert b["features"].shape == (4, 10, 3)
    it = items[0]
    starts = sorted(int(round(w[0, 0] * 1e4)) for w in b["features"])
    want_starts = sorted(int(round(it.features[s, 0] * 1e4)) for s in (0, 5, 10, 15))
    assert starts == want_starts
    delayed = np.concatenate([it.label_dims[2:], np.repeat(it.label_dims[-1:], 2, 0)])
    for w, m, lab in zip(b["features"], b["mask"], b["label"]):
        s = int(np.argmin(np.abs(it.features[:, 0] - w[0, 0])))
        n = int(m.sum())
        assert n == min(10, 23 - s)
        np.testing.assert_allclose(lab[:n], delayed[s:s + n], rtol=1e-6)


def _items_of(batches, mod=None):
    """(recording, label, features) of every real row, sorted by recording."""
    out = []
    for b in batches:
        b = b[mod] if mod else b
        for i, rec in enumerate(b["recording"]):
            n = int(b["mask"][i].sum())
            out.append((rec.decode(), b["label"][i].tolist(), b["features"][i, :n].tolist()))
    return sorted(out)


@pytest.mark.parametrize("writer", ["classification", "regression"])
def test_cached_and_streamed_epochs_hold_the_same_examples(tmp_path, writer):
    if writer == "classification":
        write_classification(tmp_path / "d")
    else:
        write_regression(tmp_path / "d", n=(3, 2, 0), frames=(5, 17), dims={"audio": 3})
    src = source.Source.open(str(tmp_path / "d"))
    got = {}
    for cache in ("none", "memory"):
        ds = pipeline.make_modality_dataset(src, "audio", "train", 3, training=True, with_ids=True,
                                     options=pipeline.PipelineOptions(cache=cache))
        got[cache] = [_items_of(_batches(ds)) for _ in range(2)]  # two epochs
    assert got["none"][0] == got["memory"][0] == got["memory"][1]
    assert len(got["none"][0]) == src.manifest.modalities["audio"].counts["train"]


def test_cached_split_is_read_once_and_served_from_memory(tmp_path):
    write_classification(tmp_path / "d")
    src = source.Source.open(str(tmp_path / "d"))
    ds = pipeline.make_modality_dataset(src, "audio", "train", 4, training=True, with_ids=True,
                                 options=pipeline.PipelineOptions(cache="memory"))
    for path in source.shard_paths(src, "audio", "train"):
        os.remove(path)  # every later epoch must come from memory
    epochs = [_items_of(_batches(ds)) for _ in range(3)]
    assert epochs[0] == epochs[1] == epochs[2] and len(epochs[0]) == 24
    orders = [[r for b in _batches(ds) for r in b["recording"].tolist()] for _ in range(2)]
    assert orders[0] != orders[1]  # reshuffled each epoch, over the whole split


def test_auto_cache_follows_the_size_limit(cls_data):
    d, _, _ = cls_data
    src = source.Source.open(d)
    size = sum(os.path.getsize(p) for p in source.shard_paths(src, "audio", "train"))
    assert pipeline.uses_cache(src, "audio", "train", pipeline.PipelineOptions())  # KBs << 1 GiB
    assert not pipeline.uses_cache(src, "audio", "train", pipeline.PipelineOptions(cache_limit_mb=0))
    assert size > 0 and not pipeline.uses_cache(src, "audio", "train", pipeline.PipelineOptions(cache="none"))
    with pytest.raises(ValueError, match="cache must be one of"):
        pipeline.PipelineOptions(cache="disk")


def test_cached_split_must_match_the_manifest_count(cls_data):
    d, manifest, _ = cls_data
    raw = manifest.to_json()
    raw["modalities"]["audio"]["counts"]["train"] += 1
    Manifest.from_json(raw).save(d)
    with pytest.raises(DataError, match="split 'train' counts 25 examples but its shards list 24"):
        source.Source.open(d)  # a manifest at odds with itself is refused up front
    raw["modalities"]["audio"]["shards"]["train"][0]["examples"] += 1
    Manifest.from_json(raw).save(d)
    with pytest.raises(DataError, match="hold 24 examples but the manifest lists 25"):
        pipeline.make_modality_dataset(source.Source.open(d), "audio", "train", 4,
                                options=pipeline.PipelineOptions(cache="memory"))


def test_shift_labels_back_matches_hand_example():
    lab = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    np.testing.assert_array_equal(pipeline.shift_labels_back(lab, 2).numpy()[:, 0], [3, 4, 4, 4])
    np.testing.assert_array_equal(pipeline.shift_labels_back(lab, 9).numpy()[:, 0], [4, 4, 4, 4])


def test_different_corpora_per_modality(tmp_path):
    write_classification(tmp_path / "a", dims={"audio": 6}, seed=1)
    write_classification(tmp_path / "v", dims={"video": 9}, seed=2)
    src = {"audio": source.Source.open(str(tmp_path / "a")), "video": source.Source.open(str(tmp_path / "v"))}
    b = _batches(pipeline.make_mixed_dataset(src, "video", {"audio": 2, "video": 4}))[0]
    assert b["audio"]["features"].shape[2] == 6 and b["video"]["features"].shape[2] == 9


def test_incompatible_label_sets_are_rejected(tmp_path):
    write_classification(tmp_path / "a", dims={"audio": 6})
    with DatasetWriter(str(tmp_path / "v"), "v", "classification", ("x", "y"), {"video": 2}) as w:
        w.add(Item("video", np.zeros((1, 2)), 0, recording="r"))
    src = {"audio": source.Source.open(str(tmp_path / "a")), "video": source.Source.open(str(tmp_path / "v"))}
    with pytest.raises(DataError, match="disagree on the task or label set"):
        pipeline.make_mixed_dataset(src, "audio", {"audio": 2, "video": 2})


def test_missing_and_truncated_shards_are_named(cls_data):
    d, manifest, _ = cls_data
    shard = manifest.modalities["audio"].shards["train"][0].path
    path = os.path.join(d, shard)
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) - 7])
    with pytest.raises(DataError, match="truncated or modified") as err:
        pipeline.make_modality_dataset(source.Source.open(d), "audio", "train", 4)
    assert shard in str(err.value)
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        parse.verify_shards([path])
    assert path in str(err.value)
    os.remove(path)
    with pytest.raises(DataError, match="missing"):
        pipeline.make_modality_dataset(source.Source.open(d), "audio", "train", 4)


def test_missing_modality_or_split(tmp_path):
    write_classification(tmp_path / "a", dims={"audio": 6}, n=(6, 0, 3))
    src = source.Source.open(str(tmp_path / "a"))
    with pytest.raises(DataError, match="no video features"):
        pipeline.make_modality_dataset(src, "video", "train", 2)
    with pytest.raises(DataError, match="no audio shards for split 'dev'"):
        pipeline.make_modality_dataset(src, "audio", "dev", 2)


def _foreign_shard(tmp_path, mutate, task="classification"):
    """A data set whose one shard was written by another tool (bypassing checks).

    Record 1 (recording ``audio-train-1``) of the first audio training shard
    is replaced by ``mutate(example)``; the manifest records the new size.
    """
    if task == "classification":
        manifest, _ = write_classification(tmp_path / "f", dims={"audio": 6}, n=(3, 1, 1))
    else:
        manifest, _ = write_regression(tmp_path / "f", n=(3, 1, 1), frames=(12, 20),
                                       dims={"audio": 3})
    shard = manifest.modalities["audio"].shards["train"][0]
    path = os.path.join(tmp_path / "f", shard.path)
    recs = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    ex = tf.train.Example.FromString(recs[1])
    mutate(ex)
    recs[1] = ex.SerializeToString()
    with tf.io.TFRecordWriter(path) as w:
        for r in recs:
            w.write(r)
    raw = manifest.to_json()
    raw["modalities"]["audio"]["shards"]["train"][0]["bytes"] = os.path.getsize(path)
    Manifest.from_json(raw).save(str(tmp_path / "f"))
    return source.Source.open(str(tmp_path / "f")), path


def _frames(ex):
    return ex.features.feature[schema.KEY_SHAPE].int64_list.value[0]


def _set_features(ex, arr):
    f = ex.features.feature
    f[schema.KEY_FEATURES].bytes_list.value[0] = np.asarray(arr, "<f4").tobytes()
    f[schema.KEY_SHAPE].int64_list.value[:] = list(np.shape(arr))


def _set_label_dims(ex, shape, n_values=None):
    f = ex.features.feature
    n = int(np.prod(shape)) if n_values is None else n_values
    f[schema.KEY_LABEL_DIMS].float_list.value[:] = [0.5] * n
    f[schema.KEY_LABEL_DIMS_SHAPE].int64_list.value[:] = list(shape)


def _set(key, kind, value):
    def mutate(ex):
        getattr(ex.features.feature[key], kind).value[:] = [value]
    return mutate


def _with_inf(dim):
    def mutate(ex):
        x = np.zeros((_frames(ex), dim), np.float32)
        x[-1, -1] = -np.inf
        _set_features(ex, x)
    return mutate


BAD_UTTERANCES = {  # classification records (audio dimension 6, labels 0..2)
    "dimension": (lambda ex: _set_features(ex, np.zeros((2, 5))),
                  "feature dimension 5 differs from the manifest"),
    "nan": (lambda ex: _set_features(ex, np.full((2, 6), np.nan)), "NaN/inf features"),
    "inf": (_with_inf(6), "NaN/inf features"),
    "label": (_set(schema.KEY_LABEL_CLASS, "int64_list", 9),
              "label 9 outside the label set (labels are 0..2)"),
    "negative label": (_set(schema.KEY_LABEL_CLASS, "int64_list", -1),
                       "label -1 outside the label set"),
    "modality": (_set(schema.KEY_MODALITY, "bytes_list", b"video"),
                 "a video record where audio records are expected"),
    "version": (_set(schema.KEY_VERSION, "int64_list", 0), "another TFRecord schema version 0"),
    "bytes": (lambda ex: ex.features.feature[schema.KEY_SHAPE].int64_list.value.__setitem__(
        0, 5), "feature bytes do not match shape [5, 6]"),
}
BAD_SEQUENCES = {  # regression records (audio dimension 3, labels [T, 2])
    "dimension": (lambda ex: _set_features(ex, np.zeros((_frames(ex), 2))),
                  "feature dimension 2 differs from the manifest"),
    "nan": (lambda ex: _set_features(ex, np.full((_frames(ex), 3), np.nan)), "NaN/inf features"),
    "inf": (_with_inf(3), "NaN/inf features"),
    "label frames": (lambda ex: _set_label_dims(ex, (_frames(ex) - 1, 2)),
                     "do not match the {T} feature frames and 2 label dimensions"),
    "label width": (lambda ex: _set_label_dims(ex, (_frames(ex), 1)),
                    "per-frame labels of shape [{T}, 1] do not match"),
    "label values": (lambda ex: _set_label_dims(ex, (_frames(ex), 2), 3),
                     "label_dims hold 3 values but label_dims_shape is [{T}, 2]"),
    "modality": (_set(schema.KEY_MODALITY, "bytes_list", b"video"),
                 "a video record where audio records are expected"),
}


def _read_error(src, split="train", training=False, batch_size=2, **options):
    """The DataError reading ``src``'s audio ``split`` ends with.

    A failure inside ``tf.data`` is traced with ``data_error_from``, as
    training does.
    """
    shards = [(p, src.manifest.compression) for p in source.shard_paths(src, "audio", split)]
    try:
        _batches(pipeline.make_modality_dataset(src, "audio", split, batch_size, training=training,
                                         options=pipeline.PipelineOptions(**options)))
    except DataError as err:
        return str(err)
    except (tf.errors.OpError, UnicodeDecodeError) as err:
        found = parse.data_error_from(err, shards)
        assert found is not None, f"not traced to the data: {err}"
        return str(found)
    pytest.fail("the bad data was read without an error")


@pytest.mark.parametrize("case", sorted(BAD_UTTERANCES))
def test_bad_records_on_the_utterance_path_name_shard_recording_and_problem(tmp_path, case):
    mutate, msg = BAD_UTTERANCES[case]
    src, path = _foreign_shard(tmp_path, mutate)
    for cache, training in (("none", False), ("memory", True)):  # streamed, cached
        text = _read_error(src, training=training, cache=cache)
        assert text.startswith(f"{schema.BAD_RECORD} 'audio-train-1' in {path}: "), text
        assert msg in text
        if case == "dimension":  # the manifest that disagrees is named too
            assert src.manifest_path in text


@pytest.mark.parametrize("case", sorted(BAD_SEQUENCES))
def test_bad_records_on_the_windowed_path_name_shard_recording_and_problem(tmp_path, case):
    mutate, msg = BAD_SEQUENCES[case]
    frames = {}
    src, path = _foreign_shard(tmp_path, lambda ex: (frames.setdefault("T", _frames(ex)),
                                                     mutate(ex)), task="regression")
    for cache in ("none", "memory"):
        text = _read_error(src, training=True, cache=cache, window=5, window_shift=3,
                           label_delay_frames=1)
        assert text.startswith(f"{schema.BAD_RECORD} 'audio-train-1' in {path}: "), text
        assert msg.format(**frames) in text


def test_streamed_bad_record_fails_with_the_message_in_the_tf_error(tmp_path):
    src, path = _foreign_shard(tmp_path, BAD_UTTERANCES["nan"][0])
    ds = pipeline.make_modality_dataset(src, "audio", "train", 1, options=pipeline.PipelineOptions(cache="none"))
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        _batches(ds)  # the batch that holds the record fails
    assert schema.BAD_RECORD in err.value.message and path in err.value.message
    assert str(parse.data_error_from(err.value)) == (f"{schema.BAD_RECORD} 'audio-train-1' in "
                                                 f"{path}: NaN/inf features")


def _damage(path, how):
    raw = bytearray(open(path, "rb").read())
    if how == "flipped":
        raw[len(raw) // 2] ^= 0xFF  # same size, broken CRC: found only while reading
    else:
        raw = raw[:-9]
    open(path, "wb").write(bytes(raw))


@pytest.mark.parametrize("how", ["flipped", "truncated"])
@pytest.mark.parametrize("path_kind", ["utterance", "windowed"])
def test_damaged_shard_is_named_on_both_paths(tmp_path, how, path_kind):
    if path_kind == "utterance":
        manifest, _ = write_classification(tmp_path / "d", dims={"audio": 6}, n=(6, 1, 1))
        opts = dict(training=False)
    else:
        manifest, _ = write_regression(tmp_path / "d", n=(3, 1, 1), frames=(12, 20),
                                       dims={"audio": 3})
        opts = dict(training=True, window=5)
    sh = manifest.modalities["audio"].shards["train"][0]
    path = os.path.join(tmp_path / "d", sh.path)
    _damage(path, how)
    raw = manifest.to_json()  # the manifest agrees on the size: found only while reading
    raw["modalities"]["audio"]["shards"]["train"][0]["bytes"] = os.path.getsize(path)
    Manifest.from_json(raw).save(str(tmp_path / "d"))
    for cache in ("none", "memory"):
        text = _read_error(source.Source.open(str(tmp_path / "d")), cache=cache, **opts)
        assert text.startswith(f"{path}: corrupt or truncated TFRecord after "), text


def test_demo_cache_is_keyed_by_the_generator(tmp_path):
    from emobed_tf.experiments import demo

    first = demo.ensure_demo("demo-recola", str(tmp_path))
    assert demo.fingerprint() in first and os.path.isfile(os.path.join(first, "manifest.json"))
    assert demo.ensure_demo("demo-recola", str(tmp_path)) == first  # reused, not regenerated
    m = load_manifest(first)
    assert m.extra["simulated"] is True and m.modalities["audio"].counts == {
        "train": 4, "dev": 3, "test": 3}


def test_batches_are_padded_to_bucketed_lengths_with_exact_masks(cls_data):
    import tensorflow as tf

    path, manifest, items = cls_data  # lengths 1..5 frames
    src = source.Source.open(path)
    lengths = {it.recording: len(it.features) for it in items if it.modality == "audio"
               and it.split == "dev"}
    for cache in ("memory", "none"):
        ds = pipeline.make_modality_dataset(src, "audio", "dev", 5, with_ids=True,
                                     options=pipeline.PipelineOptions(cache=cache))
        for b in ds:
            t_max = max(lengths[r.decode()] for r in b["recording"].numpy())
            assert b["features"].shape[1] == (1 if t_max == 1 else 8)
            got = dict(zip([r.decode() for r in b["recording"].numpy()],
                           b["mask"].numpy().sum(1)))
            assert got == {r: lengths[r] for r in got}
            assert float(tf.reduce_sum(tf.abs(b["features"]) * tf.cast(
                ~b["mask"], tf.float32)[..., None])) == 0.0


def test_demo_is_a_small_target_corpus_and_a_larger_auxiliary_one_split_by_speaker(tmp_path):
    from emobed_tf.experiments import demo

    demo.write_demo_omg(str(tmp_path / "d"), sizes={"audio": (8, 5), "video": (12, 4)})
    src = source.Source.open(str(tmp_path / "d"))
    for mod, n_spk, per in (("audio", 8, 5), ("video", 12, 4)):
        stats = speakers.speaker_statistics(src, mod)
        assert len(stats) == n_spk and all(s.items == per for s in stats.values())
        info = src.manifest.modalities[mod]
        assert sum(info.counts.values()) == n_spk * per
        by_split = {}
        for split in info.shards:
            ds = pipeline.make_modality_dataset(src, mod, split, 64, with_ids=True)
            by_split[split] = {s.decode() for b in ds for s in b["speaker"].numpy()}
        assert not (by_split["train"] & by_split["test"]) and not (by_split["dev"] &
                                                                  by_split["test"])
    # the two corpora are different people: crossval never has to drop auxiliary items
    assert not set(speakers.speaker_statistics(src, "audio")) & set(speakers.speaker_statistics(src, "video"))


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_speaker_normalisation_against_numpy(tmp_path, cache):
    """Each item standardised with its speaker's own frames (all splits); a speaker with
    fewer than MIN_SPEAKER_FRAMES frames and items without a speaker get the corpus's."""
    rng = np.random.default_rng(0)
    items = []
    with DatasetWriter(str(tmp_path / "d"), "toy", "classification", ["a", "b"],
                       {"audio": 3}) as w:
        for i in range(30):
            spk = ["loud", "quiet", "tiny", ""][i % 4] if i < 28 else "loud"
            if spk == "tiny" and i > 8:  # 'tiny' keeps 3 one-frame items: below the minimum
                spk = "quiet"
            scale = {"loud": 5.0, "quiet": 0.5, "tiny": 1.0, "": 2.0}[spk]
            x = (rng.normal(size=(1 + i % 3, 3)) * scale + scale).astype(np.float32)
            if spk == "tiny":
                x = x[:1]
            split = "train" if i < 20 else "test"
            it = Item("audio", x, i % 2, speaker=spk, recording=f"r{i}", split=split)
            w.add(it)
            items.append(it)
    src = source.Source.open(str(tmp_path / "d"))
    info = src.manifest.modalities["audio"]
    frames = {}
    for it in items:
        frames.setdefault(it.speaker, []).append(it.features.astype(np.float64))
    assert sum(len(f) for f in frames["tiny"]) < speakers.MIN_SPEAKER_FRAMES
    want_stats = {s: (np.concatenate(f).mean(0), np.concatenate(f).std(0))
                  for s, f in frames.items() if s and s != "tiny"}
    opts = pipeline.PipelineOptions(cache=cache, normalize="speaker")
    seen = 0
    for split in ("train", "test"):
        for b in _batches(pipeline.make_modality_dataset(src, "audio", split, 7, with_ids=True,
                                                  options=opts)):
            for i, rec in enumerate(b["recording"]):
                it = next(x for x in items if x.recording == rec.decode())
                t = it.features.shape[0]
                mean, std = want_stats.get(it.speaker, (np.asarray(info.mean),
                                                        np.asarray(info.std)))
                np.testing.assert_allclose(b["features"][i, :t], (it.features - mean) / std,
                                           rtol=1e-4, atol=1e-4)
                np.testing.assert_array_equal(b["features"][i, t:], 0)
                seen += 1
    assert seen == len(items)
    with pytest.raises(ValueError, match="normalize must be one of"):
        pipeline.PipelineOptions(normalize="utterance")


def test_speaker_statistics_are_read_again_after_a_rewrite(tmp_path):
    def write(offset):
        with DatasetWriter(str(tmp_path / "d"), "toy", "classification", ["a", "b"],
                           {"audio": 2}, overwrite=True) as w:
            for i in range(12):
                w.add(Item("audio", np.full((1, 2), float(i % 3) + offset, np.float32), i % 2,
                           speaker="s1", recording=f"r{i}"))

    write(0.0)
    keys, means, _ = speakers.speaker_norm_table(source.Source.open(str(tmp_path / "d")), "audio")
    assert keys == ["s1"] and means[0].tolist() == [1.0, 1.0]
    write(100.0)  # same shard names and sizes, other values
    _, means, _ = speakers.speaker_norm_table(source.Source.open(str(tmp_path / "d")), "audio")
    assert means[0].tolist() == [101.0, 101.0]
