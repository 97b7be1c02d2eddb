import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from emobed_tf import cli
from emobed_tf.experiments import experiment
from emobed_tf import train
from emobed_tf.experiments.rundir import RunError
from emobed_tf.records.schema import DataError
from tests.conftest import numpy_ccc, saved_predictions, sklearn_scores, write_classification

FILES = ("config.json", "metrics.json", "history.json", "model.keras",
         "checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/state.json",
         "manifests/audio.json")


def _args(data_dir, out, *extra):
    return ["--dataset", "custom", "--data-dir", data_dir, "--out", out, "--epochs", "3",
            "--batch-size", "8", "--encoder-units", "8", "--shared-units", "8", "--verbose", "0",
            *extra]


def test_custom_classification_run_writes_everything(cls_run):
    """The shared run: ``--mode emobed --alpha 0.4 --beta 0.2``, 3 epochs, batch 8, 8 units."""
    out = cls_run.path
    for f in FILES:
        assert os.path.isfile(os.path.join(out, f)), f
    assert os.path.isdir(os.path.join(out, "logs"))
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert (m["target"], m["mode"], m["alpha"], m["beta"]) == ("audio", "emobed", 0.4, 0.2)
    assert m["epochs_trained"] == 3
    for split in ("dev", "test"):
        assert set(m[split]) == {"f1_macro", "f1_micro", "uar", "accuracy", "n"}
        assert m[split]["n"] == 12
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["loss"]["alpha"] == 0.4 and cfg["model"]["encoder_units"] == 8
    # the reported scores are what the saved model gives, by sklearn
    for split in ("dev", "test"):
        want = sklearn_scores(saved_predictions(out, split))
        assert m[split]["f1_macro"] == pytest.approx(want["f1_macro"])
        assert m[split]["accuracy"] == pytest.approx(want["accuracy"])
    # the model file is a plain Keras file
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    assert model.task == "classification"
    # the summary table: the metrics of the run, as printed
    assert f"{m['dev']['f1_macro']:>9.4f}{m['test']['f1_macro']:>9.4f}" in cls_run.stdout
    assert "f1_macro" in cls_run.stdout


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_and_finished_run_is_kept(cls_data, tmp_path):
    d, _, _ = cls_data
    out = str(tmp_path / "run")
    args = train.parse_args(_args(d, out, "--patience", "99"))
    cfg = cli.config_from_args(args, out, "joint")
    with pytest.raises(KeyboardInterrupt):
        experiment.run(cfg, callbacks=[_Interrupt(2)])
    state = json.load(open(os.path.join(out, "checkpoints", "state.json")))
    assert state["epoch"] == 2 and not os.path.exists(os.path.join(out, "metrics.json"))
    result = experiment.run(cfg)
    hist = json.load(open(os.path.join(out, "history.json")))
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert result["epochs_trained"] == 3
    best = max(hist, key=lambda h: h["val_f1_macro"])
    assert result["best_epoch"] == best["epoch"]
    before = open(os.path.join(out, "metrics.json")).read()
    with pytest.raises(RunError, match="already finished"):
        experiment.run(cfg)
    assert open(os.path.join(out, "metrics.json")).read() == before
    other = cli.config_from_args(args, out, "emobed")
    os.remove(os.path.join(out, "metrics.json"))
    with pytest.raises(RunError, match="holds an unfinished run with other settings"):
        experiment.run(other)
    # overwrite=True replaces it: tests/faults/test_training.py (same code path, finished run)


def test_regression_run_reports_ccc_per_dimension(reg_run):
    """The shared regression run: emobed, ``--target video``, 2 epochs."""
    m = json.load(open(os.path.join(reg_run.path, "metrics.json")))
    assert m["target"] == "video" and m["task"] == "regression"
    assert {"ccc_arousal", "ccc_valence", "ccc_mean"} <= set(m["dev"])
    # each CCC is the pooled one of the saved model's test predictions, from its definition
    p = saved_predictions(reg_run.path, "test")
    gold, pred = np.concatenate(p.gold), np.concatenate(p.pred)
    assert m["test"]["n"] == len(gold)
    for k, name in enumerate(("arousal", "valence")):
        assert m["test"][f"ccc_{name}"] == pytest.approx(numpy_ccc(gold[:, k], pred[:, k]),
                                                         rel=1e-5, abs=1e-6)
    assert m["test"]["ccc_mean"] == pytest.approx(
        (m["test"]["ccc_arousal"] + m["test"]["ccc_valence"]) / 2)


def test_missing_data_explains_how_to_make_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train.main(["--dataset", "omg", "--out", "r"]) == 2
    err = capsys.readouterr().err
    assert "data/omg" in err and "tfrecords_tools.extract --corpus omg" in err
    assert train.main(["--dataset", "custom", "--out", "r"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_emobed_without_auxiliary_modality_is_explained(tmp_path, capsys, classic_run):
    write_classification(tmp_path / "a", dims={"audio": 6})
    assert train.main(_args(str(tmp_path / "a"), str(tmp_path / "r"), "--mode", "emobed")) == 2
    assert "no video features" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r" / "config.json")
    # classic mode trains on the same audio-only data: the shared classic run did
    cfg = json.load(open(os.path.join(classic_run.path, "config.json")))
    assert cfg["mode"] == "classic" and cfg["data_dir"] == classic_run.data_dir
    assert json.load(open(os.path.join(classic_run.data_dir, "manifest.json")))[
        "modalities"].keys() == {"audio"}
    assert json.load(open(os.path.join(classic_run.path, "metrics.json")))["dev"]["n"] == 12


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_corrupt_shard_during_training_is_named(cls_data, tmp_path, cache):
    d, manifest, _ = cls_data
    shard = manifest.modalities["video"].shards["train"][1].path
    path = os.path.join(d, shard)
    raw = bytearray(open(path, "rb").read())
    raw[40:60] = b"\xff" * 20  # same size, broken CRC
    open(path, "wb").write(bytes(raw))
    cfg = cli.config_from_args(train.parse_args(_args(d, str(tmp_path / "r"), "--cache", cache)),
                             str(tmp_path / "r"), "emobed")
    assert experiment.pipeline_options(cfg, manifest).cache == cache
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        experiment.run(cfg)
    assert shard in str(err.value)


def test_demo_dataset_is_generated_on_first_use(tmp_path, monkeypatch):
    """``--dataset demo`` resolves to the simulated corpus, generated once into the cache
    (a small one here: the full-size run is the slow test below)."""
    import functools

    from emobed_tf.experiments import demo

    monkeypatch.setenv("EMOBED_TF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(demo._WRITERS, "demo", functools.partial(
        demo.write_demo_omg, sizes={"audio": (4, 3), "video": (6, 2)}))
    cfg = cli.config_from_args(train.parse_args(["--dataset", "demo", "--out", "x"]), "x", "emobed")
    assert (cfg.alpha, cfg.beta) == (0.5, 0.3)
    sources = experiment.resolve_sources(cfg)
    folder = sources["audio"].data_dir
    assert os.path.dirname(folder) == str(tmp_path / "cache") and demo.fingerprint() in folder
    assert sources["video"].data_dir == folder
    assert sources["audio"].manifest.extra["simulated"] is True
    assert sum(sources["audio"].manifest.modalities["audio"].counts.values()) == 12
    assert experiment.resolve_sources(cfg)["audio"].data_dir == folder  # reused, not regenerated


@pytest.mark.slow
def test_demo_cli_end_to_end(tmp_path):
    """``python -m emobed_tf.train --dataset demo`` in a process of its own (the in-process
    tests above cover the same code through ``main``)."""
    out = str(tmp_path / "x")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run([sys.executable, "-m", "emobed_tf.train", "--dataset", "demo", "--mode",
                          "emobed", "--out", out, "--epochs", "2", "--verbose", "0"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["mode"] == "emobed" and m["alpha"] == 0.5 and m["beta"] == 0.3
    assert m["dev"]["f1_macro"] == pytest.approx(sklearn_scores(
        saved_predictions(out, "dev"))["f1_macro"])
    assert "accuracy" in m["test"]
    assert f"{m['dev']['f1_macro']:>9.4f}" in res.stdout


def test_a_finished_run_is_reused_only_with_the_same_configuration(classic_run, tmp_path):
    """run_or_reuse: the same settings reuse the run; another setting (e.g. --normalize) is an
    error naming it, not silently the old run; a classic run ignores the auxiliary corpus."""
    import dataclasses

    from emobed_tf.experiments.rundir import RunDir

    path = classic_run.copy(tmp_path / "run")
    cfg = dataclasses.replace(RunDir(path).config(), out=path)
    metrics, reused = experiment.run_or_reuse(dataclasses.replace(cfg, verbose=2))
    assert reused and metrics == json.load(open(os.path.join(path, "metrics.json")))
    # classic never reads the auxiliary: naming another video corpus reuses it
    assert experiment.run_or_reuse(dataclasses.replace(cfg, video_dir=str(tmp_path / "other")))[1]
    other = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, normalize="speaker"))
    with pytest.raises(RunError, match=r"holds a finished run with other settings "
                                       r"\(data.normalize 'corpus' -> 'speaker'\)"):
        experiment.run_or_reuse(other)
    with pytest.raises(RunError, match=r"\(learning_rate [^,]* -> [^,]*\);"):
        experiment.run_or_reuse(dataclasses.replace(cfg, learning_rate=0.5))
    assert json.load(open(os.path.join(path, "metrics.json"))) == metrics  # nothing rewritten
