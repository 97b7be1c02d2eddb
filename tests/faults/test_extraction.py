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

from emobed_tf import data as D
from emobed_tf import schema
from emobed_tf.io import FolderLock
from tests.tools.media_fixtures import tone, write_wav
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
    paths = D.shard_paths(D.Source.open(out), mod, split)
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
        with pytest.raises(KeyboardInterrupt):
            extract.main(_audio_argv(csv_path, out))  # utterance features cached, not written
    cached = _hashes(out / ".work")
    assert sum(n.endswith(".npy") for n in cached) == 2
    capsys.readouterr()

    windowed = ("--audio-mode", "windowed", "--window", "1.0")
    assert extract.main(_audio_argv(csv_path, out, *windowed)) == 2
    err = _one_error_line(capsys, out / ".work", "--audio-mode 'utterance' -> 'windowed'",
                          "--window (unset) -> 1.0", "--overwrite", "--out")
    assert "audio items were cached with other options" in err
    assert not (out / "manifest.json").exists() and _hashes(out / ".work") == cached

    # --overwrite discards the utterance items: the data set holds windowed items only
    assert extract.main(_audio_argv(csv_path, out, *windowed, "--overwrite")) == 0
    recs = _records(out)
    assert len(recs) == 2 and all(r.features.shape[0] > 1 for r in recs)
    m = schema.load_manifest(out)
    assert m.modalities["audio"].feature_set == "eGeMAPSv02 functionals (windowed)"
    assert m.extra["extraction_options"]["audio"]["audio_mode"] == "windowed"
    assert m.extra["audio_already_done"] == 0 and m.extra["cache_discarded"] == ["audio"]


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
        with pytest.raises(KeyboardInterrupt):
            extract.main(argv)
    cached = _hashes(out / ".work")
    capsys.readouterr()
    _face_model(model, 1)  # same path, other weights: other descriptors
    assert extract.main(argv) == 2
    _one_error_line(capsys, "video items were cached with other options",
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
    assert schema.load_manifest(out).extra["truncated"] == 1
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
        with pytest.raises(KeyboardInterrupt):
            extract.main(_audio_argv(csv_path, out))
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
    opts = ("--audio-mode", "windowed", "--window", "1.0", "--hop", "0.02")
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
