import json
import os
import subprocess
import sys

import keras
import pytest
from sklearn import metrics as skm

from emobed_tf import cli
from emobed_tf import experiment as E
from emobed_tf import train as T
from emobed_tf.rundir import RunError
from emobed_tf.schema import DataError
from tests.conftest import write_classification

FILES = ("config.json", "metrics.json", "history.json", "model.keras",
         "checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/state.json",
         "manifests/audio.json")


def _args(data_dir, out, *extra):
    return ["--dataset", "custom", "--data-dir", data_dir, "--out", out, "--epochs", "3",
            "--batch-size", "8", "--encoder-units", "8", "--shared-units", "8", "--verbose", "0",
            *extra]


def test_custom_classification_run_writes_everything(cls_data, tmp_path, capsys):
    d, manifest, _ = cls_data
    out = str(tmp_path / "run")
    assert T.main(_args(d, out, "--mode", "emobed", "--alpha", "0.4", "--beta", "0.2")) == 0
    for f in FILES:
        assert os.path.isfile(os.path.join(out, f)), f
    assert os.path.isdir(os.path.join(out, "logs"))
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert (m["target"], m["mode"], m["alpha"], m["beta"]) == ("audio", "emobed", 0.4, 0.2)
    for split in ("dev", "test"):
        assert set(m[split]) == {"f1_macro", "f1_micro", "uar", "accuracy", "n"}
        assert m[split]["n"] == 12
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["loss"]["alpha"] == 0.4 and cfg["model"]["encoder_units"] == 8
    # the reported dev score is what the saved model gives on dev, by sklearn
    from emobed_tf import data as D
    from emobed_tf.predict import predict_split

    model = keras.models.load_model(os.path.join(out, "model.keras"))
    p = predict_split(model, D.Source.open(d), "audio", "dev", 5)
    assert m["dev"]["f1_macro"] == pytest.approx(
        skm.f1_score(p.gold, p.pred.argmax(1), average="macro",
                     labels=sorted(set(p.gold) | set(p.pred.argmax(1)))))
    assert "f1_macro" in capsys.readouterr().out  # the summary table


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
    args = T.parse_args(_args(d, out, "--patience", "99"))
    cfg = cli.config_from_args(args, out, "joint")
    with pytest.raises(KeyboardInterrupt):
        E.run(cfg, callbacks=[_Interrupt(2)])
    state = json.load(open(os.path.join(out, "checkpoints", "state.json")))
    assert state["epoch"] == 2 and not os.path.exists(os.path.join(out, "metrics.json"))
    result = E.run(cfg)
    hist = json.load(open(os.path.join(out, "history.json")))
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert result["epochs_trained"] == 3
    best = max(hist, key=lambda h: h["val_f1_macro"])
    assert result["best_epoch"] == best["epoch"]
    before = open(os.path.join(out, "metrics.json")).read()
    with pytest.raises(RunError, match="already finished"):
        E.run(cfg)
    assert open(os.path.join(out, "metrics.json")).read() == before
    other = cli.config_from_args(args, out, "emobed")
    os.remove(os.path.join(out, "metrics.json"))
    with pytest.raises(RunError, match="different configuration"):
        E.run(other)
    E.run(other, overwrite=True)
    assert json.load(open(os.path.join(out, "metrics.json")))["mode"] == "emobed"


def test_regression_run_reports_ccc_per_dimension(reg_data, tmp_path):
    d, _, _ = reg_data
    out = str(tmp_path / "reg")
    assert T.main(["--dataset", "custom", "--data-dir", d, "--out", out, "--epochs", "2",
                   "--encoder-units", "8", "--shared-units", "8", "--encoder-layers", "1",
                   "--shared-layers", "1", "--verbose", "0", "--target", "video"]) == 0
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["target"] == "video"
    assert {"ccc_arousal", "ccc_valence"} <= set(m["dev"])
    assert -1 <= m["test"]["ccc_valence"] <= 1


def test_single_dimension_regression(reg_data, tmp_path):
    d, _, _ = reg_data
    out = str(tmp_path / "a")
    assert T.main(["--dataset", "custom", "--data-dir", d, "--out", out, "--epochs", "1",
                   "--encoder-units", "4", "--shared-units", "4", "--verbose", "0",
                   "--label-dims", "arousal", "--mode", "classic"]) == 0
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert "ccc_arousal" in m["dev"] and "ccc_valence" not in m["dev"]


def test_missing_data_explains_how_to_make_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert T.main(["--dataset", "omg", "--out", "r"]) == 2
    err = capsys.readouterr().err
    assert "data/omg" in err and "tfrecords_tools.extract --corpus omg" in err
    assert T.main(["--dataset", "custom", "--out", "r"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_emobed_without_auxiliary_modality_is_explained(tmp_path, capsys):
    write_classification(tmp_path / "a", dims={"audio": 6})
    assert T.main(_args(str(tmp_path / "a"), str(tmp_path / "r"), "--mode", "emobed")) == 2
    assert "no video features" in capsys.readouterr().err
    assert T.main(_args(str(tmp_path / "a"), str(tmp_path / "r2"), "--mode", "classic")) == 0


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_corrupt_shard_during_training_is_named(cls_data, tmp_path, cache):
    d, manifest, _ = cls_data
    shard = manifest.modalities["video"].shards["train"][1].path
    path = os.path.join(d, shard)
    raw = bytearray(open(path, "rb").read())
    raw[40:60] = b"\xff" * 20  # same size, broken CRC
    open(path, "wb").write(bytes(raw))
    cfg = cli.config_from_args(T.parse_args(_args(d, str(tmp_path / "r"), "--cache", cache)),
                             str(tmp_path / "r"), "emobed")
    assert E.pipeline_options(cfg, manifest).cache == cache
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        E.run(cfg)
    assert shard in str(err.value)


def test_demo_cli_end_to_end(tmp_path):
    out = str(tmp_path / "x")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run([sys.executable, "-m", "emobed_tf.train", "--dataset", "demo", "--mode",
                          "emobed", "--out", out, "--epochs", "2", "--verbose", "0"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["mode"] == "emobed" and m["alpha"] == 0.5 and m["beta"] == 0.3
    assert 0 <= m["dev"]["f1_macro"] <= 1 and "accuracy" in m["test"]
    assert "f1_macro" in res.stdout


def test_mixed_precision_run(cls_data, tmp_path):
    d, _, _ = cls_data
    out = str(tmp_path / "bf16")
    try:
        assert T.main(_args(d, out, "--precision", "mixed_bfloat16", "--epochs", "1")) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert json.load(open(os.path.join(out, "config.json")))["precision"] == "mixed_bfloat16"
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert 0 <= m["test"]["f1_macro"] <= 1
