"""Fault injection: training refuses bad settings, never marks a diverged run finished,
never destroys a finished run, and locks its folder."""

import errno
import glob
import hashlib
import json
import os
import shutil

import keras
import numpy as np
import pytest

from emobed_tf import configs
from emobed_tf.experiments import experiment
from emobed_tf.records.manifest import load_manifest
from emobed_tf import train
from emobed_tf.io import FolderLock
from emobed_tf.experiments.rundir import RunDir, RunError


def _args(data_dir, out, *extra):
    return ["--dataset", "custom", "--data-dir", data_dir, "--out", out, "--epochs", "2",
            "--batch-size", "8", "--encoder-units", "4", "--shared-units", "4", "--verbose", "0",
            *extra]


def _hashes(folder):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path) and not path.endswith(".lock") and "/logs/" not in path:
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def _exit_and_error(argv, capsys):
    with pytest.raises(SystemExit) as ex:
        train.main(argv)
    return ex.value.code, capsys.readouterr().err


@pytest.mark.parametrize("flag,value,says", [
    ("--epochs", "0", "integer >= 1"), ("--batch-size", "0", "integer >= 1"),
    ("--batch-size", "-4", "integer >= 1"), ("--aux-batch-size", "0", "integer >= 1"),
    ("--eval-batch-size", "0", "integer >= 1"), ("--encoder-units", "0", "integer >= 1"),
    ("--shared-layers", "0", "integer >= 1"), ("--alpha", "-0.5", "finite number >= 0"),
    ("--beta", "inf", "finite number >= 0"), ("--l2", "-1e-4", "finite number >= 0"),
    ("--learning-rate", "nan", "finite number > 0"), ("--learning-rate", "0", "finite number > 0"),
    ("--learning-rate", "-1", "finite number > 0"), ("--dropout", "1", "[0, 1)"),
    ("--temperature", "0", "finite number > 0"), ("--patience", "0", "integer >= 1"),
    ("--epochs", "two", "not a valid int"),
])
def test_bad_settings_are_argparse_errors(flag, value, says, capsys):
    code, err = _exit_and_error(["--dataset", "demo", "--out", "unused", f"{flag}={value}"],
                                capsys)
    assert code == 2
    assert flag in err and says in err and repr(value) in err
    assert "Traceback" not in err
    assert not os.path.exists("unused")


@pytest.mark.parametrize("content,says", [
    ('{"values": {"encoder_units": -3}}', "encoder_units must be an integer >= 1"),
    ('{"values": [1, 2]}', "'values' must be a JSON object"),
    ('[0.5, 0.3]', "must hold a JSON object"),
    ('{"beta": "high"}', "beta must be float"),
    ('{"encoder_units": 2.5}', "encoder_units must be int"),
    ('{"batch_size": true}', "batch_size must be int"),
    ('{"gamma": 1}', "unknown hyperparameters ['gamma']"),
    ('{"values": {"alpha": 0.5', "not valid JSON"),
])
def test_bad_hparams_files_name_the_file_and_value(cls_data, tmp_path, capsys, content, says):
    d, _, _ = cls_data
    hp = tmp_path / "best_hyperparameters.json"
    hp.write_text(content)
    out = str(tmp_path / "run")
    assert train.main(_args(d, out, "--hparams", str(hp))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(hp) in err and says in err
    assert err.count("\n") == 1 and not os.path.exists(os.path.join(out, "config.json"))


def test_configs_validate_when_built_from_code():
    with pytest.raises(configs.ConfigError, match="learning_rate must be a finite number > 0"):
        configs.default_config("demo", "x", learning_rate=float("nan"))
    with pytest.raises(configs.ConfigError, match="batch_size must be an integer >= 0, got -1"):
        configs.DataConfig(batch_size=-1)  # 0: auto (decided with the encoder type)
    with pytest.raises(configs.ConfigError, match="triplet_form must be one of paper, hinge, soft"):
        configs.LossConfig(triplet_form="cosine")
    with pytest.raises(configs.ConfigError, match="target must be one of audio, video"):
        configs.default_config("demo", "x", target="text")


class _PoisonWeights(keras.callbacks.Callback):
    """Sets every weight to NaN after the given batch: the next loss is NaN."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            for v in self.model.trainable_variables:
                v.assign(np.full(v.shape, np.nan, v.dtype))


def test_diverged_training_stops_exits_2_and_is_never_marked_finished(cls_data, tmp_path,
                                                                      capsys, monkeypatch):
    d, _, _ = cls_data
    out = str(tmp_path / "run")
    real_run, raised = experiment.run, []

    def poisoned(cfg, overwrite=False):
        try:
            return real_run(cfg, overwrite, callbacks=[_PoisonWeights(epoch=1, batch=0)])
        except Exception as err:
            raised.append(err)
            raise

    monkeypatch.setattr(experiment, "run", poisoned)
    assert train.main(_args(d, out, "--epochs", "3", "--patience", "9")) == 2
    assert [type(e) for e in raised] == [RunError]  # the library's error, the CLI's exit code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "training diverged" in err and "loss became nan at epoch 2, step 2" in err
    assert out in err
    run = RunDir(out)
    assert not run.finished and not os.path.exists(run.model_path)
    state = json.load(open(run.state_path))
    assert state["epoch"] == 1  # the last good epoch is what a resume starts from
    assert not glob.glob(os.path.join(out, "**", "*.tmp*"), recursive=True)


def test_overwrite_with_bad_data_keeps_the_finished_run(cls_run, tmp_path, capsys):
    out = cls_run.copy(tmp_path / "run")
    d = str(tmp_path / "data")
    shutil.copytree(cls_run.data_dir, d)  # its shard is broken below
    before = _hashes(out)
    assert "metrics.json" in before and "model.keras" in before
    manifest = load_manifest(d)
    shard = os.path.join(d, manifest.modalities["video"].shards["train"][0].path)
    raw = bytearray(open(shard, "rb").read())
    raw[40:60] = b"\xff" * 20  # same size, broken CRC: found only while training
    open(shard, "wb").write(bytes(raw))
    assert train.main(_args(d, out, "--epochs", "1", "--overwrite", "--cache", "none")) == 2
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and os.path.basename(shard) in err
    assert _hashes(out) == before  # nothing of the finished run changed


def test_overwrite_replaces_the_run_only_when_the_new_one_finished(cls_run, tmp_path):
    out = cls_run.copy(tmp_path / "run")  # a finished emobed run
    assert RunDir(out).metrics()["mode"] == "emobed"
    assert train.main(_args(cls_run.data_dir, out, "--epochs", "1", "--mode", "joint",
                        "--overwrite")) == 0
    m = RunDir(out).metrics()
    assert m["mode"] == "joint" and m["out"] == out and m["epochs_trained"] == 1
    assert RunDir(out).config().out == out and RunDir(out).config().mode == "joint"
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no staging folder left


def test_second_training_into_the_same_folder_is_refused(cls_data, tmp_path, capsys):
    d, _, _ = cls_data
    out = str(tmp_path / "run")
    with FolderLock(out, "a training run"):
        assert train.main(_args(d, out)) == 2
    err = capsys.readouterr().err
    assert f"{out}: in use by a training run (pid {os.getpid()}" in err
    assert not os.path.exists(os.path.join(out, "config.json"))


def test_full_disk_while_saving_is_one_line_and_keeps_what_was_saved(cls_data, tmp_path, capsys,
                                                                     monkeypatch):
    d, _, _ = cls_data
    out = str(tmp_path / "run")
    calls = {"n": 0}
    real_save = keras.Model.save
    x = np.random.default_rng(0).normal(size=(2, 3, 6)).astype(np.float32)
    probe = {"features": x, "mask": np.ones((2, 3), bool)}
    saved = []  # what epoch 1 saved: its weights and its predictions on the probe

    def save(self, path, *a, **k):
        calls["n"] += 1
        if calls["n"] < 3:
            saved.append(([np.array(w) for w in self.weights],
                          np.asarray(self.forward("audio", probe)["prediction"])))
        if calls["n"] == 3:  # epoch 1 saved best and last; epoch 2 best fails half-way
            open(path, "wb").write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, path, *a, **k)

    monkeypatch.setattr(keras.Model, "save", save)
    assert train.main(_args(d, out, "--epochs", "3", "--patience", "9", "--learning-rate",
                        "0.05")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "the disk is full" in err and "MiB free" in err
    assert os.path.join(out, "checkpoints") in err and "Traceback" not in err
    assert not glob.glob(os.path.join(out, "**", "*.tmp*"), recursive=True)
    assert json.load(open(RunDir(out).state_path))["epoch"] == 1
    # the last checkpoint kept is epoch 1's model: its weights and its predictions
    back = keras.models.load_model(RunDir(out).checkpoint("last"))
    weights, pred = saved[-1]
    assert len(back.weights) == len(weights)
    for got, want in zip(back.weights, weights):
        np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_allclose(np.asarray(back.forward("audio", probe)["prediction"]), pred,
                               rtol=1e-6, atol=1e-6)


def test_missing_data_hint_is_a_command_extract_accepts(tmp_path, capsys, monkeypatch):
    import shlex

    from tfrecords_tools import extract

    monkeypatch.chdir(tmp_path)
    for dataset in ("omg", "recola"):
        assert train.main(["--dataset", dataset, "--out", "r"]) == 2
        err = capsys.readouterr().err
        hint = err.split("create it with: ")[1].strip()
        argv = shlex.split(hint)[3:]  # after "python -m tfrecords_tools.extract"
        args = extract.parse_args(argv)
        assert args.corpus == dataset.replace("recola", "avec2016")
        source, _, video = extract.options_from_args(args)
        source.check()  # raises when a flag the corpus needs is missing
        if dataset == "omg":
            video.check()  # the video encoder's weights flag is there too


class _Started(Exception):
    pass


class _StopBeforeTheFirstStep(keras.callbacks.Callback):
    """Records the model's initial weights, then stops the run before anything is traced."""

    def __init__(self, into):
        super().__init__()
        self.into = into

    def on_train_begin(self, logs=None):
        self.into["weights"] = [np.array(v) for v in self.model.weights]
        raise _Started


def test_seed_seeds_the_model_and_the_data_order(cls_data, tmp_path, monkeypatch):
    """``--seed`` fixes the initial weights (and dropout seed states) and the batch order:
    the same seed twice gives the same start, another seed another one."""
    d, _, _ = cls_data
    real_run, real_stream = experiment.run, experiment.memory_stream
    seen = {}

    def stream(cfg, splits, start_epoch):  # the data is held in memory (the fast path)
        seen["train"], steps = real_stream(cfg, splits, start_epoch)
        return seen["train"], steps

    monkeypatch.setattr(experiment, "memory_stream", stream)
    monkeypatch.setattr(experiment, "run", lambda cfg, overwrite=False: real_run(
        cfg, overwrite, callbacks=[_StopBeforeTheFirstStep(seen)]))
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        seen.clear()
        with pytest.raises(_Started):
            train.main(_args(d, str(tmp_path / name), "--seed", seed))
        first = next(iter(seen["train"]))
        runs[name] = {"weights": seen["weights"],
                      "batch": {m: first[m]["features"].numpy() for m in ("audio", "video")}}
    assert len(runs["a"]["weights"]) > 10
    for x, y in zip(runs["a"]["weights"], runs["b"]["weights"]):
        np.testing.assert_array_equal(x, y)
    assert any(x.shape != y.shape or not np.array_equal(x, y)
               for x, y in zip(runs["a"]["weights"], runs["c"]["weights"]))
    for m in ("audio", "video"):
        np.testing.assert_array_equal(runs["a"]["batch"][m], runs["b"]["batch"][m])
        assert runs["a"]["batch"][m].shape != runs["c"]["batch"][m].shape or not np.array_equal(
            runs["a"]["batch"][m], runs["c"]["batch"][m])
