"""Fault injection with real processes: ``kill -9`` in the middle of training, then resume."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from emobed_tf.experiments.rundir import RunDir
from tests.conftest import write_classification

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _wait_for(predicate, timeout, proc=None, what=""):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_kill_9_mid_training_then_rerun_resumes_and_finishes(tmp_path):
    data = tmp_path / "cls"
    write_classification(data, n=(96, 12, 12))
    out = str(tmp_path / "run")
    argv = [sys.executable, "-m", "emobed_tf.train", "--dataset", "custom", "--data-dir",
            str(data), "--out", out, "--epochs", "40", "--patience", "99", "--batch-size", "8",
            "--encoder-units", "8", "--shared-units", "8", "--verbose", "0"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    run = RunDir(out)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def epochs_done():
        try:
            return json.load(open(run.state_path))["epoch"]
        except (OSError, ValueError, KeyError):
            return 0

    _wait_for(lambda: epochs_done() >= 2, 300, proc, "two epochs")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = epochs_done()
    assert not run.finished and killed_at >= 2
    # the checkpoint of the last finished epoch is whole (atomic writes), the lock died
    # with the process, and a rerun of the same command resumes from it
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"Resuming {out} after epoch" in res.stdout
    assert run.finished
    hist = json.load(open(run.history_path))
    assert [h["epoch"] for h in hist] == list(range(1, 41))
    assert not glob.glob(os.path.join(out, "**", "*.tmp*"), recursive=True)
