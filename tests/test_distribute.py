"""tf.distribute: MirroredStrategy through fit, two loopback workers through our loop."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

from emobed_tf import train as T
from tests.conftest import write_classification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _args(d, out, strategy):
    return ["--dataset", "custom", "--data-dir", d, "--out", out, "--epochs", "2",
            "--batch-size", "4", "--encoder-units", "8", "--shared-units", "8", "--verbose", "0",
            "--strategy", strategy]


def test_mirrored_strategy_trains(cls_data, tmp_path):
    d, _, _ = cls_data
    out = str(tmp_path / "m")
    assert T.main(_args(d, out, "mirrored")) == 0
    m = json.load(open(os.path.join(out, "metrics.json")))
    assert m["epochs_trained"] == 2 and 0 <= m["dev"]["f1_macro"] <= 1
    assert json.load(open(os.path.join(out, "config.json")))["strategy"] == "mirrored"


def test_two_workers_on_loopback_share_the_work(tmp_path):
    write_classification(tmp_path / "d", n=(24, 6, 6))
    ports = _ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], []
    for i in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                      "task": {"type": "worker", "index": i}}),
               "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        log = open(tmp_path / f"w{i}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "emobed_tf.train",
             *_args(str(tmp_path / "d"), str(tmp_path / f"run{i}"), "multiworker")],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
    try:
        for i, p in enumerate(procs):
            assert p.wait(timeout=600) == 0, (tmp_path / f"w{i}.log").read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # 24 audio items, global batch 4: 6 steps per epoch, each worker gets 2 of every 4
    hist = [json.load(open(tmp_path / f"run{i}" / "history.json")) for i in range(2)]
    for h in hist:
        assert [e["batches_this_worker"] for e in h] == [6, 6]
        assert [e["examples_this_worker"] for e in h] == [12, 12]
    # gradients were all-reduced: both workers end with identical weights
    from emobed_tf.model import load_model

    a = load_model(str(tmp_path / "run0" / "checkpoints" / "last.keras"))
    b = load_model(str(tmp_path / "run1" / "checkpoints" / "last.keras"))
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_allclose(np.asarray(va), np.asarray(vb), rtol=1e-6, atol=1e-6)
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 12  # in lockstep
