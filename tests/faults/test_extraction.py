"""Fault injection for ``tfrecords_tools.extract``: every fault ends in one clear line and exit
code 2, or in a correct recovery; nothing finished is changed by a failed attempt.

Inputs are tiny wavs and images written here; each case runs the real CLI (``extract.main``).
"""

import csv
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from emobed_tf.data import source
from emobed_tf.records import manifest, schema
from emobed_tf.io import FolderLock
from tests.tools.media_fixtures import tone, write_video, write_wav
from tfrecords_tools import corpora, extract

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- helpers -------------------------------------------------------------------------------


def _manifest(path, rows, header=("path", "modality", "label", "split", "speaker")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def _audio_argv(csv_path, out, *extra):
    return ["--corpus", "manifest", "--csv", str(csv_path), "--labels", "happy,sad",
            "--out", str(out), "--workers", "1", *extra]


def _hashes(folder):
    """``{relative path: sha256}`` of every file under ``folder``."""
    out = {}
    for d, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(d, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _failures(out):
    with open(os.path.join(out, "failures.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def _summary(out):
    with open(os.path.join(out, "extraction_summary.json")) as fh:
        return json.load(fh)


def _records(out, mod="audio", split="train"):
    paths = source.shard_paths(source.Source.open(out), mod, split)
    return [schema.decode_example(r.numpy()) for r in tf.data.TFRecordDataset(paths)]


def _one_error_line(capsys, *names):
    """The stderr of a failed run: one ``error:`` line, no traceback, naming ``names``."""
    said = capsys.readouterr().err
    lines = [x for x in said.splitlines() if x.strip() and "%|" not in x]  # not tqdm bars
    assert len(lines) == 1 and lines[0].startswith("error: "), said
    assert "Traceback" not in said, said
    err = lines[0]
    for n in names:
        assert str(n) in err, (n, err)
    return err


def _interrupt_before_writing(monkeypatch):
    """Runs the extraction up to the point where the shards would be written, then stops."""
    monkeypatch.setattr(extract, "write_dataset",
                        lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("wavs")
    write_wav(str(d / "a.wav"), tone(0.6, freq=180))
    write_wav(str(d / "b.wav"), tone(0.5, freq=300, seed=1))
    write_wav(str(d / "c.wav"), tone(0.4, freq=240, seed=2))
    return d


def _two_rows(wavs):
    return [(str(wavs / "a.wav"), "audio", "happy", "train", "s1"),
            (str(wavs / "b.wav"), "audio", "sad", "train", "s2")]


# -- the wrong result: resuming with other options -----------------------------------------


def test_resume_with_other_audio_options_is_refused_never_mixed(tmp_path, wavs, capsys,
                                                                monkeypatch):
    csv_path = _manifest(tmp_path / "m.csv", _two_rows(wavs))
    out = tmp_path / "out"
    with monkeypatch.context() as mp:
        _interrupt_before_writing(mp)
        # utterance features cached, not written
        assert extract.main(_audio_argv(csv_path, out)) == 130
    cached = _hashes(out / ".work")
    assert sum(n.endswith(".npy") for n in cached) == 2
    capsys.readouterr()

    windowed = ("--audio-mode", "windowed", "--window", "1.0")
    assert extract.main(_audio_argv(csv_path, out, *windowed)) == 2
    err = _one_error_line(capsys, out / ".work", "--audio-mode 'utterance' -> 'windowed'",
                          "--window (unset) -> 1.0", "--overwrite", "--out")
    assert "holds audio items with other settings" in err
    assert not (out / "manifest.json").exists() and _hashes(out / ".work") == cached

    # --overwrite discards the utterance items: the data set holds windowed items only
    assert extract.main(_audio_argv(csv_path, out, *windowed, "--overwrite")) == 0
    recs = _records(out)
    assert len(recs) == 2 and all(r.features.shape[0] > 1 for r in recs)
    m = manifest.load_manifest(out)
    assert m.modalities["audio"].feature_set == "eGeMAPSv02 functionals (windowed)"
    assert m.extra["extraction_options"]["audio"]["audio_mode"] == "windowed"
    assert m.extra["audio_already_done"] == 0 and m.extra["cache_discarded"] == ["audio"]
    assert m.frame_step_s == 0.04  # the windows' hop (--hop unset: 0.04 s)


def _face_model(path, seed):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="feat")(x)
    keras.Model(inp, x).save(path)
    return str(path)


def _png(path, seed, size=16):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3)).astype(np.uint8)).save(path)
    return str(path)


def test_resume_with_another_encoder_file_content_is_refused(tmp_path, capsys, monkeypatch):
    faces = tmp_path / "faces" / "happy"
    faces.mkdir(parents=True)
    _png(faces / "1.png", 1)
    _png(faces / "2.png", 2)
    model = _face_model(tmp_path / "enc.keras", 0)
    out = tmp_path / "out"
    argv = ["--corpus", "images", "--images-dir", str(tmp_path / "faces"), "--out", str(out),
            "--encoder", "keras", "--encoder-model", model, "--layer", "feat", "--no-detect"]
    with monkeypatch.context() as mp:
        _interrupt_before_writing(mp)
        assert extract.main(argv) == 130
    cached = _hashes(out / ".work")
    capsys.readouterr()
    _face_model(model, 1)  # same path, other weights: other descriptors
    assert extract.main(argv) == 2
    _one_error_line(capsys, "holds video items with other settings",
                    "--encoder-model (file content)")
    assert _hashes(out / ".work") == cached and not (out / "manifest.json").exists()
    # a changed --layer-pool or --fps is named the same way
    assert extract.main(argv + ["--fps", "2"]) == 2
    _one_error_line(capsys, "--fps 5.0 -> 2.0")


# -- locks, encodings, disks ---------------------------------------------------------------


def test_a_second_extraction_into_the_same_out_is_refused(tmp_path, wavs, capsys):
    csv_path = _manifest(tmp_path / "m.csv", _two_rows(wavs))
    out = tmp_path / "out"
    with FolderLock(str(out), "a test extraction"):
        assert extract.main(_audio_argv(csv_path, out)) == 2
        _one_error_line(capsys, out, "in use by a test extraction", f"pid {os.getpid()}")
        assert not (out / ".work").exists()
    assert extract.main(_audio_argv(csv_path, out)) == 0  # released: the next run goes ahead


def test_csv_files_that_are_not_utf8_name_the_file_and_line(tmp_path, wavs, capsys):
    m = tmp_path / "m.csv"
    m.write_bytes(f"path,modality,label,split,speaker\n{wavs / 'a.wav'},audio,happy,train,s1\n"
                  f"{wavs / 'b.wav'},audio,sad,train,Andr\u00e9\n".encode("latin-1"))
    out = tmp_path / "out"
    assert extract.main(_audio_argv(m, out)) == 2
    _one_error_line(capsys, f"{m}:3: not UTF-8 text (byte 0xe9 at offset", "save the file as "
                                                                           "UTF-8")
    assert not (out / "manifest.json").exists()
    # the other readers' label CSVs and label-map files say the same
    labels = tmp_path / "labels.csv"
    labels.write_bytes("image,emotion\nr\u00e9.png,happy\n".encode("cp1252"))
    with pytest.raises(corpora.CorpusError, match=r"labels.csv:2: not UTF-8 text"):
        corpora.image_jobs(str(tmp_path), str(labels))
    lmap = tmp_path / "map.txt"
    lmap.write_bytes("col\u00e8re=anger\n".encode("latin-1"))
    with pytest.raises(corpora.CorpusError, match=r"map.txt:1: not UTF-8 text \(byte 0xe8"):
        corpora.parse_label_map(str(lmap))


def test_a_full_disk_is_one_line_no_temporary_file_and_the_cache_survives(tmp_path, wavs,
                                                                           capsys, monkeypatch):
    rows = _two_rows(wavs) + [(str(wavs / "c.wav"), "audio", "sad", "dev", "s3")]
    csv_path = _manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    real_save, calls = np.save, []

    def save(path, arr, *a, **k):  # the first item fits, then the disk is full mid-write
        calls.append(path)
        if len(calls) == 1:
            return real_save(path, arr, *a, **k)
        with open(path, "wb") as fh:
            fh.write(b"\x93NUMPY half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(np, "save", save)
        assert extract.main(_audio_argv(csv_path, out)) == 2
    _one_error_line(capsys, out / ".work" / "audio", ".npy: the disk is full", "MiB free",
                    "what was saved before is kept")
    files = _hashes(out)
    assert not [f for f in files if ".tmp" in f], files
    (first,) = [f for f in files if f.endswith(".npy")]
    assert np.load(out / first).shape == (1, 88)
    assert not (out / "manifest.json").exists()
    # space is back: the rerun resumes with the item saved before
    assert extract.main(_audio_argv(csv_path, out)) == 0
    assert _summary(out)["audio_already_done"] == 1 and len(_records(out)) == 2


def test_an_out_that_cannot_be_written_is_one_line(tmp_path, wavs, capsys, monkeypatch):
    csv_path = _manifest(tmp_path / "m.csv", _two_rows(wavs))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert extract.main(_audio_argv(csv_path, blocker / "out")) == 2
    _one_error_line(capsys, blocker / "out", "cannot write")
    # a file system that turns read-only mid-run (as root, chmod cannot show it)
    with monkeypatch.context() as mp:
        mp.setattr(np, "save", lambda *a, **k: (_ for _ in ()).throw(
            OSError(errno.EROFS, "Read-only file system")))
        assert extract.main(_audio_argv(csv_path, tmp_path / "out")) == 2
    _one_error_line(capsys, tmp_path / "out" / ".work" / "audio", "the file system is read-only")
    assert not [f for f in _hashes(tmp_path / "out") if ".tmp" in f]


# -- inputs that are cut short, repeated, missing or restored -------------------------------


def test_a_wav_cut_short_is_written_with_a_warning_and_counted(tmp_path, wavs, capsys):
    short = tmp_path / "short.wav"
    write_wav(str(short), tone(1.0, freq=200))
    with open(short, "r+b") as fh:
        fh.truncate(44 + 16000)  # header + 0.5 s of the announced 1.0 s
    csv_path = _manifest(tmp_path / "m.csv", [
        (str(wavs / "a.wav"), "audio", "happy", "train", "s1"),
        (str(short), "audio", "sad", "train", "s2")])
    out = tmp_path / "out"
    assert extract.main(_audio_argv(csv_path, out)) == 0
    said = capsys.readouterr()
    assert "2 audio items" in said.out and "1 truncated inputs written" in said.out
    assert "warning: 1 inputs are shorter than their header says" in said.err
    (row,) = _failures(out)
    assert row["kind"] == "truncated" and row["path"] == str(short)
    assert (f"{short}: truncated: the WAV header announces 1.00 s of audio, the file holds "
            "0.50 s") in row["reason"]
    s = _summary(out)
    assert (s["truncated"], s["failed"]) == (1, 0)
    assert manifest.load_manifest(out).extra["truncated"] == 1
    assert len(_records(out)) == 2
    assert "failures: 0, truncated inputs: 1" in extract.inspect(str(out))


def test_a_repeated_manifest_row_is_written_once_with_a_warning(tmp_path, wavs, capsys):
    rows = _two_rows(wavs)
    csv_path = _manifest(tmp_path / "m.csv", rows + [rows[0]])
    out = tmp_path / "out"
    assert extract.main(_audio_argv(csv_path, out)) == 0
    said = capsys.readouterr()
    assert "3 inputs -> 2 audio items; 0 failed, 1 skipped (1 duplicate)" in said.out
    assert "warning: 1 manifest rows repeat an earlier row" in said.err
    (row,) = _failures(out)
    assert row["kind"] == "duplicate"
    assert row["reason"] == (f"{csv_path}:4: repeats line 2 (same path, modality and label); "
                             "written once")
    assert [r.speaker for r in _records(out)] == ["s1", "s2"]
    assert _summary(out)["duplicates"] == 1


def test_retry_failed_extracts_a_restored_input(tmp_path, wavs, capsys, monkeypatch):
    gone = tmp_path / "late.wav"
    csv_path = _manifest(tmp_path / "m.csv", [
        (str(wavs / "a.wav"), "audio", "happy", "train", "s1"),
        (str(gone), "audio", "sad", "train", "s2")])
    out = tmp_path / "out"
    with monkeypatch.context() as mp:
        _interrupt_before_writing(mp)
        assert extract.main(_audio_argv(csv_path, out)) == 130
    write_wav(str(gone), tone(0.5, freq=220))  # the file is restored
    # by default a failed input stays failed (nothing is redone) ...
    assert extract.main(_audio_argv(csv_path, out)) == 0
    assert [(f["path"], f["kind"]) for f in _failures(out)] == [(str(gone), "failed")]
    assert f"{gone}: file not found" in _failures(out)[0]["reason"]
    assert _summary(out)["audio_already_done"] == 2
    capsys.readouterr()
    # ... --retry-failed tries it again (with --overwrite, as the folder is finished)
    assert extract.main(_audio_argv(csv_path, out, "--retry-failed", "--overwrite")) == 0
    s = _summary(out)
    assert (s["retried"], s["failed"], s["written"], s["audio_already_done"]) == (
        1, 0, {"audio": 2}, 1)
    assert _failures(out) == [] and [r.speaker for r in _records(out)] == ["s1", "s2"]


# -- already-good behaviours, kept -----------------------------------------------------------


def test_bad_inputs_are_listed_with_the_reason(tmp_path, wavs, capsys):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF1234WAVEfmt garbage" * 10)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(blank)
    model = _face_model(tmp_path / "enc.keras", 0)
    csv_path = _manifest(tmp_path / "m.csv", [
        (str(wavs / "a.wav"), "audio", "happy", "train", "s1"),
        (str(tmp_path / "missing.wav"), "audio", "sad", "train", "s2"),
        (str(garbage), "audio", "sad", "train", "s3"),
        (str(blank), "audio", "happy", "train", "s4"),
        (str(blank), "video", "happy", "train", "s4"),
        (_png(tmp_path / "face.png", 3, 64), "video", "sad", "train", "s5")])
    out = tmp_path / "out"
    assert extract.main(_audio_argv(csv_path, out, "--encoder", "keras", "--encoder-model",
                                    model, "--layer", "feat")) == 0
    assert "6 inputs -> 1 audio items; 5 failed" in capsys.readouterr().out
    reasons = {(os.path.basename(f["path"]), f["modality"]): (f["kind"], f["reason"])
               for f in _failures(out)}
    missing = f"{tmp_path / 'missing.wav'}: file not found"
    assert reasons[("missing.wav", "audio")] == ("failed", missing)
    assert "cannot be decoded" in reasons[("garbage.wav", "audio")][1]
    assert reasons[("blank.png", "audio")][1] == f"{blank}: an image has no audio stream"
    assert "no face detected in any of the 1 sampled frames" in reasons[("blank.png", "video")][1]
    assert "no face detected" in reasons[("face.png", "video")][1]  # noise is no face either


def test_labels_outside_the_set_are_an_error_or_dropped_and_listed(tmp_path, wavs, capsys):
    rows = _two_rows(wavs) + [(str(wavs / "c.wav"), "audio", "angry", "train", "s3")]
    csv_path = _manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    assert extract.main(_audio_argv(csv_path, out)) == 2
    _one_error_line(capsys, f"{csv_path}:4: unknown label 'angry'", "--label-map angry=")
    assert not (out / "manifest.json").exists()
    assert extract.main(_audio_argv(csv_path, out, "--label-map", "angry=")) == 0
    assert [(f["path"], f["kind"]) for f in _failures(out)] == [
        (str(wavs / "c.wav"), "dropped_by_label_map")]
    assert len(_records(out)) == 2


def test_a_finished_out_is_never_touched_without_overwrite(tmp_path, wavs, capsys):
    csv_path = _manifest(tmp_path / "m.csv", _two_rows(wavs))
    out = tmp_path / "out"
    assert extract.main(_audio_argv(csv_path, out)) == 0
    before = _hashes(out)
    capsys.readouterr()
    for extra in ((), ("--audio-mode", "lld"), ("--retry-failed",)):
        assert extract.main(_audio_argv(csv_path, out, *extra)) == 2
        _one_error_line(capsys, out, "already holds a finished data set", "--overwrite")
        assert _hashes(out) == before


@pytest.mark.slow
def test_kill_9_mid_extraction_then_rerun_gives_the_same_records(tmp_path, capsys):
    rows = []
    for i in range(8):
        write_wav(str(tmp_path / f"w{i}.wav"), tone(1.5, freq=150 + 30 * i, seed=i))
        rows.append((str(tmp_path / f"w{i}.wav"), "audio", ("happy", "sad")[i % 2], "train",
                     f"s{i}"))
    csv_path = _manifest(tmp_path / "m.csv", rows)
    opts = ("--audio-mode", "windowed", "--window", "1.0", "--hop", "0.02")  # frame step 0.02
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-m", "tfrecords_tools.extract",
                             *_audio_argv(csv_path, killed, *opts)], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    cache = killed / ".work" / "audio"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if cache.is_dir() and any(n.endswith(".npy") for n in os.listdir(cache)):
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its openSMILE workers
    proc.wait()
    assert not (killed / "manifest.json").exists(), "the run finished before the kill"
    assert extract.main(_audio_argv(csv_path, killed, *opts)) == 0  # the lock died with it
    done = _summary(killed)["audio_already_done"]
    assert 1 <= done < 8
    assert extract.main(_audio_argv(csv_path, whole, *opts)) == 0
    a, b = _records(killed), _records(whole)
    assert [(r.speaker, r.label_class) for r in a] == [(r.speaker, r.label_class) for r in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.features, y.features)


# -- OpenFace: the columns asked for, one face, one frame rate ---------------------------------

OF_AUS = {"r": (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45),
          "c": (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)}
OF_FEATURES = ([f"AU{n:02d}_r" for n in OF_AUS["r"]] + [f"AU{n:02d}_c" for n in OF_AUS["c"]]
               + ["gaze_angle_x", "gaze_angle_y", "pose_Rx", "pose_Ry", "pose_Rz"])
ANGRY, HAPPY = "01-01-05-01-01-01-01", "01-01-03-01-01-01-02"  # RAVDESS names: labels, actors


def _openface_csv(path, values, *, faces=None, frames=None, times=None, conf=None,
                  drop=(), boxes=None):
    """An OpenFace 2 CSV: ``values`` [N, 40] are the feature columns in read order (OF_FEATURES).

    ``faces``: a face_id per row (no face_id column when None); ``frames``: the frame numbers
    (default 1..N); ``times``: timestamps (default 30 frames/s); ``conf``: confidences
    (default .95); ``drop``: feature columns left out; ``boxes``: a (width, height) per row
    for 68 landmarks spanning that box (no landmark columns when None).
    """
    n = len(values)
    frames = np.arange(1, n + 1) if frames is None else frames
    times = (np.asarray(frames) - 1) / 30 if times is None else times
    conf = [0.95] * n if conf is None else conf
    cols = [("frame", frames)] + ([("face_id", faces)] if faces is not None else []) + [
        ("timestamp", np.round(times, 3)), ("confidence", conf), ("success", [1] * n)]
    cols += [(c, np.asarray(values)[:, i]) for i, c in enumerate(OF_FEATURES) if c not in drop]
    if boxes is not None:
        ramp = np.linspace(0, 1, 68)
        cols += [(f"x_{j}", [100 + w * ramp[j] for w, _ in boxes]) for j in range(68)]
        cols += [(f"y_{j}", [50 + h * ramp[::-1][j] for _, h in boxes]) for j in range(68)]
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(", ".join(name for name, _ in cols) + "\n")  # OpenFace's ", " separator
        for i in range(n):
            fh.write(", ".join(f"{v[i]:g}" for _, v in cols) + "\n")
    return str(path)


def _of_values(n, seed):
    return np.round(np.random.default_rng(seed).uniform(-1, 3, (n, len(OF_FEATURES))), 3)


def _openface_argv(d, out, *extra):
    return ["--corpus", "openface", "--openface-dir", str(d), "--out", str(out), *extra]


@pytest.mark.parametrize("lacking", [ANGRY, HAPPY])
def test_openface_every_file_has_every_column_asked_for(tmp_path, capsys, lacking):
    """The alphabetically first file used to fix the AU set: all clips went out narrowed."""
    d = tmp_path / "of"
    x = {ANGRY: _of_values(3, 0), HAPPY: _of_values(4, 1)}
    for stem, v in x.items():
        drop = ("AU45_r", "AU28_c") if stem == lacking else ()
        _openface_csv(d / f"{stem}.csv", v, drop=drop)
    out = tmp_path / "out"
    assert extract.main(_openface_argv(d, out, "--openface-pool", "mean")) == 2
    _one_error_line(capsys, d / f"{lacking}.csv", "no columns ['AU45_r', 'AU28_c'] of "
                                                  "--openface-features au_r,au_c")
    assert not (out / "manifest.json").exists()
    # the groups asked for decide the set: without AUs the same files are complete
    assert extract.main(_openface_argv(d, out, "--openface-pool", "mean",
                                       "--openface-features", "pose,gaze")) == 0
    m = manifest.load_manifest(out)
    assert m.modalities["video"].dim == 5
    assert m.extra["feature_names"] == ["gaze_angle_x", "gaze_angle_y", "pose_Rx", "pose_Ry",
                                        "pose_Rz"]
    got = {r.recording: r.features for r in _records(out, "video")}
    for stem, v in x.items():
        np.testing.assert_allclose(got[stem], v[:, 35:].mean(0, keepdims=True), rtol=1e-6)


def _two_faces(d):
    """A clip with faces 0 and 1 interleaved in frames 1-4, face 1 alone in frame 5."""
    v = _of_values(9, 2)
    faces = [0, 1, 0, 1, 0, 1, 0, 1, 1]
    frames = [1, 1, 2, 2, 3, 3, 4, 4, 5]
    # face 0 is the bigger one in frames 1 and 2, face 1 in frames 3 to 5
    boxes = [(80, 90), (40, 40), (80, 90), (40, 40), (30, 30), (60, 70), (30, 30), (60, 70),
             (60, 70)]
    path = _openface_csv(d / f"{ANGRY}.csv", v, faces=faces, frames=frames, boxes=boxes)
    return path, v, np.asarray(faces)


def test_openface_two_faces_one_is_read_and_the_others_are_counted(tmp_path, capsys):
    d = tmp_path / "of"
    path, v, faces = _two_faces(d)
    _openface_csv(d / f"{HAPPY}.csv", _of_values(2, 3))  # no face_id column: one face
    out = tmp_path / "out"
    # default: the face in the most frames (face 1: 5 frames, face 0: 4)
    assert extract.main(_openface_argv(d, out, "--openface-pool", "mean")) == 0
    said = capsys.readouterr().out
    assert "4 OpenFace frames of other faces left out in 1 clips (--openface-face most)" in said
    got = {r.recording: r.features for r in _records(out, "video")}
    np.testing.assert_allclose(got[ANGRY], v[faces == 1].mean(0, keepdims=True), rtol=1e-6)
    m = manifest.load_manifest(out)
    assert m.extra["other_face_frames_per_clip"] == {ANGRY: 4}
    assert (m.extra["frames_read"], m.extra["other_face_frames"]) == (5 + 2, 4)
    # a face_id
    assert extract.main(_openface_argv(d, tmp_path / "f0", "--openface-pool", "mean",
                                       "--openface-face", "0")) == 0
    (f0,) = [r for r in _records(tmp_path / "f0", "video") if r.recording == ANGRY]
    np.testing.assert_allclose(f0.features, v[faces == 0].mean(0, keepdims=True), rtol=1e-6)
    assert _summary(tmp_path / "f0")["other_face_frames_per_clip"] == {ANGRY: 5}
    # per frame the largest landmark box: rows 0, 2 (face 0), then 5, 7, 8 (face 1)
    assert extract.main(_openface_argv(d, tmp_path / "big", "--openface-pool", "frames",
                                       "--openface-face", "largest")) == 0
    (big,) = [r for r in _records(tmp_path / "big", "video") if r.recording == ANGRY]
    np.testing.assert_allclose(big.features, v[[0, 2, 5, 7, 8]], rtol=1e-6)
    capsys.readouterr()
    # largest needs landmarks in a CSV of several faces
    _openface_csv(d / f"{ANGRY}.csv", v, faces=list(faces), frames=[1, 1, 2, 2, 3, 3, 4, 4, 5])
    assert extract.main(_openface_argv(d, tmp_path / "no", "--openface-face", "largest")) == 2
    _one_error_line(capsys, d / f"{ANGRY}.csv", "--openface-face largest needs the 2D landmark "
                    "columns x_0..x_67, y_0..y_67 and this CSV has no landmark columns")
    assert extract.main(_openface_argv(d, tmp_path / "no", "--openface-face", "big")) == 2
    _one_error_line(capsys, "--openface-face big: choose most, largest or a face_id")


def test_openface_face_ties_go_to_the_higher_confidence_then_the_lower_id(tmp_path):
    v = _of_values(4, 4)
    frames, faces = [1, 1, 2, 2], [3, 2, 3, 2]
    path = _openface_csv(tmp_path / "c.csv", v, faces=faces, frames=frames,
                         conf=[0.9, 0.95, 0.9, 0.95])
    clip = corpora.read_openface_csv(path, face="most")
    np.testing.assert_array_equal(clip.frames, v[[1, 3]])  # face 2: mean confidence .95
    assert (clip.other_faces, clip.face_ids) == (2, (2, 3))
    path = _openface_csv(tmp_path / "c.csv", v, faces=faces, frames=frames)
    np.testing.assert_array_equal(corpora.read_openface_csv(path).frames, v[[1, 3]])  # lower id
    gone = corpora.read_openface_csv(path, face=7)
    assert (gone.read, gone.other_faces) == (0, 4)
    d = tmp_path / "of"
    _openface_csv(d / f"{ANGRY}.csv", v, faces=faces, frames=frames)
    with pytest.raises(corpora.CorpusError, match=r"no usable OpenFace clip \(1 skipped, e.g. "
                                                  r"no frame of face_id 7 \(face ids in the "
                                                  r"file: 2, 3; --openface-face\)\)"):
        corpora.openface_items(str(d), face=7)


def test_openface_frames_need_one_frame_rate(tmp_path, capsys):
    d = tmp_path / "of"
    a = _openface_csv(d / f"{ANGRY}.csv", _of_values(12, 5))  # 30 frames/s, ms timestamps
    b = _openface_csv(d / f"{HAPPY}.csv", _of_values(10, 6), times=np.arange(10) * 0.04)
    out = tmp_path / "out"
    assert extract.main(_openface_argv(d, out)) == 2
    _one_error_line(capsys, f"{b} has 25 frames/s (0.04 s step) and {a} 30 frames/s",
                    "--openface-pool mean or functionals")
    assert not (out / "manifest.json").exists()
    # clip-level pooling has no frame rate to agree on
    assert extract.main(_openface_argv(d, out, "--openface-pool", "mean")) == 0
    # the same rate (frames 4 and 5 of the second clip dropped in between): the measured step
    _openface_csv(d / f"{HAPPY}.csv", _of_values(10, 6),
                  frames=[1, 2, 3, 6, 7, 8, 9, 10, 11, 12])
    assert extract.main(_openface_argv(d, tmp_path / "fr")) == 0
    m = manifest.load_manifest(tmp_path / "fr")
    # both clips span 0.367 s (ms timestamps) in 11 steps: 1/30 s within the rounding, not
    # the raw median difference 0.033
    assert m.frame_step_s == pytest.approx(0.367 / 11, rel=1e-9)
    assert m.frame_step_s == pytest.approx(1 / 30, rel=2e-3)
    assert {r.recording: r.features.shape for r in _records(tmp_path / "fr", "video")} == {
        ANGRY: (12, 40), HAPPY: (10, 40)}


# -- label maps ------------------------------------------------------------------------------


def test_a_label_map_entry_with_two_equals_signs_is_refused(tmp_path, wavs, capsys):
    csv_path = _manifest(tmp_path / "m.csv", _two_rows(wavs))
    out = tmp_path / "out"
    assert extract.main(_audio_argv(csv_path, out, "--label-map", "happy=joy=glee")) == 2
    _one_error_line(capsys, "--label-map: label map entry 'happy=joy=glee' is not FROM=TO",
                    "one '=' per entry")
    lmap = tmp_path / "map.txt"
    lmap.write_text("sad=sadness\nhappy=joy=glee\n")
    with pytest.raises(corpora.CorpusError, match=r"map.txt:2: label map entry 'happy=joy=glee'"):
        corpora.parse_label_map(str(lmap))
    assert corpora.parse_label_map("happy=joy, sad=") == {"happy": "joy", "sad": ""}


# -- RAVDESS: one item per take and modality; --modalities ------------------------------------


def _ravdess_takes(root):
    """Take 01-05-01-01-01-01 as 01, 02 and 03 files; take 01-03-01-01-01-01 as its 01 file only."""
    a = root / "Actor_01"
    a.mkdir(parents=True)
    files = {"av": write_video(str(a / "01-01-05-01-01-01-01.mp4"), 0.5, fps=4, size=(64, 64)),
             "vo": write_video(str(a / "02-01-05-01-01-01-01.mp4"), 0.5, fps=4, audio=False,
                               size=(64, 64)),
             "only": write_video(str(a / "01-01-03-01-01-01-01.mp4"), 0.5, fps=4, size=(64, 64),
                                 seed=1)}
    files["ao"] = str(a / "03-01-05-01-01-01-01.wav")
    write_wav(files["ao"], tone(0.5, freq=260))
    return files


def test_a_ravdess_take_gives_one_item_per_modality(tmp_path, capsys):
    """01 + 02 + 03 files of one take used to give two audio and two video items, 0 duplicates."""
    root = tmp_path / "RAVDESS"
    f = _ravdess_takes(root)
    model = _face_model(tmp_path / "enc.keras", 0)
    out = tmp_path / "out"
    assert extract.main(["--corpus", "ravdess", "--ravdess-dir", str(root), "--out", str(out),
                         "--encoder", "keras", "--encoder-model", model, "--layer", "feat",
                         "--no-detect"]) == 0
    said = capsys.readouterr()
    assert said.out.startswith("6 inputs -> 2 audio items, 2 video items; 0 failed, 2 skipped "
                               "(2 duplicate)")
    assert "warning: 2 RAVDESS audio/video parts repeat a take already read" in said.err
    take = "take 01-05-01-01-01-01"
    assert [(f_["path"], f_["modality"], f_["kind"], f_["reason"]) for f_ in _failures(out)] == [
        (f["av"], "audio", "duplicate", f"{take}: its audio is read from {f['ao']} (a take's "
                                        "audio comes from its audio-only 03 file, else its "
                                        "audio-visual 01 file)"),
        (f["av"], "video", "duplicate", f"{take}: its video is read from {f['vo']} (a take's "
                                        "video comes from its video-only 02 file, else its "
                                        "audio-visual 01 file)")]
    s = _summary(out)
    assert (s["duplicates"], s["skipped_by_kind"]) == (2, {"duplicate": 2})
    audio = {r.recording: r for r in _records(out, "audio")}
    video = {r.recording: r for r in _records(out, "video")}
    assert sorted(audio) == ["01-01-03-01-01-01-01", "03-01-05-01-01-01-01"]
    assert sorted(video) == ["01-01-03-01-01-01-01", "02-01-05-01-01-01-01"]
    assert json.loads(audio["03-01-05-01-01-01-01"].meta)["take"] == json.loads(
        video["02-01-05-01-01-01-01"].meta)["take"] == "01-05-01-01-01-01"
    assert manifest.load_manifest(out).extra["duplicates"] == 2


def test_modalities_is_honoured_or_refused_for_every_corpus(tmp_path, wavs, capsys):
    """--modalities was ignored for ravdess, which then asked for face weights."""
    root = tmp_path / "RAVDESS"
    f = _ravdess_takes(root)
    out = tmp_path / "out"
    # no --vggface-weights: with audio only, no video job and no face encoder
    assert extract.main(["--corpus", "ravdess", "--ravdess-dir", str(root), "--out", str(out),
                         "--modalities", "audio"]) == 0
    assert capsys.readouterr().out.startswith(
        "4 inputs -> 2 audio items; 0 failed, 2 skipped (1 modality not selected, 1 duplicate)")
    m = manifest.load_manifest(out)
    assert list(m.modalities) == ["audio"] and m.modalities["audio"].counts == {"train": 2}
    assert sorted(r.recording for r in _records(out)) == ["01-01-03-01-01-01-01",
                                                          "03-01-05-01-01-01-01"]
    assert [(r["path"], r["kind"], r["reason"]) for r in _failures(out)][0] == (
        f["vo"], "modality_not_selected", "video file: modality not selected (--modalities audio)")
    # a manifest's video rows are listed, not extracted (no weights needed either)
    csv_path = _manifest(tmp_path / "m.csv", _two_rows(wavs) + [
        (f["vo"], "video", "happy", "train", "s3")])
    assert extract.main(_audio_argv(csv_path, tmp_path / "man", "--modalities", "audio")) == 0
    assert "3 inputs -> 2 audio items; 0 failed, 1 skipped (1 modality not selected)" in (
        capsys.readouterr().out)
    assert _failures(tmp_path / "man")[0]["reason"] == (
        f"{csv_path}:4: modality video not selected (--modalities audio)")
    # one-modality corpora refuse another; a value that is no modality is named
    d = tmp_path / "of"
    _openface_csv(d / f"{ANGRY}.csv", _of_values(2, 0))
    assert extract.main(_openface_argv(d, tmp_path / "o", "--modalities", "audio")) == 2
    _one_error_line(capsys, "--modalities audio: --corpus openface gives video items only")
    assert extract.main(_openface_argv(d, tmp_path / "o", "--modalities", "audio,video")) == 2
    _one_error_line(capsys, "--modalities audio,video: --corpus openface gives video items only")
    assert extract.main(_openface_argv(d, tmp_path / "o", "--modalities", "video")) == 0
    capsys.readouterr()
    assert extract.main(_audio_argv(csv_path, tmp_path / "x", "--modalities", "speech")) == 2
    _one_error_line(capsys, "--modalities speech: choose among audio,video")


# -- outputs are never inputs ----------------------------------------------------------------


def test_an_out_inside_a_recursively_searched_input_folder_is_refused(tmp_path, capsys):
    """An --out inside --openface-dir used to read its own failures.csv as a clip."""
    d = tmp_path / "of"
    _openface_csv(d / f"{ANGRY}.csv", _of_values(2, 0))
    for out in (d / "out", d):
        assert extract.main(_openface_argv(d, out)) == 2
        _one_error_line(capsys, f"--out {out} lies inside --openface-dir {d}, which is searched "
                                "recursively for inputs", "choose an --out outside it")
    assert sorted(os.listdir(d)) == [f"{ANGRY}.csv"]  # nothing written, not even a lock
    link = tmp_path / "link"
    link.symlink_to(d)  # the same folder under another name
    assert extract.main(_openface_argv(link, tmp_path / "of" / "x")) == 2
    _one_error_line(capsys, f"lies inside --openface-dir {link}")
    # the other readers that search folders
    rav = tmp_path / "RAVDESS"
    _ravdess_takes(rav)
    assert extract.main(["--corpus", "ravdess", "--ravdess-dir", str(rav), "--out",
                         str(rav / "Actor_01" / "tf")]) == 2
    _one_error_line(capsys, f"lies inside --ravdess-dir {rav}")
    faces = tmp_path / "faces"
    _png((faces / "happy").mkdir(parents=True) or faces / "happy" / "1.png", 1)
    assert extract.main(["--corpus", "images", "--images-dir", str(faces), "--out",
                         str(faces / "out")]) == 2
    _one_error_line(capsys, f"lies inside --images-dir {faces}")
    # with a labels CSV the image folder is only looked up in: no refusal (the next error is
    # the missing face encoder)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,emotion\nhappy/1.png,happy\n")
    assert extract.main(["--corpus", "images", "--images-dir", str(faces), "--labels-csv",
                         str(labels), "--out", str(faces / "out")]) == 2
    _one_error_line(capsys, "--encoder vggface needs --vggface-weights")
