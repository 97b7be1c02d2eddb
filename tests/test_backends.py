"""EmoBed under Keras' JAX and torch backends: the same Eq. (8), gradients and step as
TensorFlow, and a .keras file trained under JAX loads, scores and exports under TensorFlow.

CI installs JAX (the ``jax`` extra is in ``dev``); torch is tested where it is installed
(``pip install -e ".[torch]"``) and skipped otherwise."""

import importlib.util

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from emobed_tf.model.metrics import SCORES
from emobed_tf.model.emobed import EmoBed
from tests.conftest import numpy_softmax, OutsideProcess, write_classification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
       "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
BACKENDS = [
    "jax",  # required: in the dev extra, so CI fails rather than skips when it is missing
    pytest.param("torch", marks=pytest.mark.skipif(
        importlib.util.find_spec("torch") is None, reason="torch is not installed (.[torch])")),
]


def _batch(task, rng):
    """A mixed batch with padded, masked sequences of different lengths per modality."""
    out = {}
    for mod, (n, t, d) in {"audio": (6, 7, 5), "video": (4, 9, 8)}.items():
        lengths = rng.integers(2, t + 1, size=n)
        lengths[0] = t
        mask = np.arange(t)[None, :] < lengths[:, None]
        x = rng.normal(size=(n, t, d)).astype(np.float32) * mask[..., None]
        if task == "classification":
            label = (np.arange(n) % 3).astype(np.int64)
        else:
            label = (np.tanh(rng.normal(size=(n, t, 2))) * mask[..., None]).astype(np.float32)
        out[mod] = {"features": x, "mask": mask, "label": label}
    return out


def _tf_side(task, batch, path):
    keras.utils.set_random_seed(1)
    model = EmoBed(task, 3 if task == "classification" else 2, {"audio": 5, "video": 8},
                   target="audio", alpha=0.5, beta=0.7, l2=1e-3, encoder_layers=1,
                   encoder_units=8, shared_layers=1, shared_units=6, triplet_frame_stride=2)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.compute_terms(batch)  # builds every sub-network
    model.save(path)
    terms, _ = model.compute_terms(batch, training=True)
    with tf.GradientTape() as tape:
        loss = model.compute_terms(batch, training=True)[0]["loss"]
    grads = tape.gradient(loss, model.trainable_variables)
    logs = model.train_step(batch)
    return ({k: float(v) for k, v in terms.items()},
            {v.path: (np.zeros(v.shape) if g is None else g.numpy())
             for v, g in zip(model.trainable_variables, grads)},
            {v.path: v.numpy() for v in model.trainable_variables},
            {k: float(v) for k, v in logs.items()})


TASKS = ("classification", "regression")
TRAIN_ARGS = ("--dataset", "custom", "--epochs", "2", "--batch-size", "8", "--encoder-units", "8",
              "--shared-units", "8", "--verbose", "0")


def _available(backend):
    return backend == "jax" or importlib.util.find_spec(backend) is not None


def start_other_backends(root):
    """Starts the other processes of this module (the ``other_backends`` fixture of
    conftest): per backend, one training run and one ``backend_step.py`` over both tasks. The TensorFlow side of the step comparison is
    computed once for all backends, here, while the training runs start."""
    data = str(root / "cls")
    write_classification(data)
    backends = [b for b in ("jax", "torch") if _available(b)]
    procs = {}
    for backend in backends:
        procs["train", backend] = OutsideProcess(
            [sys.executable, "-m", "emobed_tf.train", "--backend", backend, "--data-dir", data,
             "--out", str(root / f"run-{backend}"), *TRAIN_ARGS], root, f"train-{backend}",
            {**ENV, "KERAS_BACKEND": ""})
    expected = {}  # the inputs of the step comparison (a batch, a saved model) and TF's results
    for task in TASKS:
        batch = _batch(task, np.random.default_rng(0))
        expected[task] = _tf_side(task, batch, str(root / f"{task}.keras"))
        np.savez(root / f"{task}-batch.npz", **{f"{m}/{k}": v for m, d in batch.items()
                                                for k, v in d.items()})
    for backend in backends:
        argv = []
        for task in TASKS:
            argv += [str(root / f"{task}-batch.npz"), str(root / f"{task}.keras"),
                     str(root / f"{backend}-{task}-out.npz")]
        procs["step", backend] = OutsideProcess(
            [sys.executable, os.path.join(ROOT, "tests", "backend_step.py"), *argv], root,
            f"step-{backend}", {**ENV, "KERAS_BACKEND": backend})
    return {"root": root, "data": data, "expected": expected, "procs": procs}


@pytest.mark.parametrize("backend", BACKENDS)
def test_other_backends_give_the_same_terms_gradients_and_step(backend, other_backends):
    root = other_backends["root"]
    code, _, err = other_backends["procs"]["step", backend].wait()
    assert code == 0, err[-3000:]
    for task in TASKS:
        terms, grads, new, logs = other_backends["expected"][task]
        other = np.load(root / f"{backend}-{task}-out.npz")
        _agree(terms, grads, new, logs, other, task)


def _agree(terms, grads, new, logs, jx, task):
    # every Eq. (8) term, masking and padding included
    assert set(terms) == {k[5:] for k in jx.files if k.startswith("term/")}
    assert {"target_loss", "auxiliary_loss", "triplet_loss", "l2_loss", "loss"} <= set(terms)
    for k, v in terms.items():
        assert float(jx[f"term/{k}"]) == pytest.approx(v, rel=2e-5, abs=1e-6), (task, k)
    # gradients: finite, the same direction and size for every variable
    for path, g in grads.items():
        gj = jx[f"grad/{path}"]
        assert np.all(np.isfinite(gj)), (task, path)
        np.testing.assert_allclose(gj, g, rtol=2e-3, atol=2e-6, err_msg=f"{task} {path}")
        if np.linalg.norm(g) > 0:
            cos = np.sum(g * gj) / (np.linalg.norm(g) * np.linalg.norm(gj))
            assert cos > 0.9999, (task, path)
    # one Adam step from the same weights lands on the same weights
    for path, w in new.items():
        np.testing.assert_allclose(jx[f"new/{path}"], w, rtol=1e-4, atol=1e-6,
                                   err_msg=f"{task} {path}")
    # the step's logs: every tracker and the streaming score (macro-F1, or the mean CCC over
    # the batch's valid frames), so the metrics of an epoch agree too
    assert set(logs) == {k[4:] for k in jx.files if k.startswith("log/")}
    assert {"loss", "target_loss", "triplet_loss", SCORES[task].score_name} <= set(logs)
    for k in logs:
        assert float(jx[f"log/{k}"]) == pytest.approx(logs[k], rel=2e-5, abs=1e-6), (task, k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_trained_under_another_backend_loads_scores_and_exports_under_tf(backend,
                                                                              other_backends,
                                                                              tmp_path):
    from emobed_tf.data import source
    from emobed_tf.serving.export import export_monomodal
    from emobed_tf.experiments.scoring import predict_split, score_predictions
    from emobed_tf.experiments.rundir import RunDir

    d = other_backends["data"]
    out = str(other_backends["root"] / f"run-{backend}")
    code, _, err = other_backends["procs"]["train", backend].wait()
    assert code == 0, err[-3000:]
    run = RunDir(out)
    assert run.config().backend == backend
    metrics = run.metrics()
    model = run.load_model()  # under TensorFlow, this process
    assert keras.backend.backend() == "tensorflow"
    src = source.Source.open(d)
    p = predict_split(model, src, "audio", "dev", 5)
    scores = score_predictions(p, ["a", "b", "c"])
    assert scores["f1_macro"] == pytest.approx(metrics["dev"]["f1_macro"], abs=1e-9)
    assert scores["accuracy"] == pytest.approx(metrics["dev"]["accuracy"], abs=1e-9)
    # the same TF Serving SavedModel as a TensorFlow-trained run
    path = export_monomodal(out, "audio", str(tmp_path / "served"))
    served = tf.saved_model.load(path).signatures["serving_default"]
    info = json.load(open(run.manifest_path("audio")))["modalities"]["audio"]
    x = np.random.default_rng(2).normal(size=(3, 4, 6)).astype(np.float32)
    lengths = np.array([4, 2, 3], np.int32)
    got = served(features=tf.constant(x), lengths=tf.constant(lengths))["probabilities"].numpy()
    mask = np.arange(4)[None, :] < lengths[:, None]
    xs = (x - np.asarray(info["mean"], np.float32)) / np.asarray(info["std"], np.float32)
    logits = model.forward("audio", {"features": (xs * mask[..., None]).astype(np.float32),
                                     "mask": mask})["prediction"]
    np.testing.assert_allclose(got, numpy_softmax(np.asarray(logits)), rtol=1e-5, atol=1e-6)
