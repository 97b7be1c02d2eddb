import json
import os
import socket
import subprocess
import sys
import time

import keras_tuner as kt
import pytest

from emobed_tf import configs as C
from emobed_tf import experiment as E
from emobed_tf import train as T
from tuning.hypermodel import EmoBedHyperModel
from tuning import search as S
from tests.conftest import write_classification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hypermodel(data_dir, mode="emobed", dataset="omg"):
    import dataclasses

    base = C.default_config(dataset, "unused", "audio", mode)
    base = dataclasses.replace(base, data_dir=data_dir)
    return EmoBedHyperModel(base, E.resolve_sources(dataclasses.replace(base, dataset="custom"))), base


def test_hyperparameters_default_to_the_paper(cls_data):
    d, _, _ = cls_data
    hm, base = _hypermodel(d)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert hp.values == {"encoder_layers": 1, "encoder_units": 120, "shared_layers": 1,
                         "shared_units": 120, "learning_rate": 1e-3, "l2": 1e-4,
                         "alpha": 0.5, "beta": 0.3}
    assert (model.alpha, model.beta, model.encoder_units) == (0.5, 0.3, 120)
    assert hm.objective.name == "val_f1_macro" and hm.objective.direction == "max"


def test_fixed_overrides_and_mode_specific_weights(cls_data):
    d, _, _ = cls_data
    hm, _ = _hypermodel(d)
    hp = kt.HyperParameters()
    hp.Fixed("alpha", 0.9)
    hp.Fixed("encoder_units", 16)
    model = hm.build(hp)
    assert model.alpha == 0.9 and model.encoder_units == 16
    joint, _ = _hypermodel(d, "joint")
    hp = kt.HyperParameters()
    assert joint.build(hp).beta == 0.0 and "beta" not in hp.values
    classic, _ = _hypermodel(d, "classic")
    hp = kt.HyperParameters()
    classic.build(hp)
    assert "alpha" not in hp.values and "beta" not in hp.values


def _search_args(d, directory, trials, *extra):
    return ["--dataset", "custom", "--data-dir", d, "--tuner", "random", "--max-trials",
            str(trials), "--epochs", "1", "--out", directory, "--verbose", "0",
            "--batch-size", "8", *extra]


def test_search_resumes_and_best_feeds_training(cls_data, tmp_path):
    d, _, _ = cls_data
    directory = str(tmp_path / "search")
    assert S.main(_search_args(d, directory, 2)) == 0
    trials = S.completed_trials(directory)
    assert len(trials) == 2 and all(t["status"] == "COMPLETED" for t in trials)
    best = json.load(open(os.path.join(directory, "best_hyperparameters.json")))
    assert best["score"] == max(t["score"] for t in trials)
    for f in ("summary.md", "trials.json", "alpha_beta.png"):
        assert os.path.getsize(os.path.join(directory, f)) > 0
    # rerunning with a larger budget continues: the two trials are kept, one is added
    assert S.main(_search_args(d, directory, 3)) == 0
    again = S.completed_trials(directory)
    assert len(again) == 3
    assert {t["trial_id"]: t["values"] for t in trials}.items() <= \
        {t["trial_id"]: t["values"] for t in again}.items()
    best = json.load(open(os.path.join(directory, "best_hyperparameters.json")))  # rewritten
    assert best["score"] == max(t["score"] for t in again)
    # the best values train a run
    out = str(tmp_path / "run")
    assert T.main(["--dataset", "custom", "--data-dir", d, "--out", out, "--epochs", "1",
                   "--verbose", "0", "--hparams", os.path.join(directory,
                                                               "best_hyperparameters.json")]) == 0
    cfg = json.load(open(os.path.join(out, "config.json")))
    v = best["values"]
    assert cfg["loss"]["alpha"] == pytest.approx(v["alpha"])
    assert cfg["model"]["encoder_units"] == v["encoder_units"]
    assert cfg["data"]["batch_size"] == v["batch_size"]


def test_bad_hparams_file_is_reported(cls_data, tmp_path, capsys):
    d, _, _ = cls_data
    path = tmp_path / "hp.json"
    path.write_text(json.dumps({"values": {"gamma": 1}}))
    assert T.main(["--dataset", "custom", "--data-dir", d, "--out", str(tmp_path / "r"),
                   "--hparams", str(path)]) == 2
    assert "unknown hyperparameters ['gamma']" in capsys.readouterr().err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_search_chief_and_two_workers(tmp_path):
    write_classification(tmp_path / "d", n=(12, 6, 6))
    directory = str(tmp_path / "dist")
    port = str(_free_port())
    args = [sys.executable, "-m", "tuning.search"] + _search_args(
        str(tmp_path / "d"), directory, 4, "--encoder-units", "8")
    procs = {}
    log = {}
    for role in ("chief", "tuner0", "tuner1"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": role, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": port, "TF_CPP_MIN_LOG_LEVEL": "3",
               "CUDA_VISIBLE_DEVICES": ""}
        log[role] = open(tmp_path / f"{role}.log", "w")
        procs[role] = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log[role],
                                       stderr=subprocess.STDOUT)
        if role == "chief":
            time.sleep(3)
    try:
        for role in ("tuner0", "tuner1", "chief"):
            assert procs[role].wait(timeout=600) == 0, (tmp_path / f"{role}.log").read_text()[-3000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    trials = S.completed_trials(directory)
    assert len(trials) == 4
    assert len({t["trial_id"] for t in trials}) == 4
    assert all(t["status"] == "COMPLETED" for t in trials)
    # both workers ran trials: each worker logs its own trial starts
    ran = {r: (tmp_path / f"{r}.log").read_text().count(f"[{r}] trial:") for r in
           ("tuner0", "tuner1")}
    assert sum(ran.values()) == 4 and all(v >= 1 for v in ran.values()), ran
    assert os.path.isfile(os.path.join(directory, "best_hyperparameters.json"))
