"""tfrecords_tools on real media written by the tests (astronaut photo, tones)."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage import data

from emobed_tf.data import source
from emobed_tf.records import manifest, schema
from tests.tools.media_fixtures import tone, write_video, write_wav
from tfrecords_tools import corpora, extract, face, media
from tfrecords_tools.audio_features import run_audio_jobs, run_reference


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    write_wav(str(d / "a.wav"), tone(1.5, freq=180))
    write_wav(str(d / "b.wav"), tone(1.0, freq=300, seed=1))
    write_video(str(d / "face.mp4"), 1.0)
    write_video(str(d / "noaudio.mp4"), 0.5, audio=False)
    write_video(str(d / "noface.mp4"), 0.5, face=False)
    data_ = open(d / "face.mp4", "rb").read()
    open(d / "truncated.mp4", "wb").write(data_[:300])
    open(d / "garbage.wav", "wb").write(b"RIFF1234WAVEfmt garbage" * 10)
    from PIL import Image

    Image.fromarray(data.astronaut()).save(d / "astronaut.png")
    return d


def test_decoding(media_dir):
    sig = media.decode_audio(str(media_dir / "face.mp4"))
    assert sig.dtype == np.float32 and 16000 <= len(sig) <= 16000 + 2048  # AAC adds padding
    wav = media.decode_audio(str(media_dir / "a.wav"))
    np.testing.assert_allclose(wav, tone(1.5, freq=180), atol=1 / 32768 + 1e-6)
    frames = list(media.video_frames(str(media_dir / "face.mp4"), fps=5))
    assert len(frames) == 5 and frames[0][1].shape == (256, 256, 3)
    assert [round(t, 2) for t, _ in frames] == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert len(list(media.video_frames(str(media_dir / "astronaut.png")))) == 1


@pytest.mark.parametrize("name,call,msg", [
    ("noaudio.mp4", media.decode_audio, "no audio stream"),
    ("astronaut.png", media.decode_audio, "no audio stream"),
    ("garbage.wav", media.decode_audio, "cannot be decoded"),
    ("missing.wav", media.decode_audio, "not found"),
    ("truncated.mp4", lambda p: list(media.video_frames(p)), "cannot be decoded|no frames"),
    ("a.wav", lambda p: list(media.video_frames(p)), "no video stream"),
])
def test_bad_media_is_named(media_dir, name, call, msg):
    with pytest.raises(media.MediaError, match=msg) as err:
        call(str(media_dir / name))
    assert name in str(err.value)


def test_egemaps_matches_opensmile_reading_the_file(media_dir):
    paths = [str(media_dir / "a.wav"), str(media_dir / "b.wav")]
    got = {k: f for k, f, e, *_ in run_audio_jobs([(p, p, {}) for p in paths], workers=2)}
    ref = run_reference(paths)
    for p, r in zip(paths, ref):
        assert got[p].shape == (1, 88)
        np.testing.assert_allclose(got[p][0], r, rtol=1e-4, atol=1e-4)
    # the two files differ, and so do their features
    assert np.abs(got[paths[0]] - got[paths[1]]).max() > 1e-2


def test_lld_sequences_are_openSMILE_llds_averaged_over_the_hop(media_dir):
    path = str(media_dir / "a.wav")
    (_, got, err, *_), = run_audio_jobs([(path, path, {"mode": "lld", "hop_s": 0.1})], workers=1)
    assert err is None
    ref = run_reference([path], "lld")[0]  # [T, 25] every 10 ms, read by openSMILE itself
    n = len(ref)
    want = [ref[i:i + 10].mean(0) for i in range(0, n, 10)]  # 100 ms means, last one shorter
    assert got.shape == (-(-n // 10), 25)
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-4, atol=1e-4)


def test_windowed_functionals_and_errors_in_workers(media_dir):
    jobs = [("w", str(media_dir / "a.wav"), {"mode": "windowed", "window_s": 1.0}),
            ("n", str(media_dir / "noaudio.mp4"), {}),
            ("s", str(media_dir / "a.wav"), {"start_s": 0.5, "end_s": 1.0})]
    res = {k: (f, e) for k, f, e, *_ in run_audio_jobs(jobs, workers=1)}
    assert res["w"][0].shape == (38, 88)  # ceil(1.5 s / 40 ms)
    assert res["n"][0] is None and "no audio stream" in res["n"][1]
    assert res["s"][0].shape == (1, 88)


def test_mtcnn_finds_the_astronaut_and_alignment():
    img = data.astronaut()
    box, pts = face.FaceDetector().detect(img)
    x, y, w, h = box
    assert 150 < x < 230 and 30 < y < 110 and 60 < w < 130
    assert pts[0, 0] < pts[1, 0]  # left eye left of right eye
    crop = face.align(img, pts, 112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # the landmarks land on the template: the eyes are where the template says
    from skimage.transform import SimilarityTransform
    t = SimilarityTransform()
    t.estimate(pts, face.TEMPLATE_112)
    np.testing.assert_allclose(t(pts)[:2], face.TEMPLATE_112[:2], atol=3)
    assert face.FaceDetector().detect(np.full((200, 200, 3), 90, np.uint8)) is None


def test_vggface_weights_round_trip_in_the_published_layout(tmp_path):
    net = face.build_vggface(32, 16)
    assert [layer.name for layer in net.layers if layer.weights][:2] == ["conv1_1", "conv1_2"]
    path = str(tmp_path / "vgg.h5")
    face.write_vggface_weights(net, path)
    import h5py

    with h5py.File(path) as f:
        assert list(f["fc7"].attrs["weight_names"]) == [b"fc7/kernel:0", b"fc7/bias:0"]
        assert f["conv1_1"]["conv1_1"]["kernel:0"].shape == (3, 3, 3, 64)
    enc = face.VGGFaceEncoder(path, "fc7_relu", input_size=32, fc_units=16)
    faces = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype(np.uint8)
    ref = keras.Model(net.input, net.get_layer("fc7_relu").output)(
        faces[..., ::-1].astype(np.float32) - face.VGGFACE_MEAN_BGR)
    np.testing.assert_allclose(enc(faces), np.asarray(ref), rtol=1e-5, atol=1e-5)
    assert enc.dim == 16
    with pytest.raises(face.WeightsError, match="expects"):
        face.VGGFaceEncoder(path, input_size=64, fc_units=16)
    with pytest.raises(face.WeightsError, match="not found"):
        face.VGGFaceEncoder(str(tmp_path / "none.h5"))


@pytest.mark.slow
def test_full_size_vggface_layout(tmp_path):
    net = face.build_vggface()
    assert net.get_layer("fc7").output.shape[-1] == 4096 and net.count_params() == 145002878
    path = str(tmp_path / "full.h5")
    face.write_vggface_weights(net, path)
    assert face.VGGFaceEncoder(path).dim == 4096


def _small_face_model(path, channels=3):
    inp = keras.Input((24, 24, channels))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="feat")(x)
    keras.Model(inp, keras.layers.Dense(2, name="out")(x)).save(path)
    return path


def test_keras_model_encoder_grayscale_and_errors(tmp_path):
    path = _small_face_model(str(tmp_path / "g.keras"), channels=1)
    enc = face.KerasModelEncoder(path, "feat")
    assert enc.input_size == (24, 24) and enc.channels == 1 and enc.dim == 4
    out = enc(np.zeros((3, 24, 24, 3), np.uint8))
    assert out.shape == (3, 4)
    with pytest.raises(face.WeightsError, match="no layer 'nope'"):
        face.KerasModelEncoder(path, "nope")


def test_face_pipeline_counts_frames_without_a_face(tmp_path, media_dir):
    enc = face.KerasModelEncoder(_small_face_model(str(tmp_path / "c.keras")), "feat")
    pipe = face.FacePipeline(enc)
    blank = np.full((120, 120, 3), 60, np.uint8)
    frames = [(0.0, data.astronaut()), (0.2, blank), (0.4, data.astronaut())]
    desc, missing = pipe.clip("x", frames, "mean")
    assert desc.shape == (1, 4) and missing == 1
    seq, _ = pipe.clip("x", frames, "functionals", hop_s=0.2, window_s=0.2)
    assert seq.shape == (3, 8)
    np.testing.assert_array_equal(seq[1], seq[0])  # no face at 0.2 s: previous value carried
    with pytest.raises(media.MediaError, match="no face detected in any of the 1"):
        pipe.clip("blank.mp4", [(0.0, blank)])
    assert pipe.timing["frames"] == 3 + 3 + 1 and pipe.timing["detect"] > 0


def _manifest_csv(path, media_dir):
    rows = [("a.wav", "audio", "happy", "train", "s1"), ("b.wav", "audio", "sad", "train", "s2"),
            ("face.mp4", "audio", "sad", "dev", "s3"), ("noaudio.mp4", "audio", "happy", "dev", "s4"),
            ("face.mp4", "video", "happy", "train", "v1"),
            ("noface.mp4", "video", "sad", "train", "v2"),
            ("astronaut.png", "video", "sad", "dev", "v3")]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "modality", "label", "split", "speaker"])
        for r in rows:
            w.writerow([str(media_dir / r[0])] + list(r[1:]))
    return path


def _args(tmp_path, media_dir, out):
    model = str(tmp_path / "enc.keras")
    if not os.path.exists(model):  # one encoder for all runs of a test
        _small_face_model(model)
    return ["--corpus", "manifest", "--csv", _manifest_csv(str(tmp_path / "m.csv"), media_dir),
            "--labels", "happy,sad", "--out", out, "--encoder", "keras", "--encoder-model",
            model, "--layer", "feat", "--fps", "5", "--workers", "2"]


def test_manifest_extraction_end_to_end_and_resume(tmp_path, media_dir, capsys, monkeypatch):
    out = str(tmp_path / "out")
    assert extract.main(_args(tmp_path, media_dir, out)) == 0
    said = capsys.readouterr().out
    assert "7 inputs -> 3 audio items, 2 video items; 2 failed" in said
    fails = list(csv.DictReader(open(os.path.join(out, "failures.csv"))))
    reasons = {os.path.basename(f["path"]): f["reason"] for f in fails}
    assert "no audio stream" in reasons["noaudio.mp4"]
    assert "no face detected" in reasons["noface.mp4"]
    m = manifest.load_manifest(out)
    assert m.label_names == ("happy", "sad") and m.modalities["audio"].dim == 88
    assert m.modalities["video"].dim == 4 and m.extra["failures"] == 2
    assert m.modalities["audio"].counts == {"train": 2, "dev": 1}
    items = [schema.decode_example(r.numpy()) for r in tf.data.TFRecordDataset(
        source.shard_paths(source.Source.open(out), "audio", "train"))]
    assert [(i.speaker, i.label_class) for i in items] == [("s1", 0), ("s2", 1)]
    text = extract.inspect(out)
    assert "audio: dim 88" in text and "failures: 2" in text
    # a second run into the same folder is refused, nothing is overwritten
    assert extract.main(_args(tmp_path, media_dir, out)) == 2

    # interrupted run: features cached, then the writing step dies
    out2 = str(tmp_path / "out2")
    real = extract.write_dataset
    monkeypatch.setattr(extract, "write_dataset",
                        lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert extract.main(_args(tmp_path, media_dir, out2)) == 130  # Ctrl-C: one line
    monkeypatch.setattr(extract, "write_dataset", real)
    assert extract.main(_args(tmp_path, media_dir, out2)) == 0
    summary = json.load(open(os.path.join(out2, "extraction_summary.json")))
    # nothing is redone: finished and failed inputs are both remembered
    assert summary["audio_already_done"] == 4 and summary["video_already_done"] == 3
    for mod in ("audio", "video"):
        for s in m.modalities[mod].shards:
            for a, b in zip(source.shard_paths(source.Source.open(out), mod, s),
                            source.shard_paths(source.Source.open(out2), mod, s)):
                assert open(a, "rb").read() == open(b, "rb").read()


def test_manifest_unknown_label_and_missing_columns(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("path,modality,label,split,speaker\nx.wav,audio,angry,train,s\n")
    with pytest.raises(corpora.CorpusError, match="m.csv:2: unknown label 'angry'"):
        corpora.manifest_jobs(str(p), ["happy", "sad"])
    p.write_text("path,label\nx.wav,happy\n")
    with pytest.raises(corpora.CorpusError, match="missing columns"):
        corpora.manifest_jobs(str(p))


def test_omg_reader(tmp_path):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    head = ",".join(corpora.OMG_COLUMNS)
    (csv_dir / "omg_TrainVideos.csv").write_text(
        head + "\nhttp://y/1,0.0,2.5,vidA,utterance_1.mp4,0.3,-0.2,3\n"
               "http://y/1,2.5,4.0,vidA,utterance_2.mp4,0.1,0.4,4\n")
    (csv_dir / "omg_ValidationVideos.csv").write_text(
        head + "\nhttp://y/2,0,1,vidB,utterance_1.mp4,0.5,0.5,6\n")
    jobs = corpora.omg_jobs(str(csv_dir), str(tmp_path / "clips"))
    assert len(jobs) == 6
    j = [x for x in jobs if x.modality == "video" and x.split == "train"][0]
    assert j.label_class == 3 and j.label_dims == (0.3, -0.2)
    assert j.path == str(tmp_path / "clips" / "vidA" / "utterance_1.mp4")
    assert {x.split for x in jobs} == {"train", "dev"}
    (csv_dir / "omg_TestVideos.csv").write_text(head + "\nl,0,1,v,u.mp4,0,0,9\n")
    with pytest.raises(corpora.CorpusError, match="omg_TestVideos.csv:2: EmotionMaxVote=9"):
        corpora.omg_jobs(str(csv_dir), "clips")


def _arff(path, names, rows, string_first=True):
    with open(path, "w") as fh:
        fh.write("@relation x\n")
        if string_first:
            fh.write("@attribute Instance_name string\n")
        fh.write("@attribute frameTime numeric\n")
        for n in names:
            fh.write(f"@attribute {n} numeric\n")
        fh.write("@data\n")
        for i, r in enumerate(rows):
            fh.write(("'rec'," if string_first else "") + f"{i * 0.04:.2f}," +
                     ",".join(f"{v:.6f}" for v in r) + "\n")


def test_avec2016_import(tmp_path):
    root = tmp_path / "avec"
    rng = np.random.default_rng(0)
    for sub in ("features_audio/arousal", "features_video_appearance/arousal",
                "ratings_gold_standard/arousal", "ratings_gold_standard/valence"):
        (root / sub).mkdir(parents=True)
    feats = {}
    for rec in ("train_1", "dev_1"):
        feats[rec] = rng.normal(size=(30, 4))
        _arff(root / "features_audio/arousal" / f"{rec}.arff", [f"f{i}" for i in range(4)],
              feats[rec])
        _arff(root / "features_video_appearance/arousal" / f"{rec}.arff",
              [f"g{i}" for i in range(6)], rng.normal(size=(30, 6)))
        for d in ("arousal", "valence"):
            _arff(root / "ratings_gold_standard" / d / f"{rec}.arff", ["GoldStandard"],
                  rng.uniform(-1, 1, size=(30, 1)))
    _arff(root / "features_audio/arousal" / "test_1.arff", ["f0", "f1", "f2", "f3"],
          rng.normal(size=(30, 4)))
    out = str(tmp_path / "recola")
    assert extract.main(["--corpus", "avec2016", "--avec-dir", str(root), "--out", out]) == 0
    m = manifest.load_manifest(out)
    assert m.task == "regression" and m.modalities["audio"].dim == 4
    assert m.modalities["video"].dim == 6
    assert m.modalities["audio"].counts == {"train": 1, "dev": 1}
    it = schema.decode_example(next(iter(tf.data.TFRecordDataset(
        source.shard_paths(source.Source.open(out), "audio", "train")))).numpy())
    np.testing.assert_allclose(it.features, feats["train_1"], atol=1e-5)
    assert it.label_dims.shape == (30, 2)
    fails = list(csv.DictReader(open(os.path.join(out, "failures.csv"))))
    assert len(fails) == 1 and "gold standard" in fails[0]["reason"]  # test labels are private


@pytest.mark.parametrize("name,kind,kw", [
    ("x.flac", "audio", {"codec": "flac"}),
    ("x.mp3", "audio", {"codec": "libmp3lame"}),
    ("x.mkv", "video", {}),
    ("x.webm", "video", {"vcodec": "libvpx", "acodec": "libopus", "arate": 48000}),
    ("x.flv", "video", {"vcodec": "flv", "acodec": "libmp3lame", "arate": 22050}),
])
def test_common_containers_decode(tmp_path, name, kind, kw):
    from tests.tools.media_fixtures import write_audio

    path = str(tmp_path / name)
    if kind == "audio":
        write_audio(path, tone(1.0), **kw)
    else:
        write_video(path, 1.0, **kw)
        frames = list(media.video_frames(path, fps=5))
        assert len(frames) == 5 and frames[0][1].shape == (256, 256, 3)
    sig = media.decode_audio(path)
    # 16 kHz mono, about one second (codecs add priming/padding samples)
    assert 15000 < len(sig) < 18500 and 0.1 < np.abs(sig).max() <= 1.0


def test_precropped_faces_skip_detection(tmp_path):
    enc = face.KerasModelEncoder(_small_face_model(str(tmp_path / "c.keras")), "feat")
    pipe = face.FacePipeline(enc, detect=False)
    blank = np.full((50, 40, 3), 60, np.uint8)  # no face, but pre-cropped corpora are trusted
    desc, missing = pipe.clip("x", [(0.0, blank), (0.04, blank)], "frames")
    assert desc.shape == (2, 4) and missing == 0 and pipe.detector is None


def test_beam_engine_writes_the_same_shards(tmp_path, media_dir, capsys):
    import apache_beam  # noqa: F401 - the dev extra installs it
    local, beamed = str(tmp_path / "local"), str(tmp_path / "beam")
    assert extract.main(_args(tmp_path, media_dir, local)) == 0
    assert extract.main(_args(tmp_path, media_dir, beamed) +
                        ["--engine", "beam", "--", "--runner=DirectRunner"]) == 0
    assert "7 inputs -> 3 audio items, 2 video items; 2 failed" in capsys.readouterr().out
    a, b = source.Source.open(local), source.Source.open(beamed)
    assert a.manifest.modalities["video"].counts == b.manifest.modalities["video"].counts
    for mod in ("audio", "video"):
        for split in a.manifest.modalities[mod].shards:
            for pa, pb in zip(source.shard_paths(a, mod, split), source.shard_paths(b, mod, split)):
                assert open(pa, "rb").read() == open(pb, "rb").read()
    read = lambda d: sorted(csv.reader(open(os.path.join(d, "failures.csv"))))  # noqa: E731
    assert read(local) == read(beamed)
    assert json.load(open(os.path.join(beamed, "extraction_summary.json")))["engine"] == "beam"
    with pytest.raises(SystemExit):  # Beam options need --engine beam
        extract.parse_args(_args(tmp_path, media_dir, str(tmp_path / "x")) + ["--", "--runner=X"])


def test_omg_extraction_end_to_end(tmp_path, media_dir):
    import shutil

    clips = tmp_path / "clips" / "vidA"
    clips.mkdir(parents=True)
    shutil.copy(media_dir / "face.mp4", clips / "utterance_1.mp4")
    shutil.copy(media_dir / "noaudio.mp4", clips / "utterance_2.mp4")
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "omg_TrainVideos.csv").write_text(
        ",".join(corpora.OMG_COLUMNS) + "\nhttp://y,0,1,vidA,utterance_1.mp4,0.25,-0.5,3\n"
        "http://y,1,2,vidA,utterance_2.mp4,0.1,0.2,5\n")
    model = str(tmp_path / "enc.keras")
    _small_face_model(model)
    out = str(tmp_path / "omg")
    assert extract.main(["--corpus", "omg", "--csv-dir", str(csv_dir), "--clips-dir",
                         str(tmp_path / "clips"), "--out", out, "--encoder", "keras",
                         "--encoder-model", model, "--layer", "feat"]) == 0
    m = manifest.load_manifest(out)
    assert m.label_names == corpora.OMG_CLASSES and m.dim_names == ("arousal", "valence")
    assert m.modalities["audio"].counts == {"train": 1}  # utterance_2 has no audio track
    assert m.modalities["video"].counts == {"train": 2}
    it = schema.decode_example(next(iter(tf.data.TFRecordDataset(
        source.shard_paths(source.Source.open(out), "audio", "train")))).numpy())
    assert it.label_class == 3 and it.recording == "vidA/utterance_1.mp4"
    np.testing.assert_allclose(it.label_dims, [[0.25, -0.5]])


def test_noise_at_an_snr_is_mixed_in_before_extraction_and_recorded(tmp_path, media_dir):
    import soundfile

    from tfrecords_tools.audio_features import add_noise
    from tfrecords_tools.options import AudioOptions

    path = str(media_dir / "a.wav")
    opts = AudioOptions(noise_snr=0.0, noise_seed=3)
    kw = opts.job_kwargs()
    assert (kw["noise_snr_db"], kw["noise_seed"]) == (0.0, 3)
    fp = opts.fingerprint()
    assert (fp["audio_noise_snr_db"], fp["audio_noise_seed"]) == (0.0, 3)
    assert "audio_noise_snr_db" not in AudioOptions().fingerprint()  # clean: as before
    got = {k: f for k, f, e, *_ in run_audio_jobs([("noisy", path, kw), ("clean", path, {})])}
    # openSMILE reading a file of the same noisy signal, written here
    clean = media.decode_audio(path)
    noisy = add_noise(clean, 0.0, path, 3)
    snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2)
                        / np.mean((noisy - clean).astype(np.float64) ** 2))
    assert snr == pytest.approx(0.0, abs=1e-3)
    soundfile.write(str(tmp_path / "noisy.wav"), noisy, media.AUDIO_RATE, subtype="FLOAT")
    np.testing.assert_allclose(got["noisy"][0], run_reference([str(tmp_path / "noisy.wav")])[0],
                               rtol=1e-3, atol=1e-3)
    assert np.abs(got["noisy"] - got["clean"]).max() > 1e-2
    again = {k: f for k, f, e, *_ in run_audio_jobs([("noisy", path, kw)])}
    np.testing.assert_array_equal(again["noisy"], got["noisy"])  # the same noise every run
    with pytest.raises(Exception, match="--add-noise-snr"):
        AudioOptions(noise_snr=float("nan"))
