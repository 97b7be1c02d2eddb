"""From a recording to an emotion: real media -> tfrecords_tools -> a tiny run -> export ->
``emobed_tf.predict`` on the raw files, checked against the run's own scorer."""

import contextlib
import csv
import glob
import io
import json
import os
import shutil

import numpy as np
import pytest

from tests.conftest import saved_predictions, train_cli
from tests.tools.media_fixtures import tone, write_audio, write_wav

LABELS = ("happy", "sad")



def _train_and_export(root, data, name, *flags, target=None):
    """A 1-epoch classic run of a tiny model (one layer of 8 units each) on ``data``, exported
    to ``root/sm/name``; ``(run folder, SavedModel folder)``."""
    from emobed_tf.export import main as export_main

    side = ("--target", target) if target else ()
    run = os.path.join(str(root), "run")
    train_cli(["--dataset", "custom", "--data-dir", data, "--out", run, "--mode", "classic",
               *side, "--epochs", "1", "--encoder-units", "8", "--shared-units", "8",
               "--encoder-layers", "1", "--shared-layers", "1", "--verbose", "0", *flags])
    sm = os.path.join(str(root), "sm", name)
    with contextlib.redirect_stdout(io.StringIO()):
        assert export_main(["--run", run, *side, "--out", sm]) == 0
    return run, sm

def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _softmax_if_logits(p):
    p = np.asarray(p, np.float64)
    if np.allclose(p.sum(-1), 1.0, atol=1e-4) and (p >= 0).all():
        return p
    e = np.exp(p - p.max(-1, keepdims=True))  # a head that outputs logits: the export's softmax
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def audio_model(tmp_path_factory):
    """Ten tones (wav and flac) -> eGeMAPS data set -> classic run (1 epoch) -> export."""
    from tfrecords_tools import extract

    root = tmp_path_factory.mktemp("predict")
    media = root / "media"
    rows = []
    for i in range(10):
        spk = f"s{i % 2}"
        os.makedirs(media / spk, exist_ok=True)
        freq = 150 + 40 * i
        path = media / spk / f"t{i}.{'flac' if i == 7 else 'wav'}"
        sig = tone(0.6 + 0.1 * (i % 3), freq=freq, seed=i)
        if i == 7:
            write_audio(str(path), sig, "flac")
        else:
            write_wav(str(path), sig)
        split = "train" if i < 6 else ("dev" if i < 8 else "test")
        rows.append((str(path), "audio", LABELS[i % 2], split, spk))
    with open(root / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "modality", "label", "split", "speaker"])
        w.writerows(rows)
    data = str(root / "data")
    with contextlib.redirect_stdout(io.StringIO()):
        assert extract.main(["--corpus", "manifest", "--csv", str(root / "m.csv"), "--labels",
                             ",".join(LABELS), "--out", data, "--workers", "1"]) == 0
    run, sm = _train_and_export(root, data, "toy", "--batch-size", "4")
    return {"root": root, "media": media, "rows": rows, "run": run, "model": sm}


def _scorer_probs(run):
    """{recording: probabilities} of the run's own scorer over every split."""
    out = {}
    for split in ("train", "dev", "test"):
        p = saved_predictions(run, split)
        for rec, probs in zip(p.recordings, _softmax_if_logits(p.pred)):
            out[rec] = probs
    return out


def test_recipe_in_the_export(audio_model):
    meta = json.load(open(os.path.join(audio_model["model"], "1", "assets.extra",
                                       "emobed_export.json")))
    r = meta["recipe"]
    assert meta["label_names"] == list(LABELS) and r["label_names"] == list(LABELS)
    assert r["modality"] == "audio" and r["dim"] == 88 and r["task"] == "classification"
    assert r["extraction_options"]["audio_mode"] == "utterance" and r["reader"] is None
    assert r["normalize"] == "corpus"


def test_local_and_server_predictions_equal_the_scorer(audio_model, tmp_path, capsys):
    from emobed_tf.predict import main as predict_main
    from emobed_tf.serving import predict as lib
    from emobed_tf.serving.loopback import LoopbackServer

    bad = tmp_path / "in" / "broken.wav"
    os.makedirs(bad.parent)
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 3)
    out = tmp_path / "p" / "predictions.csv"
    code = predict_main(["--model", audio_model["model"], str(audio_model["media"]), str(bad),
                         "--out", str(out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "11 inputs -> 10 predicted, 0 already done, 1 failed" in said.out
    rows = _csv(out)
    assert list(rows[0])[:2] == ["path", "label"] and list(rows[0])[2:] == list(LABELS)
    fails = _csv(tmp_path / "p" / "failures.csv")
    assert [f["path"] for f in fails] == [str(bad)] and "broken.wav" in fails[0]["reason"]
    ref = _scorer_probs(audio_model["run"])
    got = {os.path.splitext(os.path.basename(r["path"]))[0]:
           np.array([float(r[c]) for c in LABELS]) for r in rows}
    assert set(got) == set(ref) and len(ref) == 10
    for rec in ref:
        np.testing.assert_allclose(got[rec], ref[rec], atol=1e-5)
    for r in rows:
        assert r["label"] == LABELS[int(np.argmax([float(r[c]) for c in LABELS]))]
    js = json.load(open(tmp_path / "p" / "predictions.json"))
    assert len(js["predictions"]) == 10 and js["summary"]["failed"] == 1

    # a rerun skips the finished inputs (the failed one is tried again)
    assert predict_main(["--model", audio_model["model"], str(audio_model["media"]), str(bad),
                         "--out", str(out)]) == 0
    assert "0 predicted, 10 already done, 1 failed" in capsys.readouterr().out
    assert len(_csv(out)) == 10

    # through the loopback server: REST and gRPC give the local numbers (batched requests)
    with LoopbackServer(os.path.dirname(audio_model["model"] + "/"), "toy") as server:
        for url in (server.rest_url, "grpc://" + server.grpc_target):
            s = lib.predict([str(audio_model["media"])], out=str(tmp_path / url[:4] / "p.csv"),
                            server=url, name="toy", batch_size=4, progress=False)
            assert s["predicted"] == 10
            remote = {r["path"]: [float(r[c]) for c in LABELS]
                      for r in _csv(tmp_path / url[:4] / "p.csv")}
            for r in rows:
                np.testing.assert_allclose(remote[r["path"]], [float(r[c]) for c in LABELS],
                                           atol=1e-6)
        # a server that is not there: one line after the retries
        with pytest.raises(lib.PredictError, match="cannot reach the server"):
            lib.predict([str(audio_model["media"])], out=str(tmp_path / "x.csv"),
                        server="http://127.0.0.1:9", name="toy", retries=1, timeout=2,
                        progress=False)


def test_inputs_an_audio_model_cannot_use_are_listed(audio_model, tmp_path, capsys):
    from emobed_tf.predict import main as predict_main
    from tests.tools.media_fixtures import write_video

    silent = tmp_path / "in" / "silent.mp4"
    os.makedirs(silent.parent)
    write_video(str(silent), seconds=0.5, audio=False, size=(32, 32))
    out = tmp_path / "p" / "predictions.csv"
    wav = sorted(glob.glob(os.path.join(str(audio_model["media"]), "**", "*.wav"),
                           recursive=True))[0]
    code = predict_main(["--model", audio_model["model"], wav, str(silent), "--out", str(out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "2 inputs -> 1 predicted, 0 already done, 1 failed" in said.out
    fails = _csv(tmp_path / "p" / "failures.csv")
    assert [f["path"] for f in fails] == [str(silent)]
    assert "no audio stream" in fails[0]["reason"]


def test_segments(audio_model, tmp_path):
    from emobed_tf.serving import predict as lib

    wav = str(tmp_path / "long.wav")
    write_wav(wav, tone(2.5, freq=200))
    s = lib.predict([wav], out=str(tmp_path / "seg.csv"), model=audio_model["model"],
                    segment=1.0, progress=False)
    rows = _csv(tmp_path / "seg.csv")
    assert s["predicted"] == 1 and [(float(r["start"]), float(r["end"])) for r in rows] == [
        (0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]


def test_refusals(audio_model, tmp_path, capsys):
    from emobed_tf.predict import main as predict_main
    from emobed_tf.serving import predict as lib

    # an old export without the recipe: one line saying what is missing
    old = tmp_path / "old"
    shutil.copytree(audio_model["model"], old)
    meta_path = old / "1" / "assets.extra" / "emobed_export.json"
    meta = json.load(open(meta_path))
    for k in ("recipe", "label_names"):
        meta.pop(k)
    json.dump(meta, open(meta_path, "w"))
    assert predict_main(["--model", str(old), str(audio_model["media"]),
                         "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no feature recipe" in err[0] and "re-export" in err[0]
    # a missing input and a wrong model folder
    assert predict_main(["--model", audio_model["model"], str(tmp_path / "nope.wav")]) == 2
    assert "nope.wav: no such file" in capsys.readouterr().err
    # an encoder file with another SHA-256 is refused, naming both hashes
    fp = {"encoder": "keras", "encoder_model_sha256": "a" * 64, "layer": "feat"}
    other = tmp_path / "enc.keras"
    other.write_bytes(b"another model")
    have = {**fp, "encoder_model_sha256": lib.sha256_of(str(other))}
    with pytest.raises(lib.WeightsMismatch) as e:
        lib.check_fingerprint(fp, have, {"--encoder-model": str(other)})
    assert "a" * 64 in str(e.value) and have["encoder_model_sha256"] in str(e.value)
    assert "--encoder-model" in str(e.value)


# --------------------------------------------------------------------------
# faces: a Keras face CNN (--encoder keras), photographs and short videos


def face_cnn(path, seed=0):
    """A tiny face CNN on 32x32x3 with a named layer ``feat`` (4-D: pooled by --layer-pool avg).

    Functional, not ``keras.Sequential``: a Sequential model reloaded from ``.keras`` has no
    ``model.input`` in Keras 3, which ``tfrecords_tools.face.KerasModelEncoder`` needs.
    """
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="feat")(x)
    out = keras.layers.Dense(2, name="out")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, out).save(path)
    return path


def face_media(media, n_images=10, videos=(0.6, 1.2), size=48, video_size=(64, 64),
               video_fps=10):
    """``n_images`` crops of the astronaut photo (PNG) and short silent videos (mp4), in two
    speaker folders; returns ``[(path, label, split, speaker)]``."""
    from PIL import Image
    from skimage import data

    from tests.tools.media_fixtures import write_video

    img = data.astronaut()
    rows = []
    for i in range(n_images):
        spk = f"s{i % 2}"
        os.makedirs(os.path.join(media, spk), exist_ok=True)
        y, x = (13 * i) % 260, 100 + (11 * i) % 200
        path = os.path.join(media, spk, f"f{i}.png")
        Image.fromarray(img[y:y + 200, x:x + 200]).resize((size, size)).save(path)
        split = "train" if i < 0.6 * n_images else ("dev" if i < 0.8 * n_images else "test")
        rows.append((path, LABELS[i % 2], split, spk))
    for j, seconds in enumerate(videos):
        path = os.path.join(media, f"s{j % 2}", f"v{j}.mp4")
        write_video(path, seconds=seconds, fps=video_fps, audio=False, size=video_size, seed=j)
        rows.append((path, LABELS[j % 2], "test", f"s{j % 2}"))
    return rows


def make_face_model(root, n_images=10, videos=(0.6, 1.2), detect=False, **media_kw):
    """Faces -> ``--encoder keras`` data set -> classic video run (1 epoch) -> export.

    ``detect``: extract with MTCNN detection and alignment (the extraction's default);
    else ``--no-detect`` (the crops are resized to the encoder's input)."""
    from tfrecords_tools import extract

    root = str(root)
    enc = face_cnn(os.path.join(root, "face.keras"))
    media = os.path.join(root, "media")
    rows = face_media(media, n_images, videos, **media_kw)
    with open(os.path.join(root, "m.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "modality", "label", "split", "speaker"])
        w.writerows((p, "video", lab, split, spk) for p, lab, split, spk in rows)
    data = os.path.join(root, "data")
    with contextlib.redirect_stdout(io.StringIO()):
        assert extract.main(["--corpus", "manifest", "--csv", os.path.join(root, "m.csv"),
                             "--labels", ",".join(LABELS), "--out", data, "--encoder", "keras",
                             "--encoder-model", enc, "--layer", "feat", "--layer-pool", "avg",
                             *([] if detect else ["--no-detect"]), "--workers", "1"]) == 0
    run, sm = _train_and_export(root, data, "face", "--batch-size", "4", target="video")
    return {"root": root, "media": media, "rows": rows, "run": run, "model": sm,
            "encoder": enc}


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    return make_face_model(tmp_path_factory.mktemp("predict_face"))


def _face_scorer_probs(run):
    out = {}
    for split in ("train", "dev", "test"):
        p = saved_predictions(run, split, "video")
        for rec, probs in zip(p.recordings, _softmax_if_logits(p.pred)):
            out[rec] = probs
    return out


def test_face_recipe_in_the_export(face_model):
    from emobed_tf.serving import predict as lib

    meta = json.load(open(os.path.join(face_model["model"], "1", "assets.extra",
                                       "emobed_export.json")))
    r = meta["recipe"]
    assert r["modality"] == "video" and r["dim"] == 8 and r["reader"] is None
    fp = r["extraction_options"]
    assert fp["encoder"] == "keras" and fp["layer"] == "feat" and fp["layer_pool"] == "avg"
    assert fp["detect"] is False and fp["encoder_model_sha256"] == lib.sha256_of(
        face_model["encoder"])


def test_face_images_and_videos_equal_the_scorer(face_model, tmp_path, capsys):
    """The raw PNGs and mp4s, re-extracted by predict through tfrecords_tools' face pipeline,
    give the probabilities of the run's own scorer on the extracted data set; locally and
    through the loopback server."""
    from emobed_tf.predict import main as predict_main
    from emobed_tf.serving import predict as lib
    from emobed_tf.serving.loopback import LoopbackServer

    out = tmp_path / "p" / "predictions.csv"
    code = predict_main(["--model", face_model["model"], face_model["media"],
                         "--encoder-model", face_model["encoder"], "--out", str(out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    n = len(face_model["rows"])
    assert f"{n} inputs -> {n} predicted, 0 already done, 0 failed" in said.out
    rows = _csv(out)
    ref = _face_scorer_probs(face_model["run"])
    got = {os.path.splitext(os.path.basename(r["path"]))[0]:
           np.array([float(r[c]) for c in LABELS]) for r in rows}
    assert set(got) == set(ref) and len(ref) == n
    assert {"v0", "v1"} <= set(got)  # the videos, not only the photographs
    for rec in ref:
        np.testing.assert_allclose(got[rec], ref[rec], atol=1e-5, err_msg=rec)
    assert not np.allclose(got["v0"], got["v1"], atol=1e-6)  # two videos, two predictions
    for r in rows:
        assert r["label"] == LABELS[int(np.argmax([float(r[c]) for c in LABELS]))]

    # --segment on a video: one row per second; an image is one row without times
    seg = lib.predict([os.path.join(face_model["media"], "s1", "v1.mp4"),
                       os.path.join(face_model["media"], "s0", "f0.png")],
                      out=str(tmp_path / "seg.csv"), model=face_model["model"],
                      encoder_model=face_model["encoder"], segment=1.0, progress=False)
    assert seg["predicted"] == 2 and seg["failed"] == 0
    spans = [(r["start"], r["end"]) for r in _csv(tmp_path / "seg.csv")]
    assert sorted(spans) == sorted([("0.0", "1.0"), ("1.0", "1.2"), ("", "")])

    # a corrupt image is a failure row, the others are predicted
    bad = tmp_path / "in" / "broken.png"
    os.makedirs(bad.parent)
    bad.write_bytes(b"\x89PNG junk" * 5)
    s = lib.predict([str(bad), os.path.join(face_model["media"], "s0")],
                    out=str(tmp_path / "b.csv"), model=face_model["model"],
                    encoder_model=face_model["encoder"], progress=False)
    assert s["failed"] == 1 and s["predicted"] == sum(r[3] == "s0" for r in face_model["rows"])
    assert "broken.png" in _csv(tmp_path / "failures.csv")[0]["reason"]

    # through the loopback server (REST and gRPC): the local numbers
    with LoopbackServer(face_model["model"], "face") as server:
        for url in (server.rest_url, "grpc://" + server.grpc_target):
            s = lib.predict([face_model["media"]], out=str(tmp_path / url[:4] / "p.csv"),
                            server=url, name="face", encoder_model=face_model["encoder"],
                            batch_size=4, progress=False)
            assert s["predicted"] == n
            remote = {r["path"]: [float(r[c]) for c in LABELS]
                      for r in _csv(tmp_path / url[:4] / "p.csv")}
            for r in rows:
                np.testing.assert_allclose(remote[r["path"]], [float(r[c]) for c in LABELS],
                                           atol=1e-6)


def test_face_refusals(face_model, tmp_path, capsys):
    """Another weight file (the same CNN re-saved with other weights) is refused through the
    command line, naming both SHA-256 hashes, in one line; so is a missing --encoder-model."""
    import keras

    from emobed_tf.predict import main as predict_main
    from emobed_tf.serving import predict as lib

    net = keras.models.load_model(face_model["encoder"], compile=False)
    net.set_weights([w * 1.5 + 0.01 for w in net.get_weights()])
    other = str(tmp_path / "face.keras")  # same name, other weights
    net.save(other)
    want, have = lib.sha256_of(face_model["encoder"]), lib.sha256_of(other)
    assert want != have
    out = tmp_path / "o.csv"
    assert predict_main(["--model", face_model["model"], face_model["media"],
                         "--encoder-model", other, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert want in err[0] and have in err[0] and "--encoder-model" in err[0]
    assert not out.exists()  # refused before anything was predicted
    assert predict_main(["--model", face_model["model"], face_model["media"],
                         "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--encoder-model FILE" in err[0] and want in err[0]


# --------------------------------------------------------------------------
# faces with detection on (MTCNN, the extraction's default): no face in any frame


@pytest.fixture(scope="module")
def face_detect_model(tmp_path_factory):
    """Eight 96x96 astronaut crops (MTCNN finds the face in each) and a 128x128 video,
    extracted with detection and alignment -> classic run (1 epoch) -> export."""
    return make_face_model(tmp_path_factory.mktemp("predict_detect"), n_images=8,
                           videos=(0.6,), detect=True, size=96, video_size=(128, 128))


def test_no_face_in_any_frame_is_a_listed_failure(face_detect_model, tmp_path, capsys):
    """With detection on, a video whose frames hold no face and a blank photograph are rows of
    failures.csv whose reason says no face was detected (and in how many sampled frames), the
    summary counts them, the exit code stays 0 and every other input equals the scorer."""
    from PIL import Image

    from emobed_tf.predict import main as predict_main
    from tests.tools.media_fixtures import write_video

    m = face_detect_model
    meta = json.load(open(os.path.join(m["model"], "1", "assets.extra", "emobed_export.json")))
    fp = meta["recipe"]["extraction_options"]
    assert fp["detect"] is True and fp["fps"] == 5.0

    blank_video = str(tmp_path / "in" / "blank.mp4")
    os.makedirs(os.path.dirname(blank_video))
    write_video(blank_video, seconds=1.0, fps=10, audio=False, face=False, size=(128, 128))
    blank_png = str(tmp_path / "in" / "blank.png")
    Image.fromarray(np.full((96, 96, 3), 90, np.uint8)).save(blank_png)

    out = tmp_path / "p" / "predictions.csv"
    code = predict_main(["--model", m["model"], m["media"], blank_video, blank_png,
                         "--encoder-model", m["encoder"], "--out", str(out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    n = len(m["rows"])
    assert f"{n + 2} inputs -> {n} predicted, 0 already done, 2 failed" in said.out
    fails = _csv(tmp_path / "p" / "failures.csv")
    assert {f["path"]: f["reason"] for f in fails} == {
        blank_video: f"{blank_video}: no face detected in any of the 5 sampled frames",
        blank_png: f"{blank_png}: no face detected in any of the 1 sampled frames"}
    js = json.load(open(tmp_path / "p" / "predictions.json"))
    assert (js["summary"]["inputs"], js["summary"]["predicted"], js["summary"]["failed"]) == (
        n + 2, n, 2)

    rows = _csv(out)
    assert {blank_video, blank_png}.isdisjoint(r["path"] for r in rows)
    ref = _face_scorer_probs(m["run"])
    got = {os.path.splitext(os.path.basename(r["path"]))[0]:
           np.array([float(r[c]) for c in LABELS]) for r in rows}
    assert set(got) == set(ref) and len(ref) == n and "v0" in got
    for rec in ref:
        np.testing.assert_allclose(got[rec], ref[rec], atol=1e-5, err_msg=rec)


# --------------------------------------------------------------------------
# features read, not extracted: OpenFace CSVs and a feature table


def _openface_clip(path, n_frames, seed, shift=0.0, low_conf=(), groups=None):
    """An OpenFace 2 FeatureExtraction-style CSV (``frame, face_id, ...`` header, its columns in
    another order than the reader's); the frames in ``low_conf`` have confidence 0.5."""
    from tfrecords_tools import corpora

    cols = corpora.openface_columns(groups or corpora.OPENFACE_GROUPS)[::-1]
    header = ["frame", "face_id", "timestamp", "confidence", "success", *cols]
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        fh.write(", ".join(header) + "\n")
        for k in range(n_frames):
            conf = 0.5 if k in low_conf else 0.97
            vals = np.round(rng.uniform(0, 3, len(cols)) + shift, 4)
            fh.write(", ".join([str(k + 1), "0", f"{k * 0.033:.3f}", str(conf), "1",
                                *(f"{v:g}" for v in vals)]) + "\n")
    return path


@pytest.fixture(scope="module")
def openface_model(tmp_path_factory):
    """Eight OpenFace CSVs (+ a labels CSV) -> --corpus openface --openface-pool functionals
    -> classic video run (1 epoch) -> export."""
    from tfrecords_tools import extract

    root = tmp_path_factory.mktemp("predict_openface")
    clips = root / "openface"
    os.makedirs(clips)
    with open(root / "labels.csv", "w") as fh:
        fh.write("clip,label,speaker,split\n")
        for i in range(8):
            _openface_clip(str(clips / f"c{i}.csv"), 6 + i % 3, seed=i, shift=0.5 * (i % 2),
                           low_conf=(1,) if i % 3 == 0 else ())
            split = "train" if i < 5 else ("dev" if i < 6 else "test")
            fh.write(f"c{i},{LABELS[i % 2]},s{i % 2},{split}\n")
    data = str(root / "data")
    with contextlib.redirect_stdout(io.StringIO()):
        assert extract.main(["--corpus", "openface", "--openface-dir", str(clips),
                             "--labels-csv", str(root / "labels.csv"), "--openface-pool",
                             "functionals", "--labels", ",".join(LABELS), "--out", data]) == 0
    run, sm = _train_and_export(root, data, "of", "--batch-size", "4", target="video")
    return {"root": root, "clips": clips, "run": run, "model": sm}


def test_openface_csvs_equal_the_scorer(openface_model, tmp_path, capsys):
    """A model trained on OpenFace CSVs takes OpenFace CSVs: the probabilities are the run's
    own scorer's (frames under the recipe's minimum confidence dropped, functionals pooled
    alike); a CSV without a usable frame and one lacking a feature group are failure rows."""
    from emobed_tf.predict import main as predict_main
    from tfrecords_tools import corpora

    m = openface_model
    meta = json.load(open(os.path.join(m["model"], "1", "assets.extra", "emobed_export.json")))
    r = meta["recipe"]
    assert r["extraction_options"] is None and r["dim"] == 80
    assert r["reader"]["corpus"] == "openface" and r["reader"]["openface_pool"] == "functionals"
    assert r["reader"]["min_confidence"] == 0.8
    assert r["reader"]["openface_features"] == list(corpora.OPENFACE_GROUPS)

    bad = tmp_path / "in"
    os.makedirs(bad)
    dark = _openface_clip(str(bad / "dark.csv"), 4, seed=20, low_conf=range(4))
    nopose = _openface_clip(str(bad / "nopose.csv"), 4, seed=21, groups=("au_r", "au_c", "gaze"))
    out = tmp_path / "p" / "predictions.csv"
    code = predict_main(["--model", m["model"], str(m["clips"]), dark, nopose,
                         "--out", str(out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "10 inputs -> 8 predicted, 0 already done, 2 failed" in said.out
    fails = {f["path"]: f["reason"] for f in _csv(tmp_path / "p" / "failures.csv")}
    assert fails[dark] == (f"{dark}: no usable frame: all 4 frames have success 0 or "
                           "confidence < 0.8")
    assert fails[nopose].startswith(
        f"{nopose}: no columns ['pose_Rx', 'pose_Ry', 'pose_Rz'] of --openface-features pose")
    assert len(fails) == 2

    ref = _face_scorer_probs(m["run"])
    got = {os.path.splitext(os.path.basename(row["path"]))[0]:
           np.array([float(row[c]) for c in LABELS]) for row in _csv(out)}
    assert set(got) == set(ref) == {f"c{i}" for i in range(8)}
    for rec in ref:
        np.testing.assert_allclose(got[rec], ref[rec], atol=1e-5, err_msg=rec)


FEATURES = ("f1", "f2", "f3", "f4", "f5")


@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    """A ten-row feature table (id, label, speaker, split, f1..f5) -> --corpus table
    --modality audio -> classic run (1 epoch) -> export."""
    from tfrecords_tools import extract

    root = tmp_path_factory.mktemp("predict_table")
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(10, len(FEATURES))) + np.arange(10)[:, None] % 2, 5)
    rows = []
    for i in range(10):
        split = "train" if i < 6 else ("dev" if i < 8 else "test")
        rows.append({"id": f"r{i}", "label": LABELS[i % 2], "speaker": f"s{i % 3}",
                     "split": split, **{c: repr(float(v)) for c, v in zip(FEATURES, x[i])}})
    table = str(root / "table.csv")
    with open(table, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    data = str(root / "data")
    with contextlib.redirect_stdout(io.StringIO()):
        assert extract.main(["--corpus", "table", "--table", table, "--modality", "audio",
                             "--labels", ",".join(LABELS), "--out", data]) == 0
    run, sm = _train_and_export(root, data, "tab", "--batch-size", "4")
    return {"root": root, "table": table, "rows": rows, "run": run, "model": sm}


def test_feature_table_equals_the_scorer(table_model, tmp_path, capsys):
    """A model trained on a feature table takes a table: one row per table row (path
    TABLE#id), the run's own scorer's probabilities; the same rows in a ';'-separated table
    with the columns in another order (as tfrecords_tools reads it) give the same numbers; a
    row with a NaN feature is a failure row; a table lacking one of the recipe's feature
    columns is refused in one line naming the file and the missing columns."""
    from emobed_tf.predict import main as predict_main

    m = table_model
    meta = json.load(open(os.path.join(m["model"], "1", "assets.extra", "emobed_export.json")))
    r = meta["recipe"]
    assert r["reader"] == {"corpus": "table", "feature_names": list(FEATURES)}
    assert r["modality"] == "audio" and r["dim"] == len(FEATURES)

    out = tmp_path / "p" / "predictions.csv"
    code = predict_main(["--model", m["model"], m["table"], "--out", str(out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "10 inputs -> 10 predicted, 0 already done, 0 failed" in said.out
    rows = _csv(out)
    assert [row["path"] for row in rows] == [f"{m['table']}#r{i}" for i in range(10)]
    ref = _scorer_probs(m["run"])
    got = {row["path"].rsplit("#", 1)[1]: np.array([float(row[c]) for c in LABELS])
           for row in rows}
    assert set(got) == set(ref) and len(ref) == 10
    for rec in ref:
        np.testing.assert_allclose(got[rec], ref[rec], atol=1e-5, err_msg=rec)

    # ';'-separated, features in another order, no label/split columns, one NaN row
    semi = str(tmp_path / "semi.csv")
    order = ["f3", "id", "f5", "f1", "speaker", "f4", "f2"]
    with open(semi, "w") as fh:
        fh.write(";".join(order) + "\n")
        for row in m["rows"]:
            fh.write(";".join(row[c] for c in order) + "\n")
        fh.write(";".join("nan" if c.startswith("f") else "bad" for c in order) + "\n")
    s_out = tmp_path / "s" / "predictions.csv"
    code = predict_main(["--model", m["model"], semi, "--out", str(s_out)])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "11 inputs -> 10 predicted, 0 already done, 1 failed" in said.out
    assert _csv(tmp_path / "s" / "failures.csv") == [
        {"path": f"{semi}#bad", "reason": f"{semi}#bad: NaN/inf feature values"}]
    for row in _csv(s_out):
        np.testing.assert_allclose([float(row[c]) for c in LABELS],
                                   got[row["path"].rsplit("#", 1)[1]], atol=1e-6)

    # a table without f2 and f4: refused before anything is predicted, one line
    lacking = str(tmp_path / "lacking.csv")
    with open(lacking, "w") as fh:
        fh.write("id,f1,f3,f5\nr0,1,2,3\n")
    l_out = tmp_path / "l" / "predictions.csv"
    assert predict_main(["--model", m["model"], lacking, "--out", str(l_out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {lacking}: the model reads the feature columns "
                   f"{list(FEATURES)}; this table lacks ['f2', 'f4']"]
    assert not l_out.exists()


# --------------------------------------------------------------------------
# regression: long recordings -> one row per frame (time, arousal, valence) and --plot


def _glide(seconds, rate=16000, seed=0, base=160.0):
    """A harmonic tone whose pitch and loudness drift slowly (periods of ~7 and ~11 s)."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    freq = base * (1.0 + 0.4 * np.sin(2 * np.pi * t / (7.0 + seed)))
    phase = 2 * np.pi * np.cumsum(freq) / rate
    sig = sum(np.sin(k * phase) / k for k in range(1, 6))
    sig = sig * (0.6 + 0.4 * np.sin(2 * np.pi * t / 11.0 + seed)) + 0.03 * rng.normal(size=t.shape)
    return (0.3 * sig / np.abs(sig).max()).astype(np.float32)


def _as_regression(src_dir, out_dir, step):
    """The manifest corpus (a classification data set whose items carry their arousal/valence
    repeated over the frames) rewritten as a regression data set: the same features, manifest
    ``extra`` (the extraction options: the export's recipe) and frame step, per-frame labels
    (the item's valence; its arousal plus a slow drift)."""
    import dataclasses

    import tensorflow as tf

    from emobed_tf.records.manifest import load_manifest
    from emobed_tf.records.schema import decode_example
    from emobed_tf.records.writer import DatasetWriter

    m = load_manifest(src_dir)
    info = m.modalities["audio"]
    assert m.dim_names == ("arousal", "valence") and m.frame_step_s == pytest.approx(step)
    with DatasetWriter(out_dir, "long-tones", "regression", ("arousal", "valence"),
                       {"audio": info.dim}, {"audio": info.feature_set},
                       frame_step_s=m.frame_step_s, extra=dict(m.extra)) as w:
        for split, shards in info.shards.items():
            for sh in shards:
                for rec in tf.data.TFRecordDataset(os.path.join(src_dir, sh.path),
                                                   compression_type=m.compression or None):
                    item = decode_example(rec.numpy(), sh.path)
                    lab = np.asarray(item.label_dims, np.float32).copy()
                    t = np.arange(len(lab)) * step
                    lab[:, 0] = np.clip(lab[:, 0] + 0.3 * np.sin(2 * np.pi * t / 9.0), -1, 1)
                    w.add(dataclasses.replace(item, label_class=-1, label_dims=lab))


@pytest.fixture(scope="module")
def regression_model(tmp_path_factory):
    """Three 20-24 s recordings (manifest CSV with per-item arousal/valence) -> eGeMAPS LLD
    sequences (--audio-mode lld, 40 ms frames) -> regression data set -> 1 epoch -> export."""
    from tfrecords_tools import extract

    root = tmp_path_factory.mktemp("predict_reg")
    media = root / "media"
    os.makedirs(media)
    rows = []
    for i, split in enumerate(("train", "dev", "test")):
        path = media / f"long{i}.wav"
        write_wav(str(path), _glide(20 + 2 * i, seed=i, base=140 + 30 * i))
        rows.append((str(path), "audio", "neutral", split, f"r{i}", f"{0.6 * i - 0.9:.2f}",
                     f"{0.5 - 0.3 * i:.2f}"))
    with open(root / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "modality", "label", "split", "speaker", "arousal", "valence"])
        w.writerows(rows)
    cls_data, data = str(root / "cls"), str(root / "data")
    with contextlib.redirect_stdout(io.StringIO()):
        assert extract.main(["--corpus", "manifest", "--csv", str(root / "m.csv"), "--labels",
                             "neutral", "--audio-mode", "lld", "--out", cls_data,
                             "--workers", "1"]) == 0
    _as_regression(cls_data, data, 0.04)
    run, sm = _train_and_export(root, data, "reg", "--batch-size", "2")
    return {"root": root, "media": media, "rows": rows, "run": run, "model": sm}


def test_regression_frames_equal_the_pipeline(regression_model, tmp_path, capsys):
    """Every frame of every long recording: predict's arousal/valence are the run's own
    pipeline predictions for that recording, at time = frame index x frame_step_s; --plot
    writes one PNG per recording."""
    from emobed_tf.predict import main as predict_main
    from emobed_tf.serving import predict as lib

    meta = json.load(open(os.path.join(regression_model["model"], "1", "assets.extra",
                                       "emobed_export.json")))
    r = meta["recipe"]
    assert r["task"] == "regression" and r["extraction_options"]["audio_mode"] == "lld"
    step = r["frame_step_s"]
    assert step == pytest.approx(0.04) and lib.frame_step(r) == step
    # LLDs every --hop 0.1 s: a frame per 0.1 s, whatever the data set's frame_step_s says
    assert lib.frame_step({**r, "extraction_options": {**r["extraction_options"],
                                                       "hop": 0.1}}) == 0.1
    names = meta["outputs"]
    assert sorted(names) == ["arousal", "valence"]

    out, plots = tmp_path / "p" / "predictions.csv", tmp_path / "plots"
    code = predict_main(["--model", regression_model["model"], str(regression_model["media"]),
                         "--out", str(out), "--plot", str(plots), "--batch-size", "3"])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "3 inputs -> 3 predicted, 0 already done, 0 failed" in said.out
    rows = _csv(out)
    assert list(rows[0]) == ["path", "time", *names]
    got = {}
    for row in rows:
        rec = os.path.splitext(os.path.basename(row["path"]))[0]
        got.setdefault(rec, []).append(row)

    ref = {}
    for split in ("train", "dev", "test"):
        p = saved_predictions(regression_model["run"], split)
        ref.update(zip(p.recordings, p.pred))
    assert set(got) == set(ref) == {f"long{i}" for i in range(3)}
    for rec, want in ref.items():
        want = np.asarray(want)
        seconds = 20 + 2 * int(rec[-1])
        assert len(got[rec]) == len(want) and len(want) >= 0.9 * seconds / step, rec
        np.testing.assert_allclose([float(x["time"]) for x in got[rec]],
                                   np.round(np.arange(len(want)) * step, 6), atol=1e-9)
        pred = np.array([[float(x[n]) for n in names] for x in got[rec]])
        np.testing.assert_allclose(pred, want, atol=1e-5, err_msg=rec)
    assert not np.allclose(np.std(pred, 0), 0.0)  # curves, not constants

    pngs = sorted(os.listdir(plots))
    assert len(pngs) == 3 and all(p.endswith(".png") for p in pngs)
    for p in pngs:
        with open(plots / p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.split("_")[-1] for p in pngs) == [f"long{i}.wav.png" for i in range(3)]


# --------------------------------------------------------------------------
# --normalize speaker: each speaker's statistics from its own inputs


@pytest.fixture(scope="module")
def speaker_model(tmp_path_factory):
    """Eight short tones (eGeMAPS LLD sequences, two speakers) -> classic run trained with
    --normalize speaker -> export (signature inputs speaker_mean/speaker_std)."""
    from tfrecords_tools import extract

    root = tmp_path_factory.mktemp("predict_spk")
    rows = []
    for i in range(8):
        spk = f"s{i % 2}"
        os.makedirs(root / "media" / spk, exist_ok=True)
        path = root / "media" / spk / f"t{i}.wav"
        write_wav(str(path), tone(0.6 + 0.1 * (i % 3), freq=150 + 40 * i, seed=i))
        split = "train" if i < 4 else ("dev" if i < 6 else "test")
        rows.append((str(path), "audio", LABELS[i % 2], split, spk))
    with open(root / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "modality", "label", "split", "speaker"])
        w.writerows(rows)
    data = str(root / "data")
    with contextlib.redirect_stdout(io.StringIO()):
        assert extract.main(["--corpus", "manifest", "--csv", str(root / "m.csv"), "--labels",
                             ",".join(LABELS), "--audio-mode", "lld", "--out", data,
                             "--workers", "1"]) == 0
    run, sm = _train_and_export(root, data, "spk", "--normalize", "speaker", "--batch-size", "4")
    return {"root": root, "run": run, "model": sm}


def test_speaker_normalisation(speaker_model, tmp_path, capsys):
    """--speaker-from folder: each speaker folder's inputs are standardised with the mean/std
    over all that speaker's frames (numpy, here), said in the normalization column; a speaker
    under min_speaker_frames gets the export's fallback statistics; --speaker-from file: a
    single file is its own speaker."""
    import tensorflow as tf

    from emobed_tf.predict import main as predict_main
    from emobed_tf.serving import predict as lib

    version = os.path.join(speaker_model["model"], "1")
    meta = json.load(open(os.path.join(version, "assets.extra", "emobed_export.json")))
    assert meta["normalize"] == "speaker" and meta["recipe"]["normalize"] == "speaker"
    minimum = meta["min_speaker_frames"]
    fb_mean = np.asarray(meta["fallback_mean"], np.float32)
    fb_std = np.asarray(meta["fallback_std"], np.float32)
    serve = tf.saved_model.load(version).signatures["serving_default"]

    # new recordings: speakers A (3 inputs) and B (2), and C whose one input is too short
    inp = tmp_path / "in"
    files = {"A": [1.0, 0.7, 1.3], "B": [0.8, 1.1], "C": [0.2]}
    paths = {}
    for spk, durs in files.items():
        os.makedirs(inp / spk)
        paths[spk] = []
        for k, d in enumerate(durs):
            p = str(inp / spk / f"{spk.lower()}{k}.wav")
            write_wav(p, tone(d, freq=120 + 60 * k + 25 * len(spk + p), seed=10 + k))
            paths[spk].append(p)
    feats = {i.path: f[0][2] for i, f, why in lib.Extractor(meta["recipe"]).extract(
        [lib.Input(p) for ps in paths.values() for p in ps])}
    assert all(f is not None and f.ndim == 2 for f in feats.values())
    assert len(feats[paths["C"][0]]) < minimum

    def numpy_stats(ps):
        x = np.concatenate([feats[p] for p in ps]).astype(np.float64)
        s = x.std(0)
        s[s < 1e-8] = 1.0
        return x.mean(0).astype(np.float32), s.astype(np.float32)

    def served(p, mean, std):
        f = feats[p]
        out = serve(features=tf.constant(f[None]), lengths=tf.constant([len(f)], tf.int32),
                    speaker_mean=tf.constant(mean[None]), speaker_std=tf.constant(std[None]))
        return _softmax_if_logits(out["probabilities"].numpy())[0]

    out = tmp_path / "p" / "predictions.csv"
    code = predict_main(["--model", speaker_model["model"], str(inp), "--out", str(out),
                         "--speaker-from", "folder", "--batch-size", "2"])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "6 inputs -> 6 predicted, 0 already done, 0 failed" in said.out
    assert "per-speaker normalisation" in said.out
    rows = {r["path"]: r for r in _csv(out)}
    assert set(rows) == {p for ps in paths.values() for p in ps}
    assert list(next(iter(rows.values())))[-1] == "normalization"
    for spk, ps in paths.items():
        n = sum(len(feats[p]) for p in ps)
        if spk == "C":
            mean, std = fb_mean, fb_std
            note = f"fallback statistics (speaker C: {n} frames < {minimum})"
        else:
            mean, std = numpy_stats(ps)
            note = f"speaker {spk} ({n} frames of {len(ps)} inputs)"
        for p in ps:
            assert rows[p]["normalization"] == note
            np.testing.assert_allclose([float(rows[p][c]) for c in LABELS],
                                       served(p, mean, std), atol=1e-5, err_msg=p)
    # the speaker's statistics matter: A's first input with B's gives other numbers
    a0 = paths["A"][0]
    assert not np.allclose(served(a0, *numpy_stats(paths["A"])),
                           served(a0, *numpy_stats(paths["B"])), atol=1e-6)

    # one file, --speaker-from file: the file is its own speaker
    one = paths["B"][1]
    s = lib.predict([one], out=str(tmp_path / "one.csv"), model=speaker_model["model"],
                    speaker_from="file", progress=False)
    assert s["predicted"] == 1 and s["normalize"] == "speaker"
    (row,) = _csv(tmp_path / "one.csv")
    assert row["normalization"] == f"speaker {one} ({len(feats[one])} frames of 1 inputs)"
    np.testing.assert_allclose([float(row[c]) for c in LABELS],
                               served(one, *numpy_stats([one])), atol=1e-5)


def test_speaker_from_column(speaker_model, tmp_path, capsys):
    """--speaker-from column: an input list CSV's speaker column groups the inputs (here
    across their folders A/ and B/): the probabilities and normalization notes are exactly
    those of the same grouping given by folders X/ and Y/, and differ from --speaker-from file
    and folder; an empty speaker gets the fallback statistics; a list without a speaker
    column, or no list at all, is refused in one line."""
    from emobed_tf.predict import main as predict_main

    files = {"A/a0.wav": (1.0, 130, "X"), "A/a1.wav": (0.8, 210, "Y"),
             "B/b0.wav": (1.2, 170, "X"), "B/b1.wav": (0.9, 260, "Y"),
             "B/b2.wav": (0.7, 300, "")}
    inp, regrouped = tmp_path / "in", tmp_path / "regrouped"
    for k, (rel, (secs, freq, spk)) in enumerate(files.items()):
        os.makedirs(inp / os.path.dirname(rel), exist_ok=True)
        write_wav(str(inp / rel), tone(secs, freq=freq, seed=30 + k))
        if spk:
            os.makedirs(regrouped / spk, exist_ok=True)
            shutil.copy(inp / rel, regrouped / spk / os.path.basename(rel))
    listing = inp / "list.csv"
    with open(listing, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "speaker"])
        w.writerows((rel, spk) for rel, (_, _, spk) in files.items())

    def run(args, out):
        code = predict_main(["--model", speaker_model["model"], *args, "--out", str(out)])
        said = capsys.readouterr()
        assert code == 0, said.err
        return {os.path.basename(r["path"]): (np.array([float(r[c]) for c in LABELS]),
                                              r["normalization"]) for r in _csv(out)}

    by_column = run([str(listing), "--speaker-from", "column"], tmp_path / "c" / "p.csv")
    by_folder = run([str(regrouped), "--speaker-from", "folder"], tmp_path / "f" / "p.csv")
    assert set(by_column) == {os.path.basename(p) for p in files}
    assert set(by_folder) == set(by_column) - {"b2.wav"}
    for name, (probs, note) in by_folder.items():
        np.testing.assert_allclose(by_column[name][0], probs, atol=1e-6, err_msg=name)
        assert by_column[name][1] == note
    assert by_column["a0.wav"][1].startswith("speaker X (") and "of 2 inputs" in \
        by_column["a0.wav"][1]
    assert by_column["b2.wav"][1] == "fallback statistics (no speaker)"

    for rule in ("file", "folder"):  # other groupings, other statistics, other numbers
        other = run([str(listing), "--speaker-from", rule], tmp_path / rule / "p.csv")
        for name in by_folder:
            assert not np.allclose(other[name][0], by_column[name][0], atol=1e-6), (rule, name)

    bare = inp / "bare.csv"
    bare.write_text("path\nA/a0.wav\nB/b0.wav\n")
    assert predict_main(["--model", speaker_model["model"], str(bare), "--speaker-from",
                         "column", "--out", str(tmp_path / "x" / "p.csv")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {bare}: --speaker-from column needs a 'speaker' column"]
    assert predict_main(["--model", speaker_model["model"], str(inp / "A"), "--speaker-from",
                         "column", "--out", str(tmp_path / "y" / "p.csv")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --speaker-from column needs an input list CSV with a 'speaker' column"]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
