"""Export: the SavedModel reloads without this package and matches the Keras model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import numpy_softmax

from emobed_tf.export import main as export_main
from emobed_tf.serving import export
from emobed_tf.experiments import postprocess

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


def _reference(run, modality, x, lengths):
    """Keras model + numpy standardisation, the numbers the export must match."""
    from emobed_tf.model.emobed import load_model

    model = load_model(os.path.join(run, "model.keras"))
    info = json.load(open(os.path.join(run, "manifests", f"{modality}.json")))
    m = info["modalities"][modality]
    mask = np.arange(x.shape[1])[None, :] < np.asarray(lengths)[:, None]
    xs = (x - np.asarray(m["mean"], np.float32)) / np.asarray(m["std"], np.float32) * mask[..., None]
    out = model.forward(modality, {"features": xs.astype(np.float32), "mask": mask})
    ref = {k: np.asarray(v) for k, v in out.items()}
    if model.task == "classification":  # the model's logits; what is served: probabilities
        ref["probabilities"] = numpy_softmax(ref["prediction"])
    return ref, mask


LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
res = {}
for name in ("serving_default", "embedding"):
    out = m.signatures[name](features=tf.constant(x["features"]), lengths=tf.constant(x["lengths"]))
    res.update({k: v.numpy().tolist() for k, v in out.items()})
res["emobed_tf_imported"] = any(k.startswith("emobed_tf") for k in sys.modules)
print(json.dumps(res))
"""


class _Process:
    def __init__(self, argv, **kwargs):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=ENV, **kwargs)
        self.result = None

    def wait(self):
        """(returncode, stdout, stderr)."""
        if self.result is None:
            out, err = self.proc.communicate(timeout=300)
            self.result = self.proc.returncode, out, err
        return self.result


@pytest.fixture(scope="module")
def served(tmp_path_factory, cls_run):
    """The audio export of the shared run, and the three outside processes that read it,
    started at once (each spends most of its time importing TensorFlow): a reload without
    emobed_tf, ``saved_model_cli show`` and ``saved_model_cli run``."""
    run = cls_run.path  # read-only: the exports go elsewhere
    root = tmp_path_factory.mktemp("served")
    path = export.export_monomodal(run, "audio", str(root / "sm" / "toy"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 6)).astype(np.float32)
    lengths = np.array([5, 2, 1], np.int32)
    np.savez(root / "x.npz", features=x, lengths=lengths)
    np.save(root / "f.npy", np.ones((2, 4, 6), np.float32))
    np.save(root / "l.npy", np.array([4, 2], np.int32))
    procs = {
        "loader": _Process([sys.executable, "-c", LOADER, path, str(root / "x.npz")],
                           cwd=str(root)),
        "show": _Process([CLI, "show", "--dir", path, "--tag_set", "serve", "--signature_def",
                          "serving_default"]),
        "run": _Process([CLI, "run", "--dir", path, "--tag_set", "serve", "--signature_def",
                         "serving_default", "--inputs",
                         f"features={root / 'f.npy'};lengths={root / 'l.npy'}",
                         "--outdir", str(root / "cli-out")]),
    }
    yield {"path": path, "root": root, "x": x, "lengths": lengths, **procs}
    for p in procs.values():
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def test_classification_export_reloads_without_emobed_and_matches(cls_run, served):
    path = served["path"]
    assert path.endswith(os.path.join("toy", "1"))
    base = os.path.dirname(path)
    # either modality, the next version
    assert export.export_monomodal(cls_run.path, "video", base).endswith("2")
    # the auxiliary branch is not in the export: only the audio encoder, f and the head
    import tensorflow as tf
    from emobed_tf.model.emobed import load_model

    model = load_model(os.path.join(cls_run.path, "model.keras"))
    want = sum(int(np.prod(v.shape)) for layer in (model.audio_encoder, model.shared, model.head)
               for v in layer.variables)  # weights and dropout seed states
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    shapes = reader.get_variable_to_shape_map()
    stored = sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith("variables/"))
    assert stored == want
    assert [10, 24] not in shapes.values()  # the 10-d video encoder's kernel
    # reloaded in a process that does not import emobed_tf
    ref, _ = _reference(cls_run.path, "audio", served["x"], served["lengths"])
    code, out, err = served["loader"].wait()
    assert code == 0, err[-2000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert got["emobed_tf_imported"] is False
    np.testing.assert_allclose(got["probabilities"], ref["probabilities"], atol=1e-5)
    np.testing.assert_allclose(np.sum(got["probabilities"], -1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(got["class_id"], ref["prediction"].argmax(-1))
    np.testing.assert_allclose(got["embedding"], ref["embedding"], atol=1e-5)


def test_saved_model_cli_show_and_run(cls_run, served):
    code, out, err = served["show"].wait()
    assert code == 0, err[-2000:]
    for token in ("inputs['features']", "inputs['lengths']", "DT_INT32",
                  "outputs['probabilities']", "(-1, 3)", "outputs['class_id']"):
        assert token in out
    # input shapes are left open so that the graph's checks see every bad input; the feature
    # size is in the export's metadata (and in the checks' messages)
    assert out.count("unknown_rank") == 2
    meta = json.load(open(os.path.join(served["path"], "assets.extra", "emobed_export.json")))
    assert meta["input_dim"] == 6 and meta["modality"] == "audio"
    code, out, err = served["run"].wait()
    assert code == 0, err[-2000:]
    outdir = served["root"] / "cli-out"
    ref, _ = _reference(cls_run.path, "audio", np.ones((2, 4, 6), np.float32), [4, 2])
    np.testing.assert_allclose(np.load(outdir / "probabilities.npy"), ref["probabilities"],
                               atol=1e-5)
    np.testing.assert_array_equal(np.load(outdir / "class_id.npy"), ref["prediction"].argmax(-1))


def test_serving_signature_rejects_wrong_dim_and_dtype(served):
    import tensorflow as tf

    path = served["path"]
    fn = tf.saved_model.load(path).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        fn(features=tf.zeros((1, 3, 7)), lengths=tf.constant([3]))
    assert "features must have 6 values per frame, got 7" in err.value.message
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        fn(features=tf.zeros((1, 3, 6), tf.float64), lengths=tf.constant([3]))


def test_grpc_predict_request_is_valid_for_the_signature(served):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import predict_pb2

    path = served["path"]
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(open(os.path.join(path, "saved_model.pb"), "rb").read())
    sig = sm.meta_graphs[0].signature_def["serving_default"]
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "toy"
    req.model_spec.signature_name = "serving_default"
    req.inputs["features"].CopyFrom(tf.make_tensor_proto(np.zeros((2, 4, 6), np.float32)))
    req.inputs["lengths"].CopyFrom(tf.make_tensor_proto(np.array([4, 3], np.int32)))
    back = predict_pb2.PredictRequest.FromString(req.SerializeToString())
    assert set(back.inputs) == set(sig.inputs)
    for name, tensor in back.inputs.items():
        spec = sig.inputs[name]
        assert tensor.dtype == spec.dtype
        assert spec.tensor_shape.unknown_rank  # any shape reaches the graph's checks
    assert set(sig.outputs) == {"probabilities", "class_id"}


def test_regression_export_includes_postprocessing(reg_run, tmp_path):
    run = reg_run.copy(tmp_path / "reg")  # gets a postprocess.json
    chain = {"arousal": {"median_window": 5, "bias": 0.2, "scale": 1.5, "shift": 2},
             "valence": {"median_window": 0, "bias": None, "scale": None, "shift": 0}}
    json.dump(chain, open(os.path.join(run, "postprocess.json"), "w"))
    path = export.export_monomodal(run, "video", str(tmp_path / "sm"))
    import tensorflow as tf

    m = tf.saved_model.load(path)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 30, 7)).astype(np.float32)
    lengths = np.array([30, 12], np.int32)
    padded = x.copy()
    padded[1, 12:] = np.nan  # padding is ignored, whatever it holds
    out = m.signatures["serving_default"](features=tf.constant(padded),
                                          lengths=tf.constant(lengths))
    assert set(out) == {"arousal", "valence"}
    ref, mask = _reference(run, "video", x, lengths)
    preds = [ref["prediction"][i, :n] for i, n in enumerate(lengths)]
    want = postprocess.apply_chain(preds, chain, ["arousal", "valence"])
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(out["arousal"].numpy()[i, :n], want[i][:, 0], atol=1e-5)
        np.testing.assert_allclose(out["valence"].numpy()[i, :n], want[i][:, 1], atol=1e-5)
        assert np.all(out["arousal"].numpy()[i, n:] == 0)
    emb = m.signatures["embedding"](features=tf.constant(padded), lengths=tf.constant(lengths))
    assert emb["embedding"].shape == (2, 30, 8) and np.all(np.isfinite(emb["embedding"]))


def test_export_errors(classic_run, tmp_path, capsys):
    run = classic_run.path  # read-only: the exports go to tmp_path
    assert export_main(["--run", run, "--target", "video", "--out", str(tmp_path / "x")]) == 2
    assert "no video branch" in capsys.readouterr().err
    assert export_main(["--run", str(tmp_path / "none"), "--target", "audio",
                   "--out", str(tmp_path / "x")]) == 2
    assert "no trained model" in capsys.readouterr().err
    assert export_main(["--run", run, "--target", "audio", "--out", str(tmp_path / "x")]) == 0
    assert export_main(["--run", run, "--target", "audio", "--out", str(tmp_path / "x"),
                   "--version", "1"]) == 2
    assert "never overwritten" in capsys.readouterr().err
    for bad in ("-3", "0"):  # TF Serving serves only positive integer folders
        with pytest.raises(SystemExit) as exit_:
            export_main(["--run", run, "--target", "audio", "--out", str(tmp_path / "x"),
                    "--version", bad])
        assert exit_.value.code == 2
        assert f"versions are positive integers (TF Serving serves only those folders), " \
               f"got '{bad}'" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "x")) == ["1"]
    assert export_main(["--run", run, "--target", "audio", "--out", str(tmp_path / "x"),
                   "--version", "7"]) == 0
    assert sorted(os.listdir(tmp_path / "x")) == ["1", "7"]


def test_speaker_normalised_run_exports_with_speaker_inputs(tmp_path):
    """A --normalize speaker run: the served model takes each item's speaker statistics and
    gives what the training pipeline gave (test items' probabilities, the run's test score)."""
    import tensorflow as tf

    from emobed_tf.data import source, speakers
    from emobed_tf.experiments import experiment
    from emobed_tf.model.metrics import classification_scores
    from emobed_tf.model.emobed import load_model
    from emobed_tf.experiments.scoring import predict_split
    from emobed_tf.experiments.rundir import RunDir
    from tests.conftest import _train_args, train_cli, write_classification

    _, items = write_classification(tmp_path / "d", dims={"audio": 6})
    run = str(tmp_path / "run")
    train_cli(_train_args(tmp_path / "d", run, "--epochs", "1", "--mode", "classic",
                          "--normalize", "speaker"))
    path = export.export_monomodal(run, "audio", str(tmp_path / "sm"))
    meta = json.load(open(os.path.join(path, "assets.extra", "emobed_export.json")))
    stats_file = json.load(open(os.path.join(run, "manifests", "audio.json")))
    assert meta["normalize"] == "speaker" and meta["min_speaker_frames"] == speakers.MIN_SPEAKER_FRAMES
    np.testing.assert_allclose(meta["fallback_mean"],
                               stats_file["modalities"]["audio"]["mean"], rtol=1e-6)
    np.testing.assert_allclose(meta["fallback_std"],
                               stats_file["modalities"]["audio"]["std"], rtol=1e-6)
    m = tf.saved_model.load(path)
    fn = m.signatures["serving_default"]
    # the speakers' statistics in numpy, over all their audio frames
    frames = {}
    for it in items:
        frames.setdefault(it.speaker, []).append(it.features.astype(np.float64))
    stats = {s: (np.concatenate(f).mean(0), np.concatenate(f).std(0)) for s, f in frames.items()}
    test = [it for it in items if it.split == "test"]
    t_max = max(it.features.shape[0] for it in test)
    x = np.zeros((len(test), t_max, 6), np.float32)
    for i, it in enumerate(test):
        x[i, : it.features.shape[0]] = it.features
    lengths = np.array([it.features.shape[0] for it in test], np.int32)
    mean = np.stack([stats[it.speaker][0] for it in test]).astype(np.float32)
    std = np.stack([stats[it.speaker][1] for it in test]).astype(np.float32)
    out = fn(features=tf.constant(x), lengths=tf.constant(lengths),
             speaker_mean=tf.constant(mean), speaker_std=tf.constant(std))
    # the pipeline's predictions of the same items, with the options the run's configuration
    # gives (what training and scoring used)
    model = load_model(os.path.join(run, "model.keras"))
    src = source.Source.open(str(tmp_path / "d"))
    opts = experiment.pipeline_options(RunDir(run).config(), src.manifest)
    assert opts.normalize == "speaker"
    p = predict_split(model, src, "audio", "test", options=opts)
    want = {rec: pr for rec, pr in zip(p.recordings, p.pred)}
    for i, it in enumerate(test):
        np.testing.assert_allclose(out["probabilities"].numpy()[i], want[it.recording],
                                   atol=1e-5)
    got = classification_scores([it.label_class for it in test], out["class_id"].numpy(),
                                3)["f1_macro"]
    assert got == pytest.approx(json.load(open(os.path.join(run, "metrics.json")))["test"][
        "f1_macro"], abs=1e-9)
    # corpus statistics would give other numbers: the speaker inputs are used
    other = fn(features=tf.constant(x), lengths=tf.constant(lengths),
               speaker_mean=tf.zeros_like(mean), speaker_std=tf.ones_like(std))
    assert not np.allclose(other["probabilities"].numpy(), out["probabilities"].numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="speaker_std must be finite"):
        fn(features=tf.constant(x), lengths=tf.constant(lengths),
           speaker_mean=tf.constant(mean), speaker_std=tf.constant(std * 0))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"must be \[batch, 6\] arrays"):
        fn(features=tf.constant(x), lengths=tf.constant(lengths),
           speaker_mean=tf.constant(mean[:1]), speaker_std=tf.constant(std))
