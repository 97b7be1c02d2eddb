import keras
import numpy as np
import pytest
import tensorflow as tf

from emobed_tf.model import losses
from emobed_tf.model.emobed import EmoBed
from emobed_tf.model.stacks import GRUStack
from tests.conftest import numpy_softmax


def _model(task="classification", **kw):
    args = dict(task=task, num_outputs=3 if task == "classification" else 2,
                input_dims={"audio": 6, "video": 10}, encoder_layers=1, encoder_units=8,
                shared_layers=1, shared_units=8)
    args.update(kw)
    m = EmoBed(**args)
    m.compile(optimizer=keras.optimizers.Adam(1e-2))
    return m


def _batch(task, rng, b=6, t=5):
    def one(d):
        lab = (rng.integers(0, 3, b).astype("int32") if task == "classification"
               else rng.normal(size=(b, t, 2)).astype("float32"))
        mask = np.ones((b, t), bool)
        mask[0, 2:] = False
        return {"features": rng.normal(size=(b, t, d)).astype("float32"), "mask": mask,
                "label": lab}
    return {"audio": one(6), "video": one(10)}


def test_gru_stack_shapes_and_config():
    s = GRUStack(4, 2, return_sequences=False)
    out = s(np.zeros((3, 7, 5), "float32"))
    assert out.shape == (3, 4)
    assert GRUStack.from_config(s.get_config()).get_config() == s.get_config()


@pytest.mark.parametrize("return_sequences", [False, True])
def test_gru_stack_padding_is_ignored_and_the_unmasked_form_agrees(return_sequences):
    """Each row of a right-padded, masked batch gives what the row alone, unpadded, gives;
    the unmasked form the torch backend runs (``_right_padded``) gives the same tensor."""
    rng = np.random.default_rng(3)
    lengths = np.array([7, 4, 1, 6])
    mask = np.arange(7)[None, :] < lengths[:, None]
    # padded steps hold garbage: only the mask keeps them out
    x = np.where(mask[..., None], rng.normal(size=(4, 7, 5)), 50.0).astype("float32")
    stack = GRUStack(6, 2, return_sequences=return_sequences)
    masked = np.asarray(stack(x, mask=mask))
    for row, n in enumerate(lengths):
        alone = np.asarray(stack(x[row:row + 1, :n]))[0]
        if return_sequences:
            np.testing.assert_allclose(masked[row, :n], alone, atol=1e-6)
            # padded steps repeat the last valid output (Keras carries it over the mask)
            np.testing.assert_allclose(masked[row, n:], np.repeat(alone[-1:], 7 - n, 0),
                                       atol=1e-6)
        else:
            np.testing.assert_allclose(masked[row], alone, atol=1e-6)
    unmasked = np.asarray(stack._right_padded(x, mask, training=False))
    np.testing.assert_allclose(unmasked if return_sequences else unmasked[:, -1], masked,
                               atol=1e-6)


def test_gru_stack_takes_the_last_valid_step_when_padded_steps_are_zeros(monkeypatch):
    """TensorFlow's cuDNN GRU (GPU) returns zeros at padded steps instead of carrying the last
    output over them; emulated here, the stack's summary must still be each row's last
    valid output."""
    rng = np.random.default_rng(4)
    lengths = np.array([5, 2, 3])
    mask = np.arange(5)[None, :] < lengths[:, None]
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    stack = GRUStack(6, 1, return_sequences=False)
    want = np.stack([np.asarray(stack(x[r:r + 1, :n]))[0] for r, n in enumerate(lengths)])
    gru_call = type(stack.grus[0]).call

    def cudnn_like(self, sequences, initial_state=None, mask=None, training=False):
        out = gru_call(self, sequences, initial_state=initial_state, mask=mask,
                       training=training)
        return out * keras.ops.cast(mask, out.dtype)[..., None] if mask is not None else out

    monkeypatch.setattr(type(stack.grus[0]), "call", cudnn_like)
    np.testing.assert_allclose(np.asarray(stack(x, mask=mask)), want, atol=1e-6)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_output_shapes(task):
    m = _model(task)
    out = m({"audio": {"features": np.zeros((2, 5, 6), "float32"),
                       "mask": np.ones((2, 5), bool)}})
    assert set(out) == {"audio"}
    if task == "classification":
        assert out["audio"]["prediction"].shape == (2, 3)  # logits
        np.testing.assert_allclose(np.asarray(m.probabilities(out["audio"]["prediction"])),
                                   numpy_softmax(out["audio"]["prediction"]), rtol=1e-5)
        assert out["audio"]["embedding"].shape == (2, 8)
    else:
        assert out["audio"]["prediction"].shape == (2, 5, 2)
        assert out["audio"]["embedding"].shape == (2, 5, 8)


def test_padding_does_not_change_predictions():
    m = _model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 3, 6)).astype("float32")
    a = m.forward("audio", {"features": x, "mask": np.ones((1, 3), bool)})
    xp = np.concatenate([x, rng.normal(size=(1, 4, 6)).astype("float32")], 1)
    mp = np.array([[True] * 3 + [False] * 4])
    b = m.forward("audio", {"features": xp, "mask": mp})
    np.testing.assert_allclose(a["prediction"], b["prediction"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["embedding"], b["embedding"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_loss_terms_follow_eq8(task):
    rng = np.random.default_rng(1)
    m = _model(task, alpha=0.7, beta=0.4, l2=1e-3, triplet_frame_stride=2)
    data = _batch(task, rng)
    terms, out = m.compute_terms(data)
    # recompute every term independently from the forward passes
    ya = m.forward("audio", data["audio"])
    yv = m.forward("video", data["video"])
    if task == "classification":
        la = losses.classification_loss(data["audio"]["label"], ya["prediction"])
        lv = losses.classification_loss(data["video"]["label"], yv["prediction"])
        lab = np.concatenate([data["audio"]["label"], data["video"]["label"]])
        emb = np.concatenate([ya["embedding"], yv["embedding"]])
        valid = None
    else:
        la = losses.ccc_loss(data["audio"]["label"], ya["prediction"], data["audio"]["mask"])
        lv = losses.ccc_loss(data["video"]["label"], yv["prediction"], data["video"]["mask"])
        sel = lambda x: np.asarray(x)[:, ::2]  # noqa: E731
        lab = np.concatenate([losses.bin_labels(sel(data[k]["label"])).numpy().reshape(-1)
                              for k in ("audio", "video")])
        emb = np.concatenate([sel(y["embedding"]).reshape(-1, 8) for y in (ya, yv)])
        valid = np.concatenate([sel(data[k]["mask"]).reshape(-1) for k in ("audio", "video")])
    lt = losses.batch_hard_triplet_loss(lab, emb, valid)
    # R: the squared weight matrices of the GRUs (input and recurrent) and of the head, taken
    # from the layers themselves (not the biases, nor anything found by its name)
    grus = [g for stack in (m.audio_encoder, m.video_encoder, m.shared) for g in stack.grus]
    assert len(grus) == 3
    kernels = [w for g in grus for w in (g.cell.kernel, g.cell.recurrent_kernel)] + [m.head.kernel]
    assert sum(int(np.prod(k.shape)) for k in kernels) == (
        (6 + 8 + 10 + 8 + 8 + 8) * 3 * 8  # GRU input + recurrent kernels: (in + 8) x 3 gates x 8
        + 8 * (3 if task == "classification" else 2))  # head: 8 x outputs
    l2 = 1e-3 * sum(float(np.sum(np.square(np.asarray(k)))) for k in kernels)
    assert float(terms["target_loss"]) == pytest.approx(float(la), rel=1e-5)
    assert float(terms["auxiliary_loss"]) == pytest.approx(float(lv), rel=1e-5)
    assert float(terms["triplet_loss"]) == pytest.approx(float(lt), rel=1e-4, abs=1e-6)
    assert float(terms["l2_loss"]) == pytest.approx(l2, rel=1e-5)
    want = float(la) + 0.7 * float(lv) + 0.4 * float(lt) + l2
    assert float(terms["loss"]) == pytest.approx(want, rel=1e-5)


def _grad_norms(m, data):
    with tf.GradientTape() as tape:
        terms, _ = m.compute_terms(data, training=True)
    grads = tape.gradient(terms["loss"], m.trainable_variables)
    out = {}
    for v, g in zip(m.trainable_variables, grads):
        key = v.path.split("/")[0]
        out[key] = out.get(key, 0.0) + (0.0 if g is None else float(tf.norm(g)))
    return out


def test_which_branches_learn_in_each_mode():
    data = _batch("classification", np.random.default_rng(2))
    classic = _grad_norms(_model(alpha=0, beta=0, l2=0), data)
    assert classic["audio_encoder"] > 0 and classic["video_encoder"] == 0
    triplet = _grad_norms(_model(alpha=0, beta=1.0, l2=0), data)
    assert triplet["video_encoder"] > 0  # only through the crossmodal triplet
    joint = _grad_norms(_model(alpha=0.5, beta=0, l2=0), data)
    assert joint["video_encoder"] > 0 and joint["shared"] > 0


def test_classic_mode_needs_no_auxiliary_data_but_emobed_does():
    rng = np.random.default_rng(3)
    data = _batch("classification", rng)
    classic = _model(alpha=0, beta=0)
    hist = classic.fit(tf.data.Dataset.from_tensors({"audio": data["audio"]}).repeat(3),
                       epochs=1, verbose=0)
    assert "auxiliary_loss" not in hist.history and "triplet_loss" not in hist.history
    emobed = _model(alpha=0.5, beta=0.5)
    with pytest.raises(ValueError, match="lacks the video modality"):
        emobed.fit(tf.data.Dataset.from_tensors({"audio": data["audio"]}), epochs=1, verbose=0)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_fit_reduces_loss_tracks_each_term_and_the_keras_file_round_trips(task, tmp_path):
    rng = np.random.default_rng(4)
    data = _batch(task, rng)
    m = _model(task, alpha=0.5, beta=0.5, triplet_form="hinge", triplet_margin=0.1)
    ds = tf.data.Dataset.from_tensors(data).repeat(20)
    hist = m.fit(ds, epochs=3, verbose=0,
                 validation_data=tf.data.Dataset.from_tensors({"audio": data["audio"]}))
    h = hist.history
    for key in ("loss", "target_loss", "auxiliary_loss", "triplet_loss", "l2_loss",
                f"val_{m.score_name}"):
        assert key in h
    assert h["target_loss"][-1] < h["target_loss"][0]
    # the .keras file holds the configuration, the weights and the optimizer state
    path = str(tmp_path / "m.keras")
    m.save(path)
    back = keras.models.load_model(path)
    assert back.get_config() == m.get_config()
    assert (back.triplet_form, back.triplet_margin, back.alpha) == ("hinge", 0.1, 0.5)
    x = {"audio": {"features": data["audio"]["features"], "mask": data["audio"]["mask"]}}
    np.testing.assert_allclose(m(x)["audio"]["prediction"], back(x)["audio"]["prediction"],
                               rtol=1e-6, atol=1e-6)
    assert int(back.optimizer.iterations) == 60  # optimizer state travels too


def _saved_by_the_old_form(model, path):
    """``model`` saved as a ``.keras`` file of the form before ``logits_head`` existed: a
    softmax head, and a configuration without the setting."""
    import json
    import zipfile

    tmp = str(path).replace(".keras", "-today.keras")
    model.save(tmp)
    with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(str(path), "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "config.json":
                cfg = json.loads(data)
                del cfg["config"]["logits_head"]
                data = json.dumps(cfg).encode()
            dst.writestr(info, data)


def test_head_outputs_logits_and_the_loss_takes_them():
    rng = np.random.default_rng(4)
    m = _model(l2=0.0, alpha=0.0, beta=0.0)
    assert m.logits_head and m.head.activation is keras.activations.linear
    data = _batch("classification", rng)
    logits = np.asarray(m.forward("audio", data["audio"])["prediction"])
    assert not np.allclose(logits.sum(-1), 1.0)
    terms, _ = m.compute_terms(data)
    p = numpy_softmax(logits)
    want = -np.mean(np.log(p[np.arange(len(p)), data["audio"]["label"]]))
    assert float(terms["target_loss"]) == pytest.approx(want, rel=1e-5)


def test_a_file_saved_with_a_softmax_head_loads_and_scores_as_before(tmp_path):
    """Runs saved before the head gave logits: the head keeps its softmax, probabilities are
    not taken twice, the loss reads probabilities; a new file keeps its logits head."""
    from emobed_tf.experiments.scoring import _forward_fn
    from emobed_tf.model.emobed import load_model

    rng = np.random.default_rng(5)
    data = _batch("classification", rng)
    x = {"features": data["audio"]["features"], "mask": data["audio"]["mask"]}
    old = _model(logits_head=False, l2=0.0, alpha=0.0, beta=0.0)
    old_probs = np.asarray(old.forward("audio", x)["prediction"])
    np.testing.assert_allclose(old_probs.sum(-1), 1.0, rtol=1e-5)  # the old head's softmax
    _saved_by_the_old_form(old, tmp_path / "old.keras")
    back = load_model(str(tmp_path / "old.keras"), compile=False)
    assert back.logits_head is False
    # what scoring (and export) report: the probabilities, not a softmax of them
    got, _ = _forward_fn(back, "audio")(x["features"], x["mask"])
    np.testing.assert_allclose(got, old_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(back.probabilities(old_probs)), old_probs)
    terms, _ = back.compute_terms(data)
    want = -np.mean(np.log(old_probs[np.arange(len(old_probs)), data["audio"]["label"]]))
    assert float(terms["target_loss"]) == pytest.approx(want, rel=1e-5)
    # a file of today's form keeps its logits head
    new = _model(l2=0.0, alpha=0.0, beta=0.0)
    new.save(str(tmp_path / "new.keras"))
    again = load_model(str(tmp_path / "new.keras"), compile=False)
    assert again.logits_head is True
    got, _ = _forward_fn(again, "audio")(x["features"], x["mask"])
    np.testing.assert_allclose(got, numpy_softmax(new.forward("audio", x)["prediction"]),
                               rtol=1e-5, atol=1e-6)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="target"):
        EmoBed(target="text")
    with pytest.raises(ValueError, match="auxiliary modality"):
        EmoBed(input_dims={"audio": 4}, alpha=0.5, beta=0)
    with pytest.raises(ValueError, match="task"):
        EmoBed(task="ranking")
    EmoBed(input_dims={"audio": 4}, alpha=0, beta=0)  # classic needs one modality only


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_joint_forward_equals_separate_forwards_with_different_lengths(task):
    rng = np.random.default_rng(6)
    m = _model(task, alpha=0.5, beta=0.5)
    data = {"audio": _batch(task, rng, b=3, t=5)["audio"],
            "video": _batch(task, rng, b=4, t=8)["video"]}
    data["video"]["mask"][1, 6:] = False
    joint = m.forward_batch(data)
    for mod in ("audio", "video"):
        alone = m.forward(mod, data[mod])
        np.testing.assert_allclose(joint[mod]["prediction"], alone["prediction"], atol=1e-5)
        np.testing.assert_allclose(joint[mod]["embedding"], alone["embedding"], atol=1e-6)
    # the triplet system needs no auxiliary prediction
    trip = _model(task, alpha=0.0, beta=0.5).forward_batch(data)
    assert trip["video"]["prediction"] is None and trip["video"]["embedding"] is not None


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_training(policy, tmp_path):
    keras.mixed_precision.set_global_policy(policy)
    try:
        rng = np.random.default_rng(7)
        m = _model("regression", alpha=0.5, beta=0.5)
        assert m.audio_encoder.grus[0].compute_dtype == policy.split("_")[1]
        assert m.head.compute_dtype == "float32"  # outputs and losses stay in float32
        if policy == "mixed_float16":
            assert isinstance(m.optimizer, keras.optimizers.LossScaleOptimizer)
        data = _batch("regression", rng)
        hist = m.fit(tf.data.Dataset.from_tensors(data).repeat(10), epochs=2, verbose=0)
        assert all(np.isfinite(v[-1]) for v in hist.history.values())
        assert hist.history["target_loss"][-1] < hist.history["target_loss"][0]
        m.save(str(tmp_path / "m.keras"))
        back = keras.models.load_model(str(tmp_path / "m.keras"))
        x = {"audio": {"features": data["audio"]["features"], "mask": data["audio"]["mask"]}}
        np.testing.assert_allclose(m(x)["audio"]["prediction"], back(x)["audio"]["prediction"],
                                   atol=1e-6)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_prototype_crossmodal_loss_in_the_model_matches_the_pure_function():
    from emobed_tf.model import losses

    rng = np.random.default_rng(3)
    m = EmoBed("classification", 3, {"audio": 4, "video": 6}, alpha=0.5, beta=0.7, l2=0.0,
               encoder_layers=1, encoder_units=8, shared_layers=1, shared_units=8,
               crossmodal_loss="prototype", temperature=0.2)
    data = {mod: {"features": rng.normal(size=(6, 1, d)).astype("float32"),
                  "mask": np.ones((6, 1), bool), "label": np.array([0, 1, 2, 0, 1, 2])}
            for mod, d in (("audio", 4), ("video", 6))}
    terms, out = m.compute_terms(data)
    want = losses.crossmodal_prototype_loss(data["audio"]["label"], out["audio"]["embedding"],
                                       data["video"]["label"], out["video"]["embedding"], 3,
                                       temperature=0.2)
    assert "triplet_loss" not in terms
    assert float(terms["prototype_loss"]) == pytest.approx(float(want), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(
        float(terms["target_loss"]) + 0.5 * float(terms["auxiliary_loss"]) + 0.7 * float(want),
        rel=1e-5)
    clone = EmoBed.from_config(m.get_config())
    assert (clone.crossmodal_loss, clone.temperature) == ("prototype", 0.2)
    with pytest.raises(ValueError, match="crossmodal_loss must be one of"):
        EmoBed("classification", 3, {"audio": 4, "video": 6}, crossmodal_loss="cosine")


def test_triplet_space_is_decided_by_the_encoder_and_scale_cannot_lower_the_dense_term():
    from emobed_tf import configs

    assert _model(encoder_type="dense").triplet_space == "unit"  # ReLU: unbounded embeddings
    assert _model(encoder_type="dense", dense_activation="tanh").triplet_space == "raw"
    assert _model(encoder_type="gru").triplet_space == "raw"  # the paper's, exact
    assert _model(encoder_type="gru", triplet_space="unit").triplet_space == "unit"
    m = _model(encoder_type="dense", beta=1.0)
    clone = EmoBed.from_config(m.get_config())
    assert clone.triplet_space == "unit"
    old = {k: v for k, v in m.get_config().items() if k != "triplet_space"}
    assert EmoBed.from_config(old).triplet_space == "raw"  # saved before the setting existed
    rng = np.random.default_rng(5)
    batch = _batch("classification", rng, b=12, t=1)
    terms, out = m.compute_terms(batch)
    # ReLU stacks are positively homogeneous: scaling both encoders' embeddings (here directly)
    # by any c > 0 leaves the unit-space term where it was
    for c in (0.01, 7.0, 1e3):
        scaled = {mod: {**o, "embedding": c * o["embedding"]} for mod, o in out.items()}
        assert float(m.triplet_loss(batch, scaled)) == pytest.approx(
            float(terms["triplet_loss"]), abs=1e-5)
    raw = _model(encoder_type="dense", beta=1.0, triplet_space="raw")
    terms, out = raw.compute_terms(batch)
    scaled = {mod: {**o, "embedding": 10.0 * o["embedding"]} for mod, o in out.items()}
    assert float(raw.triplet_loss(batch, scaled)) == pytest.approx(
        10 * float(terms["triplet_loss"]), rel=1e-4)
    with pytest.raises(ValueError, match="triplet_space must be one of"):
        _model(triplet_space="cosine")
    assert configs.triplet_space_for("dense", "gelu") == "unit"
