"""The dense form of the encoders and the shared network (``--encoder-type``), and the
auxiliary warm-up (``--aux-warmup-epochs``)."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from emobed_tf import configs
from emobed_tf.experiments import experiment
from emobed_tf import train
from emobed_tf.model.emobed import EmoBed, load_model
from emobed_tf.model.stacks import DenseStack, GRUStack
from emobed_tf.experiments.rundir import make_run_checkpoint, RunDir
from tests.conftest import numpy_softmax, train_cli, write_classification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dense(task="classification", **kw):
    args = dict(task=task, num_outputs=3 if task == "classification" else 2,
                input_dims={"audio": 6, "video": 10}, encoder_type="dense", encoder_layers=2,
                encoder_units=8, shared_layers=2, shared_units=5, alpha=0.5, beta=0.5,
                dense_dropout=0.3)
    args.update(kw)
    model = EmoBed(**args)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


def _numpy_stack(stack, x):
    for dense in stack.denses:
        w, b = (v.numpy() for v in dense.weights)
        x = x @ w + b
        x = np.maximum(x, 0.0) if stack.activation == "relu" else x
    return x


def _numpy_forward(model, x, mask):
    """EmoBed's dense forward from its weights: frame-wise encoder, masked mean, shared, head."""
    e = _numpy_stack(model.audio_encoder, x)
    w = mask[..., None].astype(np.float64)
    pooled = (e * w).sum(1) / np.maximum(w.sum(1), 1.0)
    hw, hb = (v.numpy() for v in model.head.weights)
    if model.task == "classification":
        return _numpy_stack(model.shared, pooled) @ hw + hb, pooled  # logits
    return _numpy_stack(model.shared, e) @ hw + hb, e


@pytest.mark.parametrize("task,frames", [("classification", 1), ("classification", 4),
                                         ("regression", 4)])
def test_dense_forward_matches_numpy(task, frames):
    keras.utils.set_random_seed(3)
    model = _dense(task)
    assert isinstance(model.audio_encoder, DenseStack) and isinstance(model.shared, DenseStack)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, frames, 6)).astype("float32")
    mask = np.ones((5, frames), bool)
    mask[1, 2:] = False  # padded frames (T > 1): the mean is over the valid frames
    x[1, 2:] = 1e3  # whatever they hold
    out = model({"audio": {"features": x, "mask": mask}})["audio"]
    y, e = _numpy_forward(model, x, mask)
    np.testing.assert_allclose(out["prediction"], y, rtol=1e-5, atol=1e-5)
    if task == "classification":
        np.testing.assert_allclose(out["embedding"], e, rtol=1e-5, atol=1e-5)
        if frames == 1:  # one frame: the single step, the mask changes nothing
            no_mask = model({"audio": {"features": x}})["audio"]["prediction"]
            np.testing.assert_allclose(no_mask, y, rtol=1e-5, atol=1e-6)
    else:
        valid = mask[..., None]
        np.testing.assert_allclose(np.where(valid, out["embedding"], 0), np.where(valid, e, 0),
                                   rtol=1e-5, atol=1e-5)


def test_dense_keras_file_round_trip_gives_identical_outputs(tmp_path):
    keras.utils.set_random_seed(4)
    model = _dense(aux_warmup_epochs=2, dense_activation="tanh")
    x = np.random.default_rng(1).normal(size=(4, 1, 6)).astype("float32")
    before = model({"audio": {"features": x}})["audio"]
    model.save(tmp_path / "m.keras")
    loaded = load_model(str(tmp_path / "m.keras"))
    assert (loaded.encoder_type, loaded.dense_activation, loaded.aux_warmup_epochs,
            loaded.dense_dropout, loaded.audio_encoder.dropout) == ("dense", "tanh", 2, 0.3, 0.3)
    assert isinstance(loaded.video_encoder, DenseStack)
    after = loaded({"audio": {"features": x}})["audio"]
    for k in ("prediction", "embedding"):
        np.testing.assert_array_equal(np.asarray(after[k]), np.asarray(before[k]))


def test_encoder_type_auto_resolves_on_the_frame_counts(tmp_path):
    pooled, seqs = tmp_path / "pooled", tmp_path / "seqs"
    write_classification(pooled, dims={"audio": 6}, lengths=(1, 1))
    write_classification(seqs, dims={"audio": 6}, lengths=(1, 5))
    for data, expected, stack in ((pooled, "dense", DenseStack), (seqs, "gru", GRUStack)):
        out = tmp_path / f"run-{expected}"
        train_cli(["--dataset", "custom", "--data-dir", str(data), "--out", str(out),
                   "--mode", "classic", "--epochs", "1", "--batch-size", "8",
                   "--encoder-units", "8", "--shared-units", "8", "--verbose", "0",
                   "--l2", "0.003", "--dense-l2", "0.02"])
        rd = RunDir(str(out))
        assert rd.config().model.encoder_type == "auto"  # as asked
        assert rd.metrics()["encoder_type"] == expected  # as it ran
        model = rd.load_model()
        assert model.encoder_type == expected and isinstance(model.audio_encoder, stack)
        # each form trains with its own L2 weight: --dense-l2 for dense, the paper's --l2 for gru
        l2 = {"dense": 0.02, "gru": 0.003}[expected]
        assert model.l2 == pytest.approx(l2) and rd.metrics()["l2"] == pytest.approx(l2)
        # --select-on auto: the dense form keeps its last epoch, the GRU form selects on the
        # dev score (the paper's); the batch size and epochs given stay as given
        sel = {"dense": ("last", None), "gru": ("score", "val_f1_macro")}[expected]
        assert (rd.metrics()["select_on"], rd.metrics()["monitor"]) == sel
        assert (rd.metrics()["batch_size"], rd.metrics()["max_epochs"]) == (8, 1)
        kernels = [w for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dense)
                   or isinstance(layer, keras.layers.GRU) for w in layer.weights
                   if w.path.endswith("kernel")]
        assert kernels
        ref = l2 * sum(float(np.sum(np.square(k.numpy()))) for k in kernels)
        assert float(model.l2_penalty()) == pytest.approx(ref, rel=1e-5)
    # asked for: kept whatever the data
    cfg = configs.default_config("custom", str(tmp_path / "x"), mode="classic", data_dir=str(pooled))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, encoder_type="gru"))
    assert experiment.build_model(cfg, experiment.resolve_sources(cfg)).encoder_type == "gru"


def test_triplet_space_auto_resolves_with_the_encoder_and_old_configs_read_as_raw():
    cfg = configs.default_config("custom", "x", mode="emobed")
    assert cfg.loss.triplet_space == "auto"
    assert configs.resolved(cfg, "dense").loss.triplet_space == "unit"
    assert configs.resolved(cfg, "gru").loss.triplet_space == "raw"
    tanh = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dense_activation="tanh"))
    assert configs.resolved(tanh, "dense").loss.triplet_space == "raw"
    # no triplet term trains: classic, joint (beta 0) and the prototype loss record raw, so
    # that their finished runs stay reusable whatever the form
    for mode in ("classic", "joint"):
        assert configs.resolved(dataclasses.replace(cfg, mode=mode), "dense"
                                ).loss.triplet_space == "raw"
    given = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, triplet_space="raw"))
    assert configs.resolved(given, "dense").loss.triplet_space == "raw"
    d = cfg.to_json()
    del d["loss"]["triplet_space"]
    assert configs.TrainConfig.from_json(d).loss.triplet_space == "raw"


def test_a_config_from_before_encoder_type_reads_as_gru():
    d = configs.default_config("custom", "x").to_json()
    del d["model"]["encoder_type"]
    assert configs.TrainConfig.from_json(d).model.encoder_type == "gru"


@pytest.mark.parametrize("select_on,key,pick", [
    ("loss", "val_target_loss", np.argmin), ("score", "val_f1_macro", np.argmax),
    ("last", "val_target_loss", lambda v: len(v) - 1)])
def test_the_kept_epoch_is_the_one_the_selection_asks_for(tmp_path, select_on, key, pick):
    """``--select-on loss`` keeps the epoch of the lowest dev loss, ``score`` the highest dev
    macro-F1 (read back from the run's own history, the first epoch where the extreme
    occurs), ``last`` the last epoch."""
    data, out = tmp_path / "pooled", tmp_path / "run"
    write_classification(data, n=(48, 12, 12), dims={"audio": 6}, lengths=(1, 1), seed=4)
    train_cli(["--dataset", "custom", "--data-dir", str(data), "--out", str(out),
               "--mode", "classic", "--epochs", "8", "--patience", "8", "--batch-size", "8",
               "--encoder-units", "4", "--shared-units", "4", "--learning-rate", "0.003",
               "--verbose", "0", "--select-on", select_on])
    rd = RunDir(str(out))
    history = json.load(open(rd.history_path))
    values = np.array([h[key] for h in history])
    assert len(values) == 8 and len(set(values.round(6))) > 1  # not all equal: a real choice
    metrics = rd.metrics()
    assert metrics["monitor"] == (None if select_on == "last" else key)
    assert metrics["best_epoch"] == int(pick(values)) + 1 and metrics["epochs_trained"] == 8
    # the kept model is that epoch's: its dev loss is the history's at that epoch
    model = rd.load_model()
    from emobed_tf.data.source import Source
    from emobed_tf.experiments.scoring import predict_split, prediction_loss
    p = predict_split(model, Source.open(str(data)), "audio", "dev",
                      options=experiment.pipeline_options(rd.config(), Source.open(str(data)).manifest))
    best = history[metrics["best_epoch"] - 1]
    assert prediction_loss(p) == pytest.approx(best["val_target_loss"], rel=1e-4)


def test_a_loss_checkpoint_keeps_the_lowest_and_counts_patience(tmp_path):
    ckpt = make_run_checkpoint(RunDir(str(tmp_path)), "val_target_loss", patience=2,
                               higher_is_better=False)
    ckpt.set_model(_dense(alpha=0.0, beta=0.0))
    for epoch, loss in enumerate([1.0, 0.7, 0.8, 0.6, 0.65, 0.9]):
        ckpt.on_epoch_end(epoch, {"loss": 1.0, "val_target_loss": loss})
        if ckpt.state["stopped_early"]:
            break
    st = ckpt.state
    assert (st["best_epoch"], st["best"], st["wait"], st["epoch"]) == (4, 0.6, 2, 6)
    assert st["stopped_early"]
    # no selection: every epoch is kept in turn and patience never runs out
    ckpt = make_run_checkpoint(RunDir(str(tmp_path / "last")), None, patience=1)
    ckpt.set_model(_dense(alpha=0.0, beta=0.0))
    for epoch, loss in enumerate([1.0, 0.7, 0.8, 0.9]):
        ckpt.on_epoch_end(epoch, {"loss": 1.0, "val_target_loss": loss})
    assert (ckpt.state["best_epoch"], ckpt.state["stopped_early"]) == (4, False)


def test_a_config_from_before_select_on_selected_on_the_score():
    d = configs.default_config("custom", "x").to_json()
    del d["select_on"]
    assert configs.TrainConfig.from_json(d).select_on == "score"


def test_prediction_loss_matches_sklearn_and_numpy():
    from sklearn.metrics import log_loss

    from emobed_tf.experiments.scoring import Predictions, prediction_loss
    rng = np.random.default_rng(0)
    probs = numpy_softmax(rng.normal(size=(20, 3)))
    gold = rng.integers(0, 3, 20)
    p = Predictions("classification", [str(i) for i in range(20)], gold, probs, ["s"] * 20)
    assert prediction_loss(p) == pytest.approx(log_loss(gold, probs, labels=[0, 1, 2]), rel=1e-6)
    g, q = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    r = Predictions("regression", ["a", "b"], [g[:10], g[10:]], [q[:10], q[10:]], ["s", "s"])
    assert prediction_loss(r, "mse") == pytest.approx(np.mean((g - q) ** 2))
    from tests.conftest import numpy_ccc
    assert prediction_loss(r, "ccc") == pytest.approx(
        1 - np.mean([numpy_ccc(g[:, k], q[:, k]) for k in range(2)]), rel=1e-6)


def test_a_config_from_before_dense_l2_keeps_the_l2_its_dense_model_trained_with():
    """Before --dense-l2, a dense model trained with --l2: such a run reads back with that
    weight, so it is never reused for a run of today's dense default."""
    d = configs.default_config("custom", "x").to_json()
    del d["loss"]["dense_l2"]
    d["loss"]["l2"] = 3e-3
    assert configs.TrainConfig.from_json(d).loss.dense_l2 == 3e-3


def test_classic_with_warmup_is_refused(tmp_path, capsys):
    with pytest.raises(configs.ConfigError, match="aux_warmup_epochs 2 needs the auxiliary"):
        configs.default_config("custom", "x", mode="classic",
                         loss=configs.LossConfig(alpha=0.5, beta=0.5, aux_warmup_epochs=2))
    with pytest.raises(configs.ConfigError, match="smaller than epochs"):
        configs.default_config("custom", "x", epochs=2, loss=configs.LossConfig(aux_warmup_epochs=2))
    with pytest.raises(ValueError, match="needs the auxiliary"):
        EmoBed(input_dims={"audio": 4}, alpha=0, beta=0, aux_warmup_epochs=1)
    data = tmp_path / "d"
    write_classification(data, dims={"audio": 6}, n=(6, 3, 3))
    code = train.main(["--dataset", "custom", "--data-dir", str(data), "--out", str(tmp_path / "r"),
                   "--mode", "classic", "--aux-warmup-epochs", "1", "--verbose", "0"])
    err = capsys.readouterr().err
    assert code != 0 and "aux_warmup_epochs 1 needs the auxiliary modality" in err
    assert not os.path.exists(tmp_path / "r" / "config.json")


class _Weights(keras.callbacks.Callback):
    """Each sub-network's weights at the start and after every epoch; stops after ``stop``."""

    def __init__(self, stop=None):
        super().__init__()
        self.seen, self.stop = {}, stop

    def _take(self, key):
        m = self.model
        self.seen[key] = {name: [v.numpy().copy() for v in layer.weights] for name, layer in
                          (("audio", m.audio_encoder), ("video", m.video_encoder),
                           ("shared", m.shared), ("head", m.head))}

    def on_train_begin(self, logs=None):
        self._take("begin")

    def on_epoch_end(self, epoch, logs=None):
        self._take(epoch + 1)
        if self.stop == epoch + 1:
            raise KeyboardInterrupt  # the run's checkpoint callback has saved this epoch


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("encoder_type", ["dense", "gru"])
def test_warmup_trains_the_auxiliary_side_only_and_survives_resume(tmp_path, encoder_type):
    data = tmp_path / "d"
    write_classification(data, n=(12, 6, 6), lengths=(1, 1) if encoder_type == "dense" else (1, 3))
    cfg = configs.default_config("custom", str(tmp_path / "run"), data_dir=str(data), epochs=4,
                           patience=4, seed=1, verbose=0)
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, encoder_type="auto", encoder_units=8,
                                       shared_units=8),
        loss=dataclasses.replace(cfg.loss, aux_warmup_epochs=2),
        data=dataclasses.replace(cfg.data, batch_size=4))
    first = _Weights(stop=1)
    with pytest.raises(KeyboardInterrupt):  # interrupted after epoch 1, inside the warm-up
        experiment.run(cfg, callbacks=[first])
    assert RunDir(cfg.out).resume_state()["epoch"] == 1
    rest = _Weights()
    metrics = experiment.run(cfg, callbacks=[rest])  # resumes at epoch 2: still warm-up
    assert metrics["encoder_type"] == encoder_type
    # EmoBed (beta 0.5): the triplet distances on unit-norm embeddings for the dense (ReLU)
    # form, on the raw GRU outputs as the paper wrote it
    assert metrics["triplet_space"] == {"dense": "unit", "gru": "raw"}[encoder_type]
    assert RunDir(cfg.out).load_model().triplet_space == metrics["triplet_space"]
    w0 = first.seen["begin"]
    # epoch 1 (and epoch 2, after the resume): the target encoder is untouched, the auxiliary
    # encoder, the shared network and the head learn
    for after in (first.seen[1], rest.seen[2]):
        assert _same(after["audio"], w0["audio"])
        for part in ("video", "shared", "head"):
            assert not _same(after[part], w0[part]), part
    assert not _same(rest.seen[2]["shared"], first.seen[1]["shared"])
    # after the warm-up, Eq. (8): the target encoder changes
    assert not _same(rest.seen[3]["audio"], w0["audio"])
    history = json.load(open(RunDir(cfg.out).history_path))
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert "target_loss" not in history[0] and "auxiliary_loss" in history[0]
    assert "target_loss" in history[2] and "triplet_loss" in history[2]
    assert metrics["best_epoch"] in (3, 4) and metrics["epochs_trained"] == 4


def test_a_warmup_epoch_is_never_the_best_epoch(tmp_path):
    model = _dense(aux_warmup_epochs=2)
    run = RunDir(str(tmp_path))
    ckpt = make_run_checkpoint(run, "val_f1_macro", patience=2)
    ckpt.set_model(model)
    for epoch, score in enumerate([0.9, 0.8, 0.1, 0.05, 0.2]):
        ckpt.on_epoch_end(epoch, {"loss": 1.0, "val_f1_macro": score})
    st = ckpt.state
    # the warm-up's 0.9 and 0.8 are neither best nor counted for patience
    assert (st["best_epoch"], st["best"], st["wait"]) == (5, 0.2, 0)
    assert not st["stopped_early"] and st["epoch"] == 5


BACKENDS = ["jax", pytest.param("torch", marks=pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed"))]

_STEP = """
import sys
sys.path.insert(0, {tests!r})
import backend_step
import emobed_tf.model.emobed as Mo
load = Mo.load_model
def load_in_phase(path, compile=True):
    model = load(path, compile)
    model.set_aux_warmup(path.endswith("-warm.keras"))
    return model
Mo.load_model = load_in_phase
args = sys.argv[1:]
for i in range(0, len(args), 3):
    backend_step.main(*args[i:i + 3])
"""


def _tf_step(model, batch):
    import tensorflow as tf

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


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_and_warmup_steps_agree_across_backends(backend, tmp_path):
    """TensorFlow's terms, gradients, Adam step and logs, under JAX and torch (as in
    test_backends.py), for the dense form and for a warm-up step."""
    from tests.test_backends import _batch

    cases = {}
    for task in ("classification", "regression"):
        for warm in (False, True):
            name = f"{task}-{'warm' if warm else 'joint'}"
            batch = _batch(task, np.random.default_rng(0))
            keras.utils.set_random_seed(1)
            model = EmoBed(task, 3 if task == "classification" else 2, {"audio": 5, "video": 8},
                           alpha=0.5, beta=0.7, l2=1e-3, encoder_type="dense",
                           encoder_layers=2, encoder_units=8, shared_layers=1, shared_units=6,
                           triplet_frame_stride=2, aux_warmup_epochs=1,
                           dense_dropout=0.0)  # dropout masks differ across backends
            model.compile(optimizer=keras.optimizers.Adam(0.01))
            model.compute_terms(batch)
            path = str(tmp_path / f"{name}.keras")
            model.save(path)
            model.set_aux_warmup(warm)
            cases[name] = (batch, path, _tf_step(model, batch))
            np.savez(tmp_path / f"{name}.npz", **{f"{m}/{k}": v for m, d in batch.items()
                                                  for k, v in d.items()})
    argv = []
    for name in cases:
        src = str(tmp_path / f"{name}.keras")
        if name.endswith("warm"):  # the loader enters the warm-up for these files
            os.replace(src, str(tmp_path / f"{name}-warm.keras"))
            src = str(tmp_path / f"{name}-warm.keras")
        argv += [str(tmp_path / f"{name}.npz"), src, str(tmp_path / f"{name}-out.npz")]
    env = {**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    code = _STEP.format(tests=os.path.join(ROOT, "tests"))
    proc = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, (_, _, (terms, grads, new, logs)) in cases.items():
        other = np.load(tmp_path / f"{name}-out.npz")
        assert set(terms) == {k[5:] for k in other.files if k.startswith("term/")}, name
        for k, v in terms.items():
            assert float(other[f"term/{k}"]) == pytest.approx(v, rel=2e-5, abs=1e-6), (name, k)
        for path, g in grads.items():
            np.testing.assert_allclose(other[f"grad/{path}"], g, rtol=2e-3, atol=2e-6,
                                       err_msg=f"{name} {path}")
        for path, w in new.items():
            np.testing.assert_allclose(other[f"new/{path}"], w, rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name} {path}")
        for k in logs:
            assert float(other[f"log/{k}"]) == pytest.approx(logs[k], rel=2e-5, abs=1e-6)
        if name.endswith("warm"):  # the target encoder does not move in a warm-up step
            assert set(terms) == {"auxiliary_loss", "l2_loss", "loss"}
            for path, w in new.items():
                if path.startswith("audio_encoder"):
                    np.testing.assert_array_equal(other[f"new/{path}"], w)


def test_the_multiworker_loop_has_the_warmup_too(tmp_path):
    """``fit_multiworker`` (here under a one-device MirroredStrategy): the warm-up epochs
    leave the target encoder as it was, and are never the best epoch."""
    import tensorflow as tf

    from emobed_tf.experiments.distribute import fit_multiworker

    data = tmp_path / "d"
    write_classification(data, n=(12, 6, 6), lengths=(1, 1))
    cfg = configs.default_config("custom", str(tmp_path / "run"), data_dir=str(data), epochs=3,
                           patience=3, seed=1, verbose=0)
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, encoder_units=8, shared_units=8),
        loss=dataclasses.replace(cfg.loss, aux_warmup_epochs=1),
        data=dataclasses.replace(cfg.data, batch_size=4))
    sources = experiment.resolve_sources(cfg)
    train_ds, _ = experiment.make_datasets(cfg, sources)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = experiment.build_model(cfg, sources)
    w0 = [v.numpy().copy() for v in model.audio_encoder.weights]
    seen = {}

    def dev_logs(m):
        seen[len(seen) + 1] = [v.numpy().copy() for v in m.audio_encoder.weights]
        return {"val_f1_macro": 1.0 - 0.1 * len(seen)}  # the warm-up epoch would be the best

    run = RunDir(cfg.out)
    ckpt = make_run_checkpoint(run, "val_f1_macro", cfg.patience)
    fit_multiworker(model, strategy, train_ds, cfg.epochs, 0, ckpt, dev_logs, verbose=0)
    assert model.encoder_type == "dense"
    assert _same(seen[1], w0) and not _same(seen[2], w0)
    assert ckpt.state["best_epoch"] == 2


def test_a_dense_run_exports_and_serves_the_same_numbers(tmp_path):
    import tensorflow as tf

    from emobed_tf.serving import export
    from tests.test_export import _reference

    data, run = tmp_path / "pooled", tmp_path / "run"
    write_classification(data, dims={"audio": 6}, n=(12, 6, 6), lengths=(1, 1))
    train_cli(["--dataset", "custom", "--data-dir", str(data), "--out", str(run), "--mode",
               "classic", "--epochs", "1", "--batch-size", "8", "--encoder-units", "8",
               "--shared-units", "8", "--verbose", "0"])
    path = export.export_monomodal(str(run), "audio", str(tmp_path / "sm"))
    served = tf.saved_model.load(path)
    # one frame per item (the data's form), and padded sequences (the mean of valid frames)
    x = np.random.default_rng(0).normal(size=(3, 4, 6)).astype(np.float32)
    for frames, lengths in ((1, [1, 1, 1]), (4, [4, 2, 1])):
        xs, ls = x[:, :frames], np.asarray(lengths, np.int32)
        ref, _ = _reference(str(run), "audio", xs, ls)
        got = served.signatures["serving_default"](features=tf.constant(xs),
                                                   lengths=tf.constant(ls))
        np.testing.assert_allclose(got["probabilities"].numpy(), numpy_softmax(ref["prediction"]),
                                   atol=1e-5)
        emb = served.signatures["embedding"](features=tf.constant(xs), lengths=tf.constant(ls))
        np.testing.assert_allclose(emb["embedding"].numpy(), ref["embedding"], atol=1e-5)


def test_auto_training_settings_resolve_per_encoder_type_and_compare_as_resolved(tmp_path):
    """Batch size, epochs and select_on left at auto take the dense recipe (1024, 300, last)
    or the preset's GRU values (64, 50, score); a saved run is compared as resolved, so a
    run of the earlier dense default (64, 50, score, written explicitly) is never taken for
    one of today's, while a run with today's values written out is."""
    new = configs.default_config("custom", out=str(tmp_path / "r"), mode="classic")
    assert (new.data.batch_size, new.epochs, new.select_on) == (0, 0, "auto")
    dense = configs.resolved(new, "dense")
    assert (dense.model.encoder_type, dense.data.batch_size, dense.epochs, dense.select_on) == \
        ("dense", 1024, 300, "last")
    gru = configs.resolved(new, "gru")
    assert (gru.model.encoder_type, gru.data.batch_size, gru.epochs, gru.select_on) == \
        ("gru", 64, 50, "score")
    # an explicit type wins over the data's; explicit values stay
    given = dataclasses.replace(new, model=dataclasses.replace(new.model, encoder_type="gru"),
                                select_on="loss")
    r = configs.resolved(given, "dense")
    assert (r.model.encoder_type, r.data.batch_size, r.select_on) == ("gru", 64, "loss")
    with pytest.raises(configs.ConfigError, match="aux_warmup_epochs"):  # checked once resolved
        configs.resolved(dataclasses.replace(
            new, mode="emobed", loss=dataclasses.replace(new.loss, aux_warmup_epochs=60)), "gru")

    rd = RunDir(str(tmp_path / "r"))
    os.makedirs(rd.path)
    earlier = dataclasses.replace(new, data=dataclasses.replace(new.data, batch_size=64),
                                  epochs=50, select_on="score")
    earlier.save(rd.config_path)
    assert rd.config_difference(new, reuse=True, encoder_type="dense") == \
        ["data", "epochs", "select_on"]
    assert rd.config_difference(new, reuse=True, encoder_type="gru") == []
    assert "select_on 'score' -> 'last'" in rd.other_settings(new, "a finished run", "hint",
                                                              reuse=True, encoder_type="dense")
    written = dataclasses.replace(new, data=dataclasses.replace(new.data, batch_size=1024),
                                  epochs=300, select_on="last")
    written.save(rd.config_path)
    assert rd.config_difference(new, reuse=True, encoder_type="dense") == []
    assert rd.config_difference(new, reuse=True, encoder_type="gru") == \
        ["data", "epochs", "select_on"]
