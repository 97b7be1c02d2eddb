"""Corpus readers of tfrecords_tools: RAVDESS, face images, OpenFace CSVs, feature tables,
label maps, the record ``meta`` field and average-pooled Keras face descriptors."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from emobed_tf.data import source
from emobed_tf.records import manifest, parse, schema
from tests.tools.media_fixtures import tone, write_video, write_wav
from tfrecords_tools import corpora, extract, face
from tfrecords_tools.corpora import CorpusError


def _records(out, mod, split="train"):
    paths = source.shard_paths(source.Source.open(out), mod, split)
    return [schema.decode_example(r.numpy()) for r in tf.data.TFRecordDataset(paths)]


def _failures(out):
    with open(os.path.join(out, "failures.csv")) as fh:
        return list(csv.DictReader(fh))


def _summary(out):
    with open(os.path.join(out, "extraction_summary.json")) as fh:
        return json.load(fh)


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()
    return path


# -- RAVDESS -------------------------------------------------------------------------


def test_ravdess_name_fields():
    info = corpora.parse_ravdess_name("01-01-05-02-01-02-07")
    assert info == {"modalities": ("audio", "video"), "vocal_channel": "speech",
                    "emotion": "angry", "intensity": "strong", "statement": "01",
                    "repetition": "02", "actor": "07", "take": "01-05-02-01-02-07"}
    assert json.loads(corpora.ravdess_meta(info)) == {
        "emotion": "angry", "intensity": "strong", "statement": "01", "repetition": "02",
        "vocal_channel": "speech", "take": "01-05-02-01-02-07"}
    song = corpora.parse_ravdess_name("02-02-08-01-02-01-24")
    assert (song["modalities"], song["vocal_channel"], song["emotion"], song["actor"]) == (
        ("video",), "song", "surprised", "24")
    for stem, msg in [("03-01-09-01-01-01-01", "emotion code 09"),
                      ("04-01-01-01-01-01-01", "modality code 04"),
                      ("03-01-01-03-01-01-01", "intensity code 03"),
                      ("03-01-01-01-01-01", "does not follow the RAVDESS pattern"),
                      ("03-01-01-01-01-01-1a", "does not follow")]:
        with pytest.raises(ValueError, match=msg):
            corpora.parse_ravdess_name(stem)


def test_ravdess_jobs_modalities_channels_and_bad_names(tmp_path):
    root = tmp_path / "ravdess"
    av = _touch(str(root / "Actor_07" / "01-01-05-02-01-02-07.mp4"))
    vo = _touch(str(root / "Actor_07" / "02-01-08-01-02-01-07.mp4"))
    ao = _touch(str(root / "Actor_01" / "03-01-03-01-02-01-01.wav"))
    song = _touch(str(root / "Actor_02" / "03-02-04-02-01-01-02.flac"))
    bad = _touch(str(root / "Actor_02" / "03-01-09-01-01-01-02.wav"))
    notes = _touch(str(root / "notes.txt"))
    txt = _touch(str(root / "Actor_01" / "03-01-01-01-01-01-01.txt"))
    dup = _touch(str(root / "copy" / "03-01-03-01-02-01-01.wav"))

    r = corpora.ravdess_jobs(str(root))
    got = [(j.key, j.modality, j.path, j.label, j.speaker, j.recording, j.split)
           for j in r.jobs]
    assert got == [
        ("audio/03-01-03-01-02-01-01", "audio", ao, "happy", "01", "03-01-03-01-02-01-01", "train"),
        ("audio/03-02-04-02-01-01-02", "audio", song, "sad", "02", "03-02-04-02-01-01-02", "train"),
        ("audio/01-01-05-02-01-02-07", "audio", av, "angry", "07", "01-01-05-02-01-02-07", "train"),
        ("video/01-01-05-02-01-02-07", "video", av, "angry", "07", "01-01-05-02-01-02-07", "train"),
        ("video/02-01-08-01-02-01-07", "video", vo, "surprised", "07", "02-01-08-01-02-01-07",
         "train"),
    ]
    assert all(j.corpus == "ravdess" and j.label_class == -1 for j in r.jobs)
    # the audio-visual file's two jobs share recording, speaker and the take id
    assert r.jobs[2].meta == r.jobs[3].meta
    assert json.loads(r.jobs[2].meta)["take"] == "01-05-02-01-02-07"
    assert json.loads(r.jobs[1].meta)["vocal_channel"] == "song"
    reasons = {f["path"]: (f["kind"], f["reason"]) for f in r.skipped}
    assert reasons[bad] == ("bad_name", "name '03-01-09-01-01-01-02': emotion code 09 is not one "
                                        "of 01, 02, 03, 04, 05, 06, 07, 08")
    assert reasons[notes][0] == "bad_name" and "'notes'" in reasons[notes][1]
    assert reasons[txt][0] == "not_media" and "'.txt'" in reasons[txt][1]
    assert reasons[dup] == ("duplicate", f"same RAVDESS name as {ao}")
    assert len(r.skipped) == 4

    speech = corpora.ravdess_jobs(str(root), channels=("speech",))
    assert [j.key for j in speech.jobs] == [r.jobs[i].key for i in (0, 2, 3, 4)]
    songs = [f for f in speech.skipped if f["kind"] == "channel_not_selected"]
    assert songs == [{"path": song, "modality": "audio", "kind": "channel_not_selected",
                      "reason": "vocal channel song not selected (--ravdess-channels speech)"}]
    with pytest.raises(CorpusError, match="choose among speech,song"):
        corpora.ravdess_jobs(str(root), channels=("talk",))


def _small_face_model(path, channels=3, size=24):
    inp = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="feat")(x)
    keras.Model(inp, keras.layers.Dense(2, name="out")(x)).save(path)
    return path


def test_ravdess_extraction_end_to_end(tmp_path, capsys):
    root = tmp_path / "RAVDESS"
    (root / "Actor_01").mkdir(parents=True)
    (root / "Actor_02").mkdir()
    write_wav(str(root / "Actor_01" / "03-01-05-02-01-02-01.wav"), tone(0.6, freq=200))
    write_wav(str(root / "Actor_01" / "03-01-02-01-01-01-01.wav"), tone(0.6, freq=250, seed=1))
    write_video(str(root / "Actor_02" / "01-01-03-01-02-01-02.mp4"), 0.5, fps=4)
    write_wav(str(root / "Actor_02" / "take2.wav"), tone(0.5))
    model = _small_face_model(str(tmp_path / "enc.keras"))
    out = str(tmp_path / "out")
    assert extract.main(["--corpus", "ravdess", "--ravdess-dir", str(root), "--out", out,
                         "--label-map", "calm=,angry=anger,happy=happiness",
                         "--labels", "anger,happiness", "--test-speakers", "02",
                         "--workers", "1", "--encoder", "keras", "--encoder-model", model,
                         "--layer", "conv", "--layer-pool", "avg", "--no-detect"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("5 inputs -> 2 audio items, 1 video items; 0 failed, 2 skipped "
                           "(1 bad name, 1 dropped by label map)")
    assert "dropped by the label map: calm 1" in said
    m = manifest.load_manifest(out)
    assert m.name == "ravdess" and m.label_names == ("anger", "happiness")
    assert m.modalities["audio"].counts == {"train": 1, "test": 1}
    assert m.modalities["video"].counts == {"test": 1} and m.modalities["video"].dim == 4
    assert m.extra["dropped_by_label_map"] == {"calm": 1} and m.extra["failures"] == 2
    (tr,), (te,) = _records(out, "audio"), _records(out, "audio", "test")
    assert (tr.recording, tr.speaker, tr.label_class, tr.corpus) == (
        "03-01-05-02-01-02-01", "01", 0, "ravdess")
    assert json.loads(tr.meta) == {"emotion": "angry", "intensity": "strong", "statement": "01",
                                   "repetition": "02", "vocal_channel": "speech",
                                   "take": "01-05-02-01-02-01"}
    (vid,) = _records(out, "video", "test")
    assert (te.recording, te.speaker, te.label_class) == ("01-01-03-01-02-01-02", "02", 1)
    assert (vid.recording, vid.speaker, vid.label_class, vid.meta) == (
        te.recording, "02", 1, te.meta)
    assert json.loads(te.meta)["take"] == "01-03-01-02-01-02" and tr.features.shape == (1, 88)
    fails = {os.path.basename(f["path"]): f["reason"] for f in _failures(out)}
    assert fails == {"03-01-02-01-01-01-01.wav": "label 'calm' dropped by the label map",
                     "take2.wav": "name 'take2' does not follow the RAVDESS pattern "
                                  "MM-VV-EE-II-SS-RR-AA (seven two-digit fields)"}
    s = _summary(out)
    assert s["inputs"] == 5 and s["skipped"] == 2 and s["failed"] == 0
    assert s["skipped_by_kind"] == {"bad_name": 1, "dropped_by_label_map": 1}


def test_speaker_splits_check_the_ids(tmp_path):
    root = tmp_path / "r"
    _touch(str(root / "03-01-01-01-01-01-01.wav"))
    _touch(str(root / "03-01-01-01-01-01-02.wav"))
    _touch(str(root / "03-01-01-01-01-01-03.wav"))
    r = corpora.assign_speaker_splits(corpora.ravdess_jobs(str(root)), ["01"], ["03"])
    assert [(j.speaker, j.split) for j in r.jobs] == [("01", "test"), ("02", "train"),
                                                      ("03", "dev")]
    with pytest.raises(CorpusError, match=r"speakers \['1'\] .* its speakers are \['01', "):
        corpora.assign_speaker_splits(corpora.ravdess_jobs(str(root)), ["1"])
    with pytest.raises(CorpusError, match="in both"):
        corpora.assign_speaker_splits(corpora.ravdess_jobs(str(root)), ["01"], ["01"])


# -- face images ---------------------------------------------------------------------


def _png(path, value=100, size=(10, 12)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (*size, 3)).astype(np.uint8)).save(path)
    return path


def test_images_from_a_labels_csv(tmp_path):
    base = tmp_path / "faces"
    a = _png(str(base / "images" / "a.png"), 1)
    b = _png(str(base / "images" / "sub" / "b.jpg"), 2)
    c = _png(str(base / "extra" / "c.png"), 3)  # relative to the CSV's folder
    (base / "labels.csv").write_text(
        "image,emotion,subject,split\n"
        "a.png,happiness,s1,train\n"
        "sub/b.jpg,anger,s2,test\n"
        "extra/c.png,anger,s1,dev\n"
        "gone.png,fear,s3,train\n")
    r = corpora.image_jobs(str(base / "images"), str(base / "labels.csv"))
    got = [(j.path, j.label, j.speaker, j.split, j.recording, j.corpus, j.modality)
           for j in r.jobs]
    assert got == [(a, "happiness", "s1", "train", "a", "faces", "video"),
                   (b, "anger", "s2", "test", "sub/b", "faces", "video"),
                   (c, "anger", "s1", "dev", "extra/c", "faces", "video")]
    assert r.jobs[1].where == f"{base / 'labels.csv'}:3"
    (miss,) = r.skipped
    assert miss["kind"] == "missing_file" and miss["modality"] == "video"
    assert miss["reason"] == (f"{base / 'labels.csv'}:5: image file not found (looked for "
                              f"{base / 'images' / 'gone.png'} and {base / 'gone.png'})")
    # path/label/no speaker column, and a named corpus
    (base / "l2.csv").write_text("path,label\nimages/a.png,x\n")
    (j,) = corpora.image_jobs(None, str(base / "l2.csv"), corpus="mine").jobs
    assert (j.path, j.label, j.speaker, j.corpus) == (a, "x", "", "mine")
    (base / "l3.csv").write_text("file,emotion\na.png,x\n")
    with pytest.raises(CorpusError, match=r"l3.csv: no image column \(image or path"):
        corpora.image_jobs(str(base / "images"), str(base / "l3.csv"))
    (base / "l4.csv").write_text("image,emotion,split\na.png,x,valid\n")
    with pytest.raises(CorpusError, match="l4.csv:2: split 'valid' is not train/dev/test"):
        corpora.image_jobs(str(base / "images"), str(base / "l4.csv"))


def test_images_from_class_folders(tmp_path):
    d = tmp_path / "fer"
    h = _png(str(d / "happy" / "1.png"))
    s1 = _png(str(d / "sad" / "x" / "2.jpeg"))
    s2 = _png(str(d / "sad" / "3.bmp"))
    (d / "readme.txt").write_text("x")
    (d / "sad" / "notes.txt").write_text("x")
    r = corpora.image_jobs(str(d))
    assert [(j.path, j.label, j.recording, j.speaker, j.split, j.corpus) for j in r.jobs] == [
        (h, "happy", "happy/1", "", "train", "fer"),
        (s2, "sad", "sad/3", "", "train", "fer"), (s1, "sad", "sad/x/2", "", "train", "fer")]
    assert [(os.path.basename(f["path"]), f["kind"]) for f in r.skipped] == [
        ("readme.txt", "no_class"), ("notes.txt", "not_image")]


def test_images_extraction_with_average_pooled_descriptors(tmp_path):
    d = tmp_path / "faces"
    a = _png(str(d / "anger" / "a.png"), 5, (30, 20))
    _png(str(d / "calm" / "b.png"), 6)
    _png(str(d / "joy" / "c.png"), 7, (16, 16))
    model = _small_face_model(str(tmp_path / "enc.keras"))
    out = str(tmp_path / "out")
    assert extract.main(["--corpus", "images", "--images-dir", str(d), "--out", out,
                         "--label-map", "calm=,joy=happiness", "--encoder", "keras",
                         "--encoder-model", model, "--layer", "conv", "--layer-pool", "avg",
                         "--no-detect"]) == 0
    m = manifest.load_manifest(out)
    assert m.label_names == ("anger", "happiness") and m.modalities["video"].dim == 4
    recs = _records(out, "video")
    assert [(r.recording, r.label_class, r.corpus) for r in recs] == [
        ("anger/a", 0, "faces"), ("joy/c", 1, "faces")]
    enc = face.KerasModelEncoder(model, "conv", pool="avg")
    img = np.asarray(Image.open(a).convert("RGB"))
    np.testing.assert_allclose(recs[0].features, enc(face.resize(img, (24, 24))[None]),
                               rtol=1e-5, atol=1e-6)
    assert [f["reason"] for f in _failures(out)] == ["label 'calm' dropped by the label map"]


# -- OpenFace ------------------------------------------------------------------------

# the 17 AU intensities and 18 presences of OpenFace 2, written in another order than read
AU_R = [f"AU{n:02d}_r" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)]
AU_C = [f"AU{n:02d}_c" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28,
                                 45)]
OF_HEADER = (["frame", "face_id", "timestamp", "confidence", "success", "gaze_0_x",
              "gaze_angle_x", "gaze_angle_y", "pose_Tx", "pose_Rx", "pose_Ry", "pose_Rz"]
             + AU_C[::-1] + AU_R[::-1])
OF_ORDER = AU_R + AU_C + ["gaze_angle_x", "gaze_angle_y", "pose_Rx", "pose_Ry", "pose_Rz"]


def _openface_csv(path, conf, success, seed):
    """An OpenFace-style CSV (``frame, face_id, ...`` header); returns the value table."""
    rng = np.random.default_rng(seed)
    n = len(conf)
    vals = np.round(rng.uniform(-2, 5, size=(n, len(OF_HEADER))), 4)
    vals[:, 0] = np.arange(1, n + 1)
    vals[:, 1] = 0
    vals[:, 2] = np.arange(n) * 0.033
    vals[:, 3] = conf
    vals[:, 4] = success
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(", ".join(OF_HEADER) + "\n")
        for row in vals:
            fh.write(", ".join(f"{v:g}" for v in row) + "\n")
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)  # the values as written


def _kept(vals, min_conf=0.8):
    keep = (vals[:, 4] != 0) & (vals[:, 3] >= min_conf)
    return vals[keep][:, [OF_HEADER.index(c) for c in OF_ORDER]]


@pytest.fixture
def openface_dir(tmp_path):
    d = tmp_path / "openface"
    tables = {
        "01-01-05-02-01-02-03": _openface_csv(str(d / "01-01-05-02-01-02-03.csv"),
                                              [0.98, 0.5, 0.9, 0.95, 0.85], [1, 1, 0, 1, 1], 0),
        "02-01-03-01-01-01-04": _openface_csv(str(d / "a" / "02-01-03-01-01-01-04.csv"),
                                              [0.99, 0.97, 0.8], [1, 1, 1], 1),
        "01-01-04-01-01-01-03": _openface_csv(str(d / "01-01-04-01-01-01-03.csv"),
                                              [0.3, 0.99], [1, 0], 2),
        "clip_x": _openface_csv(str(d / "clip_x.csv"), [0.9], [1], 3),
    }
    (d / "01-01-05-02-01-02-03.hog").write_bytes(b"\0")  # OpenFace's other outputs
    (d / "01-01-05-02-01-02-03_of_details.txt").write_text("x")
    return d, tables


def test_openface_csv_columns_and_dropped_frames(openface_dir):
    d, tables = openface_dir
    clip = corpora.read_openface_csv(str(d / "01-01-05-02-01-02-03.csv"))
    assert clip.columns == OF_ORDER and (clip.dropped, clip.read) == (2, 5)
    assert clip.frames.shape == (3, 40) and (clip.other_faces, clip.face_ids) == (0, (0,))
    assert clip.step_s == pytest.approx(0.033)
    np.testing.assert_array_equal(clip.frames, _kept(tables["01-01-05-02-01-02-03"]))
    clip = corpora.read_openface_csv(str(d / "01-01-05-02-01-02-03.csv"),
                                     groups=("pose", "au_c"), min_confidence=0.95)
    assert clip.columns == AU_C + ["pose_Rx", "pose_Ry", "pose_Rz"]
    assert len(clip.frames) == 2  # confidences .98 and .95, success 1
    with pytest.raises(CorpusError, match="choose among au_r,au_c,gaze,pose"):
        corpora.read_openface_csv(str(d / "clip_x.csv"), groups=("eyes",))


@pytest.mark.parametrize("pool", ["mean", "functionals", "frames"])
def test_openface_items_from_ravdess_names(openface_dir, pool):
    d, tables = openface_dir
    r = corpora.openface_items(str(d), pool=pool)
    assert [(j.recording, j.label, j.speaker, j.modality, j.corpus) for j in r.jobs] == [
        ("01-01-05-02-01-02-03", "angry", "03", "video", "ravdess"),
        ("02-01-03-01-01-01-04", "happy", "04", "video", "ravdess")]
    assert json.loads(r.jobs[0].meta)["intensity"] == "strong"
    for j in r.jobs:
        kept = _kept(tables[j.recording])
        want = {"mean": kept.mean(0, keepdims=True),
                "functionals": np.concatenate([kept.mean(0), kept.std(0)])[None],
                "frames": kept}[pool]
        assert r.features[j.key].dtype == np.float32
        np.testing.assert_allclose(r.features[j.key], want, rtol=1e-6, atol=1e-6)
    assert {os.path.basename(f["path"]): (f["kind"], f["reason"]) for f in r.skipped} == {
        "01-01-04-01-01-01-03.csv": ("no_usable_frame", "no usable frame: all 2 frames have "
                                     "success 0 or confidence < 0.8"),
        "clip_x.csv": ("bad_name", "name 'clip_x' does not follow the RAVDESS pattern "
                       "MM-VV-EE-II-SS-RR-AA (seven two-digit fields); without --labels-csv "
                       "the labels come from RAVDESS clip names")}
    assert r.stats["frames_read"] == 10 and r.stats["frames_dropped"] == 4
    assert r.stats["frames_dropped_per_clip"] == {"01-01-05-02-01-02-03": 2,
                                                  "01-01-04-01-01-01-03": 2}
    names = r.stats["feature_names"]
    assert names[:2] == (["AU01_r_mean", "AU02_r_mean"] if pool == "functionals"
                         else ["AU01_r", "AU02_r"])
    assert len(names) == r.features[r.jobs[0].key].shape[1]


def test_openface_with_a_labels_csv_end_to_end(openface_dir, tmp_path, capsys):
    d, tables = openface_dir
    lab = tmp_path / "labels.csv"
    lab.write_text("clip,emotion,actor,split\n"
                   "01-01-05-02-01-02-03,angry,03,train\n"
                   "clip_x.csv,sad,09,test\n"
                   "01-01-04-01-01-01-03,sad,03,train\n"
                   "never_made,sad,11,train\n")
    out = str(tmp_path / "of")
    assert extract.main(["--corpus", "openface", "--openface-dir", str(d), "--labels-csv",
                         str(lab), "--openface-pool", "functionals", "--openface-features",
                         "gaze,au_r", "--name", "ofc", "--out", out]) == 0
    said = capsys.readouterr().out
    assert "4 of 8 OpenFace frames dropped (success 0 or confidence < 0.8)" in said
    m = manifest.load_manifest(out)
    assert m.name == "ofc" and m.label_names == ("angry", "sad")
    assert m.modalities["video"].dim == 38 and m.modalities["video"].counts == {"train": 1,
                                                                                "test": 1}
    assert m.extra["frames_dropped"] == 4
    (rec,) = _records(out, "video")
    kept = _kept(tables["01-01-05-02-01-02-03"])[:, list(range(17)) + [35, 36]]  # au_r, gaze
    np.testing.assert_allclose(rec.features, np.concatenate([kept.mean(0), kept.std(0)])[None],
                               rtol=1e-6, atol=1e-6)
    assert (rec.speaker, rec.label_class, rec.meta) == ("03", 0, "")
    (t,) = _records(out, "video", "test")
    assert (t.recording, t.speaker, t.label_class) == ("clip_x", "09", 1)
    assert [(os.path.basename(f["path"]), f["reason"]) for f in _failures(out)] == [
        ("01-01-04-01-01-01-03.csv", "no usable frame: all 2 frames have success 0 or "
                                     "confidence < 0.8"),
        ("02-01-03-01-01-01-04.csv", f"clip '02-01-03-01-01-01-04' has no row in {lab}"),
        ("never_made.csv", f"{lab}:5: no OpenFace CSV for clip 'never_made'")]


def test_openface_bad_values_are_named(tmp_path):
    p = tmp_path / "o" / "03-01-01-01-01-01-01.csv"
    p.parent.mkdir()
    aus = ", ".join(AU_R + AU_C)
    ones = ", ".join(["1"] * (len(AU_R) + len(AU_C) - 1))
    p.write_text(f"frame, confidence, success, {aus}\n1, 0.9, 1, 0.5, {ones}\n"
                 f"2, 0.9, 1, n/a, {ones}\n")
    with pytest.raises(CorpusError, match=r"03-01-01-01-01-01-01.csv:3: column 'AU01_r': "
                                          r"'n/a' is not a number"):
        corpora.openface_items(str(p.parent), groups=("au_r", "au_c"))
    with pytest.raises(CorpusError, match=r"no columns \['gaze_angle_x', 'gaze_angle_y', "
                                          r"'pose_Rx', 'pose_Ry', 'pose_Rz'\] of "
                                          r"--openface-features gaze,pose"):
        corpora.openface_items(str(p.parent))


# -- feature tables ------------------------------------------------------------------


def test_table_round_trip_with_fallback_columns(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    path = tmp_path / "au.csv"
    rows = [("01-01-05-01-01-01-01", "01", "angry"), ("01-01-02-01-01-01-01", "01", "calm"),
            ("01-01-03-01-01-01-07", "07", "happy"), ("01-01-05-01-02-01-07", "07", "angry")]
    with open(path, "w") as fh:
        fh.write("clip,actor,emotion,AU01_r,AU02_r,AU45_c\n")
        for (c, a, e), v in zip(rows, x):
            fh.write(f"{c},{a},{e}," + ",".join(repr(float(f)) for f in v) + "\n")
    out = str(tmp_path / "t")
    assert extract.main(["--corpus", "table", "--table", str(path), "--modality", "video",
                         "--label-map", "calm=,angry=anger,happy=happiness", "--name", "ravdess",
                         "--out", out]) == 0
    m = manifest.load_manifest(out)
    assert m.label_names == ("anger", "happiness") and m.modalities["video"].dim == 3
    assert m.extra["feature_names"] == ["AU01_r", "AU02_r", "AU45_c"]
    recs = _records(out, "video")
    assert [(r.recording, r.speaker, r.corpus, r.label_class) for r in recs] == [
        ("01-01-05-01-01-01-01", "01", "ravdess", 0), ("01-01-03-01-01-01-07", "07", "ravdess", 1),
        ("01-01-05-01-02-01-07", "07", "ravdess", 0)]
    for r, want in zip(recs, x[[0, 2, 3]]):
        np.testing.assert_array_equal(r.features, want[None])  # bit-exact
    assert _failures(out) == [{"path": str(path), "modality": "video",
                               "kind": "dropped_by_label_map",
                               "reason": "label 'calm' dropped by the label map"}]


def test_table_errors_name_line_and_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,label,speaker,split,f1,f2\na,x,s1,train,1,2\nb,y,s2,dev,3,abc\n")
    with pytest.raises(CorpusError, match=r"t.csv:3: column 'f2': 'abc' is not a number"):
        corpora.table_items(str(p), "audio")
    p.write_text("id,label,speaker,f1\na,x,s1,nan\n")
    with pytest.raises(CorpusError, match=r"t.csv:2: column 'f1' is NaN/inf"):
        corpora.table_items(str(p), "audio")
    p.write_text("id,label,subject,f1\na,x,s1,1\n")
    with pytest.raises(CorpusError, match="t.csv: no speaker column"):
        corpora.table_items(str(p), "audio")
    r = corpora.table_items(str(p), "audio", speaker_column="subject")
    assert (r.jobs[0].speaker, r.jobs[0].split, r.stats["feature_names"]) == ("s1", "train", ["f1"])
    with pytest.raises(CorpusError, match="t.csv: no id column 'key'"):
        corpora.table_items(str(p), "audio", id_column="key", speaker_column="subject")
    p.write_text("id,label,speaker,f1\na,x,s1,1\na,y,s1,2\n")
    with pytest.raises(CorpusError, match="t.csv:3: id 'a' repeats line 2"):
        corpora.table_items(str(p), "audio")
    p.write_text("id;label;speaker;part;f1\na;x;s1;test;1.5\n")
    r = corpora.table_items(str(p), "audio", split_column="part")
    assert (r.jobs[0].split, r.features["audio/a"].tolist()) == ("test", [[1.5]])


# -- label maps ----------------------------------------------------------------------


def test_label_map_forms(tmp_path):
    assert corpora.parse_label_map("angry=anger, calm= ,happy=happiness") == {
        "angry": "anger", "calm": "", "happy": "happiness"}
    f = tmp_path / "map.json"
    f.write_text('{"angry": "anger", "calm": "", "sad": null}')
    assert corpora.parse_label_map(str(f)) == {"angry": "anger", "calm": "", "sad": ""}
    f = tmp_path / "map.txt"
    f.write_text("# RAVDESS -> faces\nangry=anger\n\ncalm=\n")
    assert corpora.parse_label_map(str(f)) == {"angry": "anger", "calm": ""}
    f.write_text("angry=anger\nfearful\n")
    with pytest.raises(CorpusError, match=r"map.txt:2: label map entry 'fearful' is not FROM=TO"):
        corpora.parse_label_map(str(f))
    with pytest.raises(CorpusError, match="mapped twice"):
        corpora.parse_label_map("a=b,a=c")
    with pytest.raises(CorpusError, match="no such file"):
        corpora.parse_label_map(str(tmp_path / "missing.json"))


def _jobs(labels, where="x.csv"):
    return corpora.Reading([corpora.Job(f"audio/{i}", "audio", f"f{i}.wav", "train", label=lab,
                                        where=f"{where}:{i + 2}")
                            for i, lab in enumerate(labels)])


def test_apply_labels_drops_counts_and_orders():
    r = corpora.apply_labels(_jobs(["angry", "calm", "happy", "calm", "neutral"]),
                             {"angry": "anger", "calm": "", "happy": "happiness", "sad": "x"})
    assert r.label_names == ("anger", "happiness", "neutral")
    assert [(j.key, j.label_class, j.label) for j in r.jobs] == [
        ("audio/0", 0, "angry"), ("audio/2", 1, "happy"), ("audio/4", 2, "neutral")]
    assert r.stats["dropped_by_label_map"] == {"calm": 2}
    assert r.stats["label_map_unused"] == ["sad"]
    assert r.skipped == [corpora.skip(f"f{i}.wav", "audio", "label 'calm' dropped by the label "
                                      "map", "dropped_by_label_map") for i in (1, 3)]
    r = corpora.apply_labels(_jobs(["b", "a"]), labels=["b", "a", "c"])
    assert [j.label_class for j in r.jobs] == [0, 1] and r.stats["labels_without_items"] == ["c"]
    with pytest.raises(CorpusError) as err:
        corpora.apply_labels(_jobs(["angry", "calm"], "faces.csv"), {"angry": "anger"},
                             ["anger", "happiness"])
    assert str(err.value) == ("faces.csv:3: unknown label 'calm'; the label set is ['anger', "
                              "'happiness']: map it with --label-map calm=LABEL (or calm= to "
                              "drop it)")
    with pytest.raises(CorpusError, match=r"x.csv:2: unknown label 'furious' \(mapped from "
                                          r"'angry'\)"):
        corpora.apply_labels(_jobs(["angry"]), {"angry": "furious"}, ["anger"])
    with pytest.raises(CorpusError, match="no item left"):
        corpora.apply_labels(_jobs(["calm"]), {"calm": ""})


def test_face_and_ravdess_words_map_to_one_label_list(tmp_path):
    seven = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    rav = corpora.parse_label_map("calm=,angry=anger,fearful=fear,happy=happiness,sad=sadness,"
                                  "surprised=surprise")
    r = corpora.apply_labels(_jobs(list(corpora.RAVDESS_EMOTIONS.values())), rav, seven)
    faces = corpora.apply_labels(_jobs(seven), {}, seven)
    assert r.label_names == faces.label_names == tuple(seven)
    assert sorted(j.label_class for j in r.jobs) == list(range(7))


def test_manifest_reader_takes_the_label_map(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("path,modality,label,split,speaker\na.wav,audio,angry,train,s1\n"
                 "b.wav,audio,calm,dev,s2\nc.wav,video,happy,train,s3\n")
    r = corpora.manifest_jobs(str(p), label_map={"calm": "", "angry": "anger"})
    assert r.label_names == ("anger", "happy")
    assert [(j.speaker, j.label_class) for j in r.jobs] == [("s1", 0), ("s3", 1)]
    assert r.skipped[0]["reason"] == "label 'calm' dropped by the label map"
    with pytest.raises(CorpusError, match=r"m.csv:3: unknown label 'calm'.*--label-map"):
        corpora.manifest_jobs(str(p), ["anger", "happy"], {"angry": "anger"})


# -- schema meta and the Keras encoder -----------------------------------------------


def test_meta_is_optional_in_records():
    item = schema.Item("audio", np.ones((1, 2)), 0, recording="r",
                       meta='{"take": "01-05-02-01-02-07"}')
    back = schema.decode_example(schema.serialize_item(item))
    assert back.meta == '{"take": "01-05-02-01-02-07"}'
    parsed = parse.parse_record(tf.constant(schema.serialize_item(item)))
    assert int(parsed["label_class"]) == 0
    old = schema.serialize_item(schema.Item("audio", np.ones((1, 2)), 0, recording="r"))
    assert schema.KEY_META.encode() not in old  # records without metadata are unchanged
    assert schema.decode_example(old).meta == ""
    ex = tf.io.parse_single_example(old, schema.feature_spec())
    assert ex[schema.KEY_META].numpy() == b""
    with pytest.raises(schema.DataError, match="r: meta must be the text of a JSON object"):
        schema.serialize_item(schema.Item("audio", np.ones((1, 2)), 0, recording="r",
                                          meta="intensity=strong"))


def test_keras_encoder_average_pooling(tmp_path):
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    out = keras.layers.Dense(2, name="dense")(keras.layers.Flatten(name="flat")(x))
    net = keras.Model(inp, out)
    path = str(tmp_path / "m.keras")
    net.save(path)
    faces = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    gray = (faces.astype(np.float32) / 255.0) @ np.array([0.299, 0.587, 0.114], np.float32)
    maps = np.asarray(keras.Model(net.input, net.get_layer("pool").output)(gray[..., None]))
    assert maps.shape == (2, 4, 4, 3)
    avg = face.KerasModelEncoder(path, "pool", pool="avg")
    assert avg.dim == 3
    np.testing.assert_allclose(avg(faces), maps.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    flat = face.KerasModelEncoder(path, "pool")
    assert flat.dim == 48
    np.testing.assert_allclose(flat(faces), maps.reshape(2, 48), rtol=1e-5, atol=1e-6)
    sym = face.KerasModelEncoder(path, "pool", input_range=(-1.0, 1.0))
    np.testing.assert_allclose(sym.preprocess(faces), avg.preprocess(faces) * 2 - 1, atol=1e-6)
    with pytest.raises(face.WeightsError, match="needs a 4-D"):
        face.KerasModelEncoder(path, "flat", pool="avg")


def test_keras_encoder_reads_a_sequential_model_saved_as_keras(tmp_path):
    # a Sequential model loaded from .keras has inputs but no .input until it is called
    net = keras.Sequential([keras.Input((8, 8, 3)),
                            keras.layers.Conv2D(2, 3, padding="same", name="conv"),
                            keras.layers.GlobalAveragePooling2D(name="gap")])
    path = str(tmp_path / "seq.keras")
    net.save(path)
    faces = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    conv = np.asarray(keras.Model(net.inputs, net.get_layer("conv").output)(
        faces.astype(np.float32) / 255.0))
    enc = face.KerasModelEncoder(path, "conv", pool="avg")
    assert enc.dim == 2
    np.testing.assert_allclose(enc(faces), conv.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
