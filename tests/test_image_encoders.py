"""Pretrained face encoders in the extraction tool (``--encoder keras-hub|onnx``).

Tiny models are built here (keras-hub ``ViTBackbone``/``DINOV2Backbone`` +
``save_to_preset``, ONNX graphs with ``onnx.helper``), extracted through the
command line (``--corpus images --no-detect``) into a TFRecord data set, and
compared with the model called directly on the same preprocessed pixels.
"""

import os

import numpy as np
import pytest

from tfrecords_tools import extract, media
from tfrecords_tools import image_encoders
from tfrecords_tools.face import WeightsError, resize
from tfrecords_tools.options import OptionsError, VideoOptions
from tfrecords_tools.workcache import CacheError, WorkCache

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Three face-like PNGs (two classes) of different sizes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    paths = []
    for i, (label, size) in enumerate((("happy", 40), ("happy", 52), ("sad", 36))):
        (root / label).mkdir(exist_ok=True)
        p = root / label / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (size, size + 4, 3)).astype(np.uint8)).save(p)
        paths.append(str(p))
    return str(root), paths


def _pixels(paths, size):
    """The faces as the tool feeds them (--no-detect: resized to the model input)."""
    return np.stack([resize(media.load_image(p), size) for p in paths])


def _cli(faces_dir, out, *flags):
    """Extracts through the command line; returns ({recording: features}, manifest)."""
    import tensorflow as tf

    from emobed_tf.data import source
    from emobed_tf.records import manifest, schema

    argv = ["--corpus", "images", "--images-dir", faces_dir, "--no-detect", "--out", str(out),
            *flags]
    assert extract.main(argv) == 0
    items = [schema.decode_example(r.numpy()) for r in tf.data.TFRecordDataset(
        source.shard_paths(source.Source.open(str(out)), "video", "train"))]
    return ({it.recording: it.features for it in items}, manifest.load_manifest(str(out)))


# -- keras-hub --------------------------------------------------------------------


def _vit(folder, seed=0, scale=None, offset=None):
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2,
                                            num_heads=2, hidden_dim=8, mlp_dim=16)
    backbone.save_to_preset(str(folder))
    if scale is not None:
        keras_hub.layers.ViTImageConverter(image_size=(32, 32), scale=scale,
                                           offset=offset).save_to_preset(str(folder))
    return str(folder), backbone


def test_keras_hub_vit_extraction_matches_the_backbone(faces, tmp_path):
    faces_dir, paths = faces
    scale = [1 / (255 * s) for s in STD]
    offset = [-m / s for m, s in zip(MEAN, STD)]
    model, backbone = _vit(tmp_path / "vit", scale=scale, offset=offset)
    x = _pixels(paths, (32, 32)).astype(np.float32) * np.float32(scale) + np.float32(offset)
    tokens = np.asarray(backbone.predict_on_batch(x), np.float64)  # [3, 1 + 16, 8]
    want = {"cls": tokens[:, 0], "avg": tokens[:, 1:].mean(1)}
    recs = [os.path.splitext(os.path.relpath(p, faces_dir))[0] for p in paths]
    for pool in ("cls", "avg"):
        feats, m = _cli(faces_dir, tmp_path / pool, "--encoder", "keras-hub", "--encoder-model",
                        model, "--layer-pool", pool)
        assert m.modalities["video"].dim == 8
        assert VideoOptions(encoder="keras-hub", encoder_model=model, layer_pool=pool).dim == 8
        for i, rec in enumerate(recs):
            np.testing.assert_allclose(feats[rec][0], want[pool][i], atol=1e-5)
    fp = m.extra["extraction_options"]["video"]
    assert fp["encoder"] == "keras-hub" and fp["layer_pool"] == "avg"
    assert fp["image_size"] == [32, 32] and fp["channel_order"] == "rgb"
    np.testing.assert_allclose(fp["image_scale"], scale, rtol=1e-7)
    assert m.modalities["video"].feature_set.startswith("keras-hub vit (avg, 32x32 rgb)")
    # the default pooling of a ViT is its class token; no converter: [0, 1] pixels
    bare, _ = _vit(tmp_path / "bare")
    opts = VideoOptions(encoder="keras-hub", encoder_model=bare)
    assert opts.pool_name == "cls" and opts.prep().scale == (1 / 255,)
    # a named layer: the first encoder block's tokens, averaged over the patches
    enc = image_encoders.load_encoder("keras-hub", model, layer="vit_encoder", pool="avg")
    np.testing.assert_allclose(enc(_pixels(paths, (32, 32))), want["avg"], atol=1e-5)


def test_keras_hub_dinov2_registers_are_not_patches(faces, tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=8, num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16,
        num_register_tokens=2, image_shape=(32, 32, 3), position_embedding_shape=(32, 32, 3))
    backbone.save_to_preset(str(tmp_path / "dino"))
    x = _pixels(faces[1], (32, 32))
    tokens = np.asarray(backbone.predict_on_batch({"images": x.astype(np.float32) / 255}),
                        np.float64)
    assert tokens.shape[1] == 1 + 2 + 16
    enc = image_encoders.load_encoder("keras-hub", str(tmp_path / "dino"), pool="avg")
    np.testing.assert_allclose(enc(x), tokens[:, 3:].mean(1), atol=1e-5)
    assert enc.dim == 8 == VideoOptions(encoder="keras-hub", encoder_model=str(
        tmp_path / "dino")).dim


def test_keras_hub_clip_pooled_embedding_and_patch_mean(faces, tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    from keras_hub.src.models.clip.clip_text_encoder import CLIPTextEncoder
    from keras_hub.src.models.clip.clip_vision_encoder import CLIPVisionEncoder

    keras.utils.set_random_seed(2)
    vision = CLIPVisionEncoder(patch_size=8, hidden_dim=8, num_layers=1, num_heads=2,
                               intermediate_dim=16, image_shape=(32, 32, 3))
    text = CLIPTextEncoder(vocabulary_size=20, embedding_dim=8, hidden_dim=8, num_layers=1,
                           num_heads=2, intermediate_dim=16, max_sequence_length=8)
    clip = keras_hub.models.CLIPBackbone(vision, text, projection_dim=6)
    clip.save_to_preset(str(tmp_path / "clip"))
    x = _pixels(faces[1], (32, 32))
    images = x.astype(np.float32) / 255
    emb = np.asarray(clip.get_vision_embeddings(images), np.float64)
    tokens = np.asarray(vision.predict_on_batch({"images": images}), np.float64)
    for pool, want, dim in (("cls", emb, 6), ("avg", tokens[:, 1:].mean(1), 8)):
        opts = VideoOptions(encoder="keras-hub", encoder_model=str(tmp_path / "clip"),
                            layer_pool=pool)
        assert opts.dim == dim and opts.pool_name == pool
        enc = image_encoders.load_encoder("keras-hub", str(tmp_path / "clip"), pool=pool)
        np.testing.assert_allclose(enc(x), want, atol=1e-5)
        assert enc.dim == dim


# -- onnx -------------------------------------------------------------------------


def _onnx_model(path, seed=0, layout="nchw", size=16):
    """pixels -> Conv(3->4) -> Relu ("relu") -> global average ("emb", [N, 4]) -> Gemm ("logits",
    [N, 5]); outputs logits, emb. ``layout`` nhwc adds a Transpose in front."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("w", rng.normal(size=(4, 3, 3, 3))), ("b", rng.normal(size=4)),
        ("w2", rng.normal(size=(5, 4))), ("b2", rng.normal(size=5)))]
    shape = ["batch", 3, size, size] if layout == "nchw" else ["batch", size, size, 3]
    nodes = []
    first = "pixels"
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]))
        first = "nchw"
    nodes += [helper.make_node("Conv", [first, "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["conv"], ["relu"]),
              helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["emb"]),
              helper.make_node("Gemm", ["emb", "w2", "b2"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny_face", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5]),
         helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def _ort_direct(path, x, output):
    import onnxruntime as ort

    import onnx

    model = onnx.load(path)
    if output not in [o.name for o in model.graph.output]:
        model.graph.output.append(onnx.ValueInfoProto(name=output))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([output], {"pixels": x})[0].astype(np.float64)


def test_onnx_extraction_matches_the_model(faces, tmp_path):
    faces_dir, paths = faces
    model = _onnx_model(tmp_path / "face.onnx")
    pix = _pixels(paths, (16, 16)).astype(np.float32)
    x = np.transpose((pix / 255 - np.float32(MEAN)) / np.float32(STD), (0, 3, 1, 2))
    x = np.ascontiguousarray(x, np.float32)
    recs = [os.path.splitext(os.path.relpath(p, faces_dir))[0] for p in paths]
    norm = ["--image-mean", ",".join(map(str, MEAN)), "--image-std", ",".join(map(str, STD))]
    for name, flags, want, dim in (
            ("first", [], _ort_direct(model, x, "logits"), 5),
            ("emb", ["--layer", "emb"], _ort_direct(model, x, "emb"), 4),
            ("inner", ["--layer", "relu", "--layer-pool", "avg"],
             _ort_direct(model, x, "relu").mean(axis=(2, 3)), 4)):
        feats, m = _cli(faces_dir, tmp_path / name, "--encoder", "onnx", "--encoder-model",
                        model, *norm, *flags)
        assert m.modalities["video"].dim == dim, name
        for i, rec in enumerate(recs):
            np.testing.assert_allclose(feats[rec][0], want[i], atol=1e-5, err_msg=name)
    fp = m.extra["extraction_options"]["video"]
    assert fp["layer"] == "relu" and fp["layer_pool"] == "avg" and fp["image_size"] == [16, 16]
    assert VideoOptions(encoder="onnx", encoder_model=model).layer_name == "logits"
    assert VideoOptions(encoder="onnx", encoder_model=model, layer="relu").pool_name == "avg"
    assert VideoOptions(encoder="onnx", encoder_model=model, layer="relu").dim == 4


def test_onnx_nhwc_bgr_and_image_size(faces, tmp_path):
    _, paths = faces
    model = _onnx_model(tmp_path / "nhwc.onnx", layout="nhwc", size=12)
    info = image_encoders.onnx_info(model)
    assert (info["layout"], info["image_size"], info["output"]) == ("nhwc", (12, 12), "logits")
    enc = image_encoders.load_encoder("onnx", model, layer="emb", channel_order="bgr")
    pix = _pixels(paths, (12, 12))
    x = np.ascontiguousarray(pix[..., ::-1].astype(np.float32) / 255)
    np.testing.assert_allclose(enc(pix), _ort_direct(model, x, "emb"), atol=1e-6)
    assert enc.input_size == (12, 12) and enc.dim == 4
    # an explicit --image-size wins over the model's (here: the model then refuses the input)
    assert VideoOptions(encoder="onnx", encoder_model=model, image_size="20").prep().size == (
        20, 20)


def test_beam_engine_matches_local_for_an_image_encoder(faces, tmp_path):
    pytest.importorskip("apache_beam")
    faces_dir, _ = faces
    model = _onnx_model(tmp_path / "face.onnx")
    flags = ["--encoder", "onnx", "--encoder-model", model, "--layer", "emb"]
    local, _ = _cli(faces_dir, tmp_path / "local", *flags)
    beamed, m = _cli(faces_dir, tmp_path / "beam", *flags, "--engine", "beam")
    assert m.extra["engine"] == "beam"
    assert sorted(local) == sorted(beamed)
    for k in local:
        np.testing.assert_allclose(local[k], beamed[k], atol=1e-6)


# -- fingerprint, dims and errors -------------------------------------------------


def test_fingerprint_refuses_another_model_layer_or_preprocessing(tmp_path):
    import shutil

    a = _onnx_model(tmp_path / "a.onnx", seed=0)
    b = _onnx_model(tmp_path / "b.onnx", seed=1)  # same graph, other weights
    fa = VideoOptions(encoder="onnx", encoder_model=a).fingerprint()
    assert fa["layer"] == "logits" and fa["layer_pool"] == "flatten" and "onnxruntime" in fa
    cache = WorkCache(str(tmp_path / "out"))
    cache.bind_options({"video": fa})
    for other, flag in ((VideoOptions(encoder="onnx", encoder_model=b),
                         r"--encoder-model \(file content\)"),
                        (VideoOptions(encoder="onnx", encoder_model=a, layer="emb"), "--layer"),
                        (VideoOptions(encoder="onnx", encoder_model=a, image_std="0.5"),
                         r"--image-mean/--image-std \(scale\)"),
                        (VideoOptions(encoder="onnx", encoder_model=a, channel_order="bgr"),
                         "--channel-order")):
        with pytest.raises(CacheError, match=flag):
            cache.bind_options({"video": other.fingerprint()})
    shutil.copy(a, tmp_path / "copy.onnx")
    assert VideoOptions(encoder="onnx", encoder_model=str(tmp_path / "copy.onnx")).fingerprint(
    ) == fa
    # keras-hub: other weights of the same config, another pooling
    v1, _ = _vit(tmp_path / "v1", seed=0)
    v2, _ = _vit(tmp_path / "v2", seed=1)
    f1 = VideoOptions(encoder="keras-hub", encoder_model=v1).fingerprint()
    assert f1["layer_pool"] == "cls" and "encoder_config_sha256" in f1
    cache = WorkCache(str(tmp_path / "out2"))
    cache.bind_options({"video": f1})
    for other, flag in ((VideoOptions(encoder="keras-hub", encoder_model=v2),
                         r"--encoder-model \(file content\)"),
                        (VideoOptions(encoder="keras-hub", encoder_model=v1, layer_pool="avg"),
                         "--layer-pool 'cls' -> 'avg'")):
        with pytest.raises(CacheError, match=flag):
            cache.bind_options({"video": other.fingerprint()})


@pytest.mark.parametrize("kind,path,says", [
    ("keras-hub", "clip_vit_base_patch16",
     "from_preset(\"clip_vit_base_patch16\").save_to_preset(DIR)"),
    ("keras-hub", None, "--encoder keras-hub needs --encoder-model DIR"),
    ("onnx", "/nonexistent/enet_b0_8_best_vgaf.onnx", image_encoders.HSEMOTION_ONNX),
    ("onnx", None, "--encoder onnx needs --encoder-model FILE")])
def test_missing_model_or_preset_name_is_one_clear_line(faces, tmp_path, capsys, kind, path,
                                                         says):
    argv = ["--corpus", "images", "--images-dir", faces[0], "--no-detect", "--out",
            str(tmp_path / "out"), "--encoder", kind] + (["--encoder-model", path] if path
                                                         else [])
    assert extract.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err, err
    assert "local f" in err  # local folder / local file only
    assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_option_errors(tmp_path):
    with pytest.raises(OptionsError, match="apply to --encoder keras-hub or onnx"):
        VideoOptions(image_size=224)
    with pytest.raises(OptionsError, match="--image-mean 1,2: give one value or three"):
        VideoOptions(encoder="onnx", image_mean="1,2")
    with pytest.raises(WeightsError, match="--layer-pool cls applies to --encoder keras-hub"):
        VideoOptions(encoder="keras", encoder_model="m.keras", layer="f",
                     layer_pool="cls").check()
    model = _onnx_model(tmp_path / "m.onnx")
    with pytest.raises(WeightsError, match="--layer nope: no tensor of that name"):
        VideoOptions(encoder="onnx", encoder_model=model, layer="nope").fingerprint()
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="not a complete keras-hub preset"):
        VideoOptions(encoder="keras-hub", encoder_model=str(tmp_path / "empty")).check()
