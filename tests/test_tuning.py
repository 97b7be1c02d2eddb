import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import keras_tuner as kt
import pytest

from emobed_tf import cli
from emobed_tf import configs
from emobed_tf.experiments import experiment
from emobed_tf import train
from tuning.hypermodel import EmoBedHyperModel
import tuning.search
from tuning.folder import completed_trials
from tuning.search import main
from tests.conftest import search_args, tree_hashes, write_classification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hypermodel(data_dir, mode="emobed", dataset="omg"):
    import dataclasses

    base = configs.default_config(dataset, "unused", "audio", mode)
    base = dataclasses.replace(base, data_dir=data_dir)
    return EmoBedHyperModel(base, experiment.resolve_sources(dataclasses.replace(base, dataset="custom"))), base


def test_hyperparameters_default_to_the_paper(cls_data):
    d, _, _ = cls_data
    hm, base = _hypermodel(d)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert hp.values == {"encoder_type": "auto", "encoder_layers": 1, "encoder_units": 120,
                         "shared_layers": 1, "shared_units": 120, "learning_rate": 1e-3,
                         "l2": 1e-4, "alpha": 0.5, "beta": 0.3, "aux_warmup_epochs": 0,
                         "dense_dropout": 0.5, "dense_l2": 1e-2}
    assert (model.alpha, model.beta, model.encoder_units) == (0.5, 0.3, 120)
    # auto resolved on the data: cls_data has items of 1 to 5 frames
    assert (model.encoder_type, model.aux_warmup_epochs) == ("gru", 0)
    space = hm.search_space()
    assert space["encoder_type"]["values"] == ["auto", "dense", "gru"]
    assert (space["aux_warmup_epochs"]["min_value"], space["aux_warmup_epochs"]["max_value"]) \
        == (0, 5)
    assert (space["encoder_units"]["min_value"], space["encoder_units"]["max_value"]) == (32, 256)
    assert hm.objective.name == "val_f1_macro" and hm.objective.direction == "max"


def test_fixed_overrides_and_mode_specific_weights(cls_data):
    d, _, _ = cls_data
    hm, _ = _hypermodel(d)
    hp = kt.HyperParameters()
    hp.Fixed("alpha", 0.9)
    hp.Fixed("encoder_units", 16)  # the latent size
    hp.Fixed("encoder_type", "dense")
    hp.Fixed("aux_warmup_epochs", 2)
    model = hm.build(hp)
    assert model.alpha == 0.9 and model.encoder_units == 16
    assert (model.encoder_type, model.aux_warmup_epochs) == ("dense", 2)
    assert type(model.audio_encoder).__name__ == "DenseStack"
    assert model.audio_encoder.compute_output_shape((None, 1, 6)) == (None, 1, 16)
    joint, _ = _hypermodel(d, "joint")
    hp = kt.HyperParameters()
    assert joint.build(hp).beta == 0.0 and "beta" not in hp.values
    classic, _ = _hypermodel(d, "classic")
    hp = kt.HyperParameters()
    classic.build(hp)
    assert "alpha" not in hp.values and "beta" not in hp.values
    assert "aux_warmup_epochs" not in hp.values  # classic never trains on the auxiliary


def _search_args(d, directory, trials, *extra):
    return search_args(d, directory, *extra, trials=trials)


def test_search_resumes_and_best_feeds_training(finished_search, search_data, tmp_path, capsys):
    directory = shutil.copytree(finished_search, tmp_path / "search")  # one trial done
    trials = completed_trials(directory)
    assert len(trials) == 1 and trials[0]["status"] == "COMPLETED"
    best = json.load(open(os.path.join(directory, "best_hyperparameters.json")))
    assert best["score"] == trials[0]["score"] and best["trial_id"] == trials[0]["trial_id"]
    for f in ("summary.md", "trials.json", "alpha_beta.png"):
        assert os.path.getsize(os.path.join(directory, f)) > 0
    # rerunning with a larger budget continues: the finished trial is kept, one is added
    assert main(_search_args(search_data, str(directory), 2)) == 0
    out = capsys.readouterr().out
    assert out.count("[chief] trial: ") == 1  # the one new trial, run by this (the chief) process
    again = completed_trials(directory)
    assert len(again) == 2 and all(t["status"] == "COMPLETED" for t in again)
    assert {t["trial_id"]: t["values"] for t in trials}.items() <= \
        {t["trial_id"]: t["values"] for t in again}.items()
    best = json.load(open(os.path.join(directory, "best_hyperparameters.json")))  # rewritten
    assert best["score"] == max(t["score"] for t in again)
    assert json.load(open(os.path.join(directory, "trials.json"))) == again
    assert "2 completed trials" in open(os.path.join(directory, "summary.md")).read()
    # the best values are a training configuration (each trial trained one like it)
    hp_file = os.path.join(directory, "best_hyperparameters.json")
    args = train.parse_args(["--dataset", "custom", "--data-dir", search_data, "--out", "run",
                         "--epochs", "1", "--hparams", hp_file])
    cfg = cli.config_from_args(args, "run", args.mode)
    v = best["values"]
    assert cfg.loss.alpha == pytest.approx(v["alpha"]) and cfg.loss.beta == pytest.approx(v["beta"])
    assert (cfg.model.encoder_units, cfg.model.encoder_layers) == (v["encoder_units"],
                                                                   v["encoder_layers"])
    assert (cfg.model.shared_units, cfg.model.shared_layers) == (v["shared_units"],
                                                                 v["shared_layers"])
    assert cfg.learning_rate == pytest.approx(v["learning_rate"])
    assert cfg.loss.l2 == pytest.approx(v["l2"]) and cfg.data.batch_size == v["batch_size"]


def test_bad_hparams_file_is_reported(cls_data, tmp_path, capsys):
    d, _, _ = cls_data
    path = tmp_path / "hp.json"
    path.write_text(json.dumps({"values": {"gamma": 1}}))
    assert train.main(["--dataset", "custom", "--data-dir", d, "--out", str(tmp_path / "r"),
                   "--hparams", str(path)]) == 2
    assert "unknown hyperparameters ['gamma']" in capsys.readouterr().err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port, proc, log, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the chief ended (rc {proc.returncode}) before listening: "
                                 + log.read_text()[-3000:])
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"the chief did not listen on port {port} within {timeout} s")


class _FakeTuner:
    def __init__(self, calls):
        self.calls = calls

    def search(self, **kwargs):
        self.calls.append(kwargs)


def test_a_worker_searches_and_leaves_the_folder_to_the_chief(finished_search, search_data,
                                                              tmp_path, monkeypatch, capsys):
    """What ``tuning.search`` does as a KerasTuner worker (``KERASTUNER_TUNER_ID`` other than
    chief): no lock, no record, no summary; the record is checked, its data folders (paths on
    the chief's machine) aside, and of the KerasTuner files only the worker's own. The trials
    themselves are KerasTuner's; the slow test below runs a chief and two workers."""
    directory = str(shutil.copytree(finished_search, tmp_path / "search"))
    before = tree_hashes(directory, skip=())
    calls = []
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setattr(tuning.search, "make_tuner", lambda *a, **k: _FakeTuner(calls))
    elsewhere = str(shutil.copytree(search_data, tmp_path / "worker-data"))
    assert main(_search_args(elsewhere, directory, 3)) == 0
    assert len(calls) == 1 and calls[0]["epochs"] == 1
    assert capsys.readouterr().out == ""  # the chief prints the summary
    assert tree_hashes(directory, skip=()) == before  # nothing written, the lock file included
    # another search is refused by a worker too
    assert main(_search_args(elsewhere, directory, 3, "--target", "video")) == 2
    err = capsys.readouterr().err
    assert f"{directory}: holds another search" in err and "target 'audio' -> " in err
    assert "data_dirs" not in err
    # a worker reads its own tuner file only: another worker's may be half-written
    with open(os.path.join(directory, "tuner1.json"), "w") as fh:
        fh.write('{"half": ')
    assert main(_search_args(elsewhere, directory, 3)) == 0
    own = os.path.join(directory, "tuner0.json")
    with open(own, "w") as fh:
        fh.write('{"half": ')
    assert main(_search_args(elsewhere, directory, 3)) == 2
    err = capsys.readouterr().err
    assert own in err and "truncated" in err and "--overwrite" in err
    assert len(calls) == 2  # refused before a tuner was built


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_the_search_runs_as_a_module(monkeypatch, capsys):
    """``python -m tuning.search`` runs ``main`` (in processes of their own: the slow test
    below)."""
    import runpy

    monkeypatch.setattr(sys, "argv", ["search", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("tuning.search", run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m tuning.search") and "--max-trials" in out


@pytest.mark.slow
def test_distributed_search_chief_and_two_workers(tmp_path):
    """Three processes (KerasTuner's gRPC oracle): the worker side of our code is tested
    in-process above, the chief's by every other search test."""
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
        if role == "chief":  # the workers connect to the chief's oracle: wait until it listens
            _wait_for_port(int(port), procs["chief"], tmp_path / "chief.log")
    try:
        for role in ("tuner0", "tuner1", "chief"):
            assert procs[role].wait(timeout=600) == 0, (tmp_path / f"{role}.log").read_text()[-3000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    trials = completed_trials(directory)
    assert len(trials) == 4
    assert len({t["trial_id"] for t in trials}) == 4
    assert all(t["status"] == "COMPLETED" for t in trials)
    # both workers ran trials: each worker logs its own trial starts
    ran = {r: (tmp_path / f"{r}.log").read_text().count(f"[{r}] trial:") for r in
           ("tuner0", "tuner1")}
    assert sum(ran.values()) == 4 and all(v >= 1 for v in ran.values()), ran
    assert os.path.isfile(os.path.join(directory, "best_hyperparameters.json"))


def test_jobs_refuses_an_exported_tuner_id(monkeypatch, capsys, tmp_path):
    from tuning import search

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    assert search.main(["--dataset", "demo", "--out", str(tmp_path / "s"), "--jobs", "2"]) == 2
    assert "KERASTUNER_TUNER_ID is set" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "s")


@pytest.mark.slow
def test_jobs_runs_a_local_chief_and_workers(tmp_path):
    write_classification(tmp_path / "d", n=(12, 6, 6))
    directory = str(tmp_path / "jobs")
    args = [sys.executable, "-m", "tuning.search"] + _search_args(
        str(tmp_path / "d"), directory, 4, "--encoder-units", "8") + ["--jobs", "2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER")}
    proc = subprocess.run(args, env={**env, "CUDA_VISIBLE_DEVICES": ""}, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = completed_trials(directory)
    assert len(trials) == 4 and all(t["status"] == "COMPLETED" for t in trials)
    ran = {r: open(os.path.join(directory, "logs", f"{r}.log")).read().count(f"[{r}] trial:")
           for r in ("tuner0", "tuner1")}
    assert sum(ran.values()) == 4, ran
    assert os.path.isfile(os.path.join(directory, "summary.md"))  # written by the chief
