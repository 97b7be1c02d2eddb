"""tf.distribute: MirroredStrategy through fit, two loopback workers through our loop."""

import json
import os
import socket
import sys

import numpy as np
import pytest

from emobed_tf import train
from tests.conftest import (OutsideProcess, child_env, numpy_ccc, saved_predictions,
                            sklearn_scores, write_classification)



def _ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _args(d, out, strategy, *extra):
    return ["--dataset", "custom", "--data-dir", d, "--out", out, "--epochs", "2",
            "--batch-size", "4", "--encoder-units", "8", "--shared-units", "8", "--verbose", "0",
            "--strategy", strategy, *extra]


def test_mirrored_strategy_and_mixed_precision_train(cls_data, tmp_path):
    """``--strategy mirrored`` and ``--precision mixed_bfloat16`` through the CLI, in one run."""
    import keras

    d, _, _ = cls_data
    out = str(tmp_path / "m")
    try:
        assert train.main(_args(d, out, "mirrored", "--precision", "mixed_bfloat16")) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["epochs_trained"] == 2
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["strategy"] == "mirrored" and cfg["precision"] == "mixed_bfloat16"
    # the reported scores are the saved model's, computed as training did (in bfloat16)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        preds = {split: saved_predictions(out, split) for split in ("dev", "test")}
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for split, p in preds.items():
        want = sklearn_scores(p)
        assert m[split]["f1_macro"] == pytest.approx(want["f1_macro"])
        assert m[split]["accuracy"] == pytest.approx(want["accuracy"])


def test_multiworker_loop_selects_on_the_mean_ccc_like_fit(reg_data, tmp_path, monkeypatch):
    """The multi-worker loop's dev score is what ``fit`` monitors (``val_ccc``): on a
    two-dimension regression run, the CCC pooled per dimension and averaged over both, not
    the first dimension's CCC."""
    from emobed_tf.experiments import distribute
    from emobed_tf.experiments.scoring import predict_split

    class Captured(Exception):
        pass

    seen = {}

    def loop(model, strategy, train_ds, epochs, start, ckpt, dev_logs, verbose=1):
        seen["logs"], seen["model"] = dev_logs(model), model
        raise Captured

    # the run as --strategy multiworker starts it, on one process without a cluster
    monkeypatch.setattr(distribute, "make_strategy", lambda name: None)
    monkeypatch.setattr(distribute, "fit_multiworker", loop)
    d, manifest, _ = reg_data
    assert list(manifest.label_names) == ["arousal", "valence"]
    with pytest.raises(Captured):
        train.main(_args(d, str(tmp_path / "r"), "multiworker", "--mode", "classic",
                         "--encoder-layers", "1", "--shared-layers", "1"))
    from emobed_tf.data.source import Source
    from emobed_tf.experiments.experiment import pipeline_options
    from emobed_tf.experiments.rundir import RunDir

    src = Source.open(d)  # the run's own pipeline options (normalisation, label delay)
    p = predict_split(seen["model"], src, "audio", "dev",
                      options=pipeline_options(RunDir(str(tmp_path / "r")).config(), src.manifest))
    gold, pred = p.pooled()
    per_dim = [numpy_ccc(gold[:, k], pred[:, k]) for k in range(2)]
    assert abs(per_dim[0] - per_dim[1]) > 1e-3  # the two readings differ on this run
    assert seen["logs"]["val_ccc"] == pytest.approx(np.mean(per_dim), rel=1e-4, abs=1e-5)
    # and the dev loss (--select-on loss): 1 - CCC per dimension, averaged (--regression-loss ccc)
    assert seen["logs"]["val_target_loss"] == pytest.approx(1 - np.mean(per_dim), rel=1e-4,
                                                            abs=1e-5)


def start_two_workers(root):
    """Starts two ``python -m emobed_tf.train --strategy multiworker`` workers on loopback
    (the ``two_workers`` fixture of conftest); they wait for each other."""
    write_classification(root / "d", n=(24, 6, 6))
    ports = _ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = {}
    for i in range(2):
        env = child_env(TF_CONFIG=json.dumps({"cluster": cluster,
                                              "task": {"type": "worker", "index": i}}))
        procs[i] = OutsideProcess(
            [sys.executable, "-m", "emobed_tf.train",
             *_args(str(root / "d"), str(root / f"run{i}"), "multiworker")], root, f"w{i}", env)
    return {"root": root, "procs": procs}


def test_two_workers_on_loopback_share_the_work(two_workers):
    root = two_workers["root"]
    for i, p in two_workers["procs"].items():
        code, out, err = p.wait()
        assert code == 0, (out + err)[-3000:]
    # 24 audio items, global batch 4: 6 steps per epoch, each worker gets 2 of every 4
    hist = [json.load(open(root / f"run{i}" / "history.json")) for i in range(2)]
    for h in hist:
        assert [e["batches_this_worker"] for e in h] == [6, 6]
        assert [e["examples_this_worker"] for e in h] == [12, 12]
    # gradients were all-reduced: both workers end with identical weights
    from emobed_tf.model.emobed import load_model

    a = load_model(str(root / "run0" / "checkpoints" / "last.keras"))
    b = load_model(str(root / "run1" / "checkpoints" / "last.keras"))
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_allclose(np.asarray(va), np.asarray(vb), rtol=1e-6, atol=1e-6)
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 12  # in lockstep
