"""Ctrl-C, ``--backend`` and start-up checks of the command-line tools.

* Ctrl-C (KeyboardInterrupt) ends ``train``, ``crossval``, ``tuning.search``
  and ``tfrecords_tools.extract`` with ONE ``interrupted: ...`` line saying
  what finished, and exit code 130; a rerun of the same command resumes
  (what finished is kept). The interruption is injected in-process at a
  known point (monkeypatch).
* ``--backend jax`` works for crossval (its runs train under JAX), and no CLI
  module imports Keras at import time (``--backend`` must come first).
* ``tuning.search`` on data without a dev split says so in one ``error:``
  line before any tuner starts.
* ``tfrecords_tools.extract`` refuses an input folder inside ``--out``
  before anything is written.
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from emobed_tf import cli
from emobed_tf import crossval
from emobed_tf.experiments import experiment
from emobed_tf import train
from emobed_tf.experiments.rundir import RunDir
from tests.conftest import child_env, search_args, write_classification
from tests.tools.media_fixtures import tone, write_wav
from tfrecords_tools import extract

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ("--epochs", "1", "--batch-size", "8", "--encoder-units", "8", "--shared-units", "8",
         "--verbose", "0")


def _one_line(text, start):
    """The single non-empty line of ``text``, which starts with ``start``; no traceback."""
    lines = [x for x in text.splitlines() if x.strip() and "%|" not in x]  # not tqdm bars
    assert len(lines) == 1 and lines[0].startswith(start), text
    assert "Traceback" not in text
    return lines[0]


def _hashes(folder):
    out = {}
    for d, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(d, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """4 speakers (s0..s3), train/dev/test splits."""
    d = tmp_path_factory.mktemp("cli-signals") / "d"
    write_classification(d, n=(12, 6, 6))
    return str(d)


# -- the helper ------------------------------------------------------------------------------


def test_run_interruptible_prints_one_line_and_returns_130(capsys):
    def work():
        raise KeyboardInterrupt

    def broken():
        raise OSError("disk gone")

    assert cli.run_interruptible(work, lambda: "3 of 4 runs finished") == cli.INTERRUPTED == 130
    assert capsys.readouterr().err == "interrupted: 3 of 4 runs finished\n"
    # a failing progress report still gives one line, and the exit code
    assert cli.run_interruptible(work, broken) == 130
    assert _one_line(capsys.readouterr().err, "interrupted: ") == (
        "interrupted: rerun the same command to resume (progress unknown: disk gone)")
    assert cli.run_interruptible(lambda: 0, broken) == 0  # no interruption: work's code


# -- crossval --------------------------------------------------------------------------------


def test_ctrl_c_during_crossval_says_how_many_runs_finished_and_a_rerun_resumes(
        corpus, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "cv")
    argv = ["--dataset", "custom", "--data-dir", corpus, "--folds", "speaker:2",
            "--n-dev-speakers", "1", "--seeds", "0", "--modes", "classic", *SMALL,
            "--out", out]
    real, calls = experiment.run_or_reuse, []

    def second_run_interrupted(cfg, overwrite=False):
        calls.append(cfg.out)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second run trains
        return real(cfg, overwrite)

    with monkeypatch.context() as mp:
        mp.setattr(experiment, "run_or_reuse", second_run_interrupted)
        assert crossval.main(argv) == 130
    said = capsys.readouterr()
    assert _one_line(said.err, "interrupted: ") == (
        f"interrupted: 1 of 2 runs finished ({os.path.join(out, 'runs')}); rerun the same "
        "command to resume")
    first = os.path.join(out, "runs", "classic", "fold0-seed0")
    assert calls[0] == first and RunDir(first).finished
    assert not RunDir(calls[1]).finished and not os.path.exists(os.path.join(out, "crossval.json"))
    kept = _hashes(first)
    # the rerun reuses the finished run (unchanged) and trains the other
    assert crossval.main(argv) == 0
    said = capsys.readouterr()
    assert "[1/2] classic fold 0 seed 0" in said.out and "(reused)" in said.out
    assert "[2/2] classic fold 1 seed 0" in said.out
    assert _hashes(first) == kept and RunDir(calls[1]).finished
    assert json.load(open(os.path.join(out, "crossval.json")))["systems"]["classic"]["n_runs"] == 2


# -- train -----------------------------------------------------------------------------------


def test_ctrl_c_during_train_names_the_last_finished_epoch_and_a_rerun_resumes_after_it(
        corpus, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    argv = ["--dataset", "custom", "--data-dir", corpus, "--mode", "classic", *SMALL,
            "--epochs", "3", "--patience", "9", "--out", out]
    real = experiment.make_run_checkpoint

    def interrupted_after_epoch_2(*a, **k):
        ckpt = real(*a, **k)
        end = ckpt.on_epoch_end

        def on_epoch_end(epoch, logs=None):
            end(epoch, logs)  # the epoch's checkpoint is written first
            if epoch + 1 == 2:
                raise KeyboardInterrupt

        ckpt.on_epoch_end = on_epoch_end
        return ckpt

    with monkeypatch.context() as mp:
        mp.setattr(experiment, "make_run_checkpoint", interrupted_after_epoch_2)
        assert train.main(argv) == 130
    assert _one_line(capsys.readouterr().err, "interrupted: ") == (
        f"interrupted: epoch 2 is the last finished one (checkpoint in {out}); rerun the same "
        "command to resume after it")
    assert RunDir(out).resume_state()["epoch"] == 2 and not RunDir(out).finished
    assert train.main(argv) == 0
    assert f"Resuming {out} after epoch 2" in capsys.readouterr().out
    hist = json.load(open(RunDir(out).history_path))
    assert [h["epoch"] for h in hist] == [1, 2, 3] and RunDir(out).finished


def test_ctrl_c_before_the_first_epoch_says_nothing_is_kept(corpus, tmp_path, capsys,
                                                           monkeypatch):
    out = str(tmp_path / "run")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "make_datasets", interrupted)  # streamed data
    monkeypatch.setattr(experiment, "load_memory_splits", interrupted)  # data held in memory
    argv = ["--dataset", "custom", "--data-dir", corpus, "--mode", "classic", *SMALL,
            "--out", out]
    assert train.main(argv) == 130
    assert _one_line(capsys.readouterr().err, "interrupted: ") == (
        f"interrupted: no epoch had finished in {out}, so nothing is kept; rerun the same "
        "command to start again")


# -- tuning.search ---------------------------------------------------------------------------


def test_ctrl_c_during_a_search_keeps_the_finished_trials_and_a_rerun_continues(
        search_data, tmp_path, capsys, monkeypatch):
    from tuning import hypermodel
    from tuning import search
    from tuning.folder import completed_trials

    directory = str(tmp_path / "search")
    argv = search_args(search_data, directory, trials=2)
    real, fits = hypermodel.EmoBedHyperModel.fit, []

    def second_trial_interrupted(self, *a, **k):
        fits.append(1)
        if len(fits) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    with monkeypatch.context() as mp:
        mp.setattr(hypermodel.EmoBedHyperModel, "fit", second_trial_interrupted)
        assert search.main(argv) == 130
    assert _one_line(capsys.readouterr().err, "interrupted: ") == (
        f"interrupted: 1 finished trial is kept in {directory}; rerun the same command to "
        "continue the search")
    done = [t for t in completed_trials(directory) if t["status"] == "COMPLETED"]
    assert len(done) == 1 and not os.path.exists(os.path.join(directory, "summary.md"))
    assert search.main(argv) == 0
    capsys.readouterr()
    after = {t["trial_id"]: t for t in completed_trials(directory)}
    assert [t["status"] for t in after.values()] == ["COMPLETED", "COMPLETED"]
    assert after[done[0]["trial_id"]]["score"] == done[0]["score"]  # kept, not retrained
    assert os.path.isfile(os.path.join(directory, "summary.md"))


def test_a_search_without_a_dev_split_is_one_error_line_before_any_trial(tmp_path):
    """It used to print 47 lines: start-up logs, a KerasTuner traceback, 'no completed trial'."""
    d = tmp_path / "nodev"
    write_classification(d, n=(12, 0, 6))
    directory = tmp_path / "search"
    env = {k: v for k, v in child_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as users run it
    res = subprocess.run([sys.executable, "-m", "tuning.search",
                          *search_args(d, directory)], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    line = _one_line(res.stderr, "error: ")
    assert line == (f"error: {d / 'manifest.json'}: data set 'toy' has no audio shards for "
                    "split 'dev' (splits: ['test', 'train'])")
    assert res.stdout == "" and not directory.exists()  # nothing written, no tuner built


# -- tfrecords_tools.extract -----------------------------------------------------------------


def _wav_manifest(tmp_path):
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    write_wav(str(wavs / "a.wav"), tone(0.6, freq=180))
    write_wav(str(wavs / "b.wav"), tone(0.5, freq=300, seed=1))
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,modality,label,split,speaker\n"
                        f"{wavs / 'a.wav'},audio,happy,train,s1\n"
                        f"{wavs / 'b.wav'},audio,sad,train,s2\n")
    return str(csv_path)


def test_ctrl_c_during_extraction_counts_the_cached_items_and_a_rerun_resumes(
        tmp_path, capsys, monkeypatch):
    csv_path = _wav_manifest(tmp_path)
    out = tmp_path / "out"
    argv = ["--corpus", "manifest", "--csv", csv_path, "--labels", "happy,sad", "--out",
            str(out), "--workers", "1"]
    with monkeypatch.context() as mp:  # both items extracted, then Ctrl-C before writing
        mp.setattr(extract, "write_dataset",
                   lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        assert extract.main(argv) == 130
    assert _one_line(capsys.readouterr().err, "interrupted: ") == (
        f"interrupted: 2 extracted items are kept in the work cache {out / '.work'}; rerun "
        "the same command to resume")
    cached = {k: v for k, v in _hashes(out / ".work").items() if k.endswith(".npy")}
    assert len(cached) == 2 and not (out / "manifest.json").exists()
    assert extract.main(argv) == 0
    summary = json.load(open(out / "extraction_summary.json"))
    assert summary["audio_already_done"] == 2 and summary["written"] == {"audio": 2}


def test_an_input_folder_inside_out_is_refused_before_anything_is_written(tmp_path, capsys):
    """``--out data --ravdess-dir data/audio``: moving the data set into place (it replaces
    OUT/audio) would delete the input."""
    data = tmp_path / "data"
    audio = data / "audio"
    audio.mkdir(parents=True)
    write_wav(str(audio / "03-01-05-01-01-01-01.wav"), tone(0.5, freq=200))
    before = _hashes(data)
    assert extract.main(["--corpus", "ravdess", "--ravdess-dir", str(audio), "--out",
                         str(data), "--overwrite"]) == 2
    assert _one_line(capsys.readouterr().err, "error: ") == (
        f"error: --ravdess-dir {audio} lies inside --out {data}, whose contents the extraction "
        "replaces (audio/, video/, failures.csv when the finished data set is moved into "
        "place; .work/ with --overwrite): the input could be deleted; choose an --out that "
        "holds no input")
    assert _hashes(data) == before and sorted(os.listdir(data)) == ["audio"]  # not even a lock
    # an input file (a manifest CSV) inside --out, and --out being the input folder itself
    csv_path = data / "m.csv"
    csv_path.write_text("path,modality,label,split,speaker\n")
    assert extract.main(["--corpus", "manifest", "--csv", str(csv_path), "--out",
                         str(data)]) == 2
    assert f"--csv {csv_path} lies inside --out {data}" in _one_line(
        capsys.readouterr().err, "error: ")
    assert extract.main(["--corpus", "omg", "--csv-dir", str(audio), "--clips-dir",
                         str(tmp_path), "--out", str(audio)]) == 2
    assert f"--csv-dir {audio} lies inside --out {audio}" in _one_line(
        capsys.readouterr().err, "error: ")
    assert sorted(os.listdir(data)) == ["audio", "m.csv"] and os.listdir(audio) == [
        "03-01-05-01-01-01-01.wav"]
    # an --out beside the inputs is fine (the other direction of the check still holds)
    link = tmp_path / "link"
    link.symlink_to(data)  # the same folder under another name
    assert extract.main(["--corpus", "ravdess", "--ravdess-dir", str(audio), "--out",
                         str(link)]) == 2
    assert f"--ravdess-dir {audio} lies inside --out {link}" in _one_line(
        capsys.readouterr().err, "error: ")


# -- --backend -------------------------------------------------------------------------------


def test_no_cli_module_imports_keras_at_import_time():
    """``--backend`` is applied in ``main``; a CLI module importing Keras at the top would make
    it fail (the module is imported before main runs)."""
    mods = ["emobed_tf.train", "emobed_tf.compare", "emobed_tf.sweep", "emobed_tf.crossval",
            "tuning.search", "tfrecords_tools.extract"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods)
            + "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], env=child_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_crossval_backend_jax_trains_its_runs_under_jax(corpus, tmp_path):
    out = tmp_path / "cv"
    env = child_env(JAX_PLATFORMS="cpu")
    env.pop("KERAS_BACKEND", None)
    res = subprocess.run([sys.executable, "-m", "emobed_tf.crossval", "--dataset", "custom",
                          "--data-dir", corpus, "--folds", "speaker:2", "--n-dev-speakers", "1",
                          "--seeds", "0", "--modes", "classic", *SMALL, "--backend", "jax",
                          "--out", str(out)], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "[2/2] classic fold 1 seed 0" in res.stdout
    for fold in (0, 1):
        cfg = json.load(open(out / "runs" / "classic" / f"fold{fold}-seed0" / "config.json"))
        assert cfg["backend"] == "jax"
    assert json.load(open(out / "crossval.json"))["config"]["backend"] == "jax"
