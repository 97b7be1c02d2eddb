"""Faults of ``tuning.search``: refused before training, one line, nothing finished changed.

A search folder records what it searches (``search.json``); a rerun with
another search, unreadable KerasTuner files, a ``--out`` that is a file or a
folder locked by a running search end with exit code 2 and a line naming
the folder, file or value, before any tuner is built.
"""

import hashlib
import os
import shutil

import pytest

from emobed_tf import io
from tuning import search
from tuning.folder import completed_trials
from tuning.hypermodel import EmoBedHyperModel
from tests.conftest import search_args


def _args(d, directory, *extra, trials=1):
    return search_args(d, directory, *extra, trials=trials)


def _hashes(folder):
    """sha256 of every file, the lock file aside (a lock attempt rewrites its holder line)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if name != io.FolderLock.NAME:
                with open(path, "rb") as fh:
                    out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture
def data(search_data):
    """The shared search corpus (read-only)."""
    return search_data


@pytest.fixture
def finished(finished_search):
    """The shared finished one-trial search (audio target, emobed mode, seed 3); the tests
    that may change it (a refused rerun must not) check that it is unchanged."""
    return finished_search


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a tuner is built: refusals must come first."""
    def boom(*a, **k):
        raise AssertionError("a tuner was built")

    monkeypatch.setattr(search, "make_tuner", boom)


def _copy(directory, tmp_path):
    dest = str(tmp_path / "copy")
    shutil.copytree(directory, dest)
    return dest


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_the_folder_records_its_search(data, finished):
    rec = io.read_json(os.path.join(finished, "search.json"))
    assert rec["dataset"] == "custom" and rec["target"] == "audio" and rec["mode"] == "emobed"
    assert rec["data_dirs"] == {"audio": os.path.abspath(data), "video": os.path.abspath(data)}
    assert rec["objective"] == {"name": "val_f1_macro", "direction": "max"}
    assert rec["tuner"] == "random" and rec["seed"] == 3 and rec["max_trials"] == 1
    assert {"alpha", "beta", "encoder_units", "batch_size"} <= set(rec["search_space"])
    assert rec["search_space"]["alpha"]["max_value"] == 2.0
    assert rec["training"]["epochs"] == 1 and "out" not in rec["training"]


def test_same_search_resumes_without_training_again(data, finished, tmp_path, capsys):
    directory = _copy(finished, tmp_path)
    trials = {p: h for p, h in _hashes(directory).items() if p.endswith("trial.json")}
    assert search.main(_args(data, directory)) == 0  # one trial asked, one finished: nothing to do
    assert {p: h for p, h in _hashes(directory).items() if p.endswith("trial.json")} == trials
    assert len(completed_trials(directory)) == 1
    assert "KerasTuner search: 1 completed trials" in capsys.readouterr().out


@pytest.mark.parametrize("extra, field", [
    (["--target", "video"], "target 'audio' -> 'video'"),
    (["--mode", "classic"], "mode 'emobed' -> 'classic'"),
    (["--mode", "joint"], "search_space.beta {"),
    (["--tuner", "bayesian"], "tuner 'random' -> 'bayesian'"),
    (["--epochs", "2"], "training.epochs 1 -> 2"),
    (["--seed", "4"], "seed 3 -> 4"),
])
def test_another_search_in_the_folder_is_refused(data, finished, capsys, no_training, extra,
                                                 field):
    before = _hashes(finished)
    args = _args(data, finished)
    for flag, value in zip(extra[::2], extra[1::2]):  # replace or add the flag
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert search.main(args) == 2
    err = _one_error_line(capsys)
    assert f"{finished}: holds another search with other settings (" in err and field in err
    assert "--overwrite" in err and "another --out" in err
    assert _hashes(finished) == before


def test_other_data_is_another_search(data, finished, tmp_path, capsys, no_training):
    other = str(tmp_path / "other-data")
    shutil.copytree(data, other)
    before = _hashes(finished)
    assert search.main(_args(other, finished)) == 2
    err = _one_error_line(capsys)
    assert "data_dirs.audio" in err and "data_dirs.video" in err
    assert _hashes(finished) == before


def test_overwrite_starts_another_search(data, finished, tmp_path, monkeypatch):
    """``--overwrite`` with another search (video target, mixed precision, mirrored): the
    old trials go, and ``--precision`` and ``--strategy`` apply to every new trial."""
    import keras

    seen = []  # (dtype policy, strategy its variables live in) of each model a trial trains
    fit = EmoBedHyperModel.fit

    def spy(self, hp, model, *args, **kwargs):
        seen.append((model.dtype_policy.name, type(model.distribute_strategy).__name__))
        return fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(EmoBedHyperModel, "fit", spy)
    directory = _copy(finished, tmp_path)
    assert search.main(_args(data, directory, "--target", "video", "--overwrite", "--precision",
                        "mixed_bfloat16", "--strategy", "mirrored")) == 0
    rec = io.read_json(os.path.join(directory, "search.json"))
    assert rec["target"] == "video"
    assert len(completed_trials(directory)) == 1  # the audio trial is gone
    assert seen == [("mixed_bfloat16", "MirroredStrategy")]
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    assert rec["training"]["precision"] == "mixed_bfloat16"


@pytest.mark.parametrize("name", ["oracle.json", "trial.json", "search.json"])
def test_truncated_search_file_is_named(data, finished, tmp_path, capsys, no_training, name):
    directory = _copy(finished, tmp_path)
    if name == "trial.json":
        trial = min(t for t in os.listdir(directory) if t.startswith("trial_"))
        path = os.path.join(directory, trial, name)
    else:
        path = os.path.join(directory, name)
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text[: len(text) // 2])
    before = _hashes(directory)
    assert search.main(_args(data, directory)) == 2
    err = _one_error_line(capsys)
    assert path in err and "truncated" in err and "--overwrite" in err
    assert _hashes(directory) == before


def test_kerastuner_folder_without_a_record_is_refused(data, finished, tmp_path, capsys,
                                                       no_training):
    directory = _copy(finished, tmp_path)
    os.remove(os.path.join(directory, "search.json"))
    before = _hashes(directory)
    assert search.main(_args(data, directory)) == 2
    err = _one_error_line(capsys)
    assert directory in err and "without search.json" in err and "--overwrite" in err
    assert _hashes(directory) == before


def test_dir_that_is_a_file(data, tmp_path, capsys, no_training):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    assert search.main(_args(data, str(path))) == 2
    err = _one_error_line(capsys)
    assert str(path) in err and "is a file" in err
    assert path.read_text() == "mine"


def test_a_locked_folder_is_refused_naming_the_holder(data, finished, capsys, no_training):
    before = _hashes(finished)
    with io.FolderLock(finished, "tuning.search (chief) of another shell"):
        assert search.main(_args(data, finished)) == 2
    err = _one_error_line(capsys)
    assert finished in err and "in use by tuning.search (chief) of another shell" in err
    assert f"pid {os.getpid()}" in err
    assert _hashes(finished) == before


def test_multiworker_strategy_is_refused(data, tmp_path, capsys, no_training):
    directory = tmp_path / "s"
    assert search.main(_args(data, str(directory), "--strategy", "multiworker")) == 2
    err = _one_error_line(capsys)
    assert "--strategy multiworker" in err and "KERASTUNER_TUNER_ID" in err
    assert not directory.exists()


@pytest.mark.parametrize("value", ["0", "-2", "x"])
def test_max_trials_must_be_positive(data, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        search.main(_args(data, str(tmp_path / "s")) + ["--max-trials", value])
    assert exit_.value.code == 2 and repr(value) in capsys.readouterr().err
