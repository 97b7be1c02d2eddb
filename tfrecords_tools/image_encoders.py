"""Pretrained image encoders for faces (``--encoder keras-hub|onnx``).

Like the speech encoders, every model loads from a LOCAL path only (nothing
is downloaded); a missing path or a preset name is one ``face.WeightsError``
saying how to get the files. Both encoders follow the interface of
``face.KerasModelEncoder``: ``input_size`` (H, W), ``channels``, ``dim``,
``preprocess(faces)`` (uint8 RGB [N, H, W, 3] to the model's input) and
``encoder(faces) -> [N, dim]`` float32, so ``face.FacePipeline`` (MTCNN
detection and alignment, or ``--no-detect``) drives them unchanged.

* :class:`KerasHubImageEncoder`: a keras-hub image backbone saved with
  ``save_to_preset`` (ViT, DINOv2, CLIP or SigLIP vision towers,
  EfficientNet and other CNNs), read with
  ``keras_hub.models.Backbone.from_preset(DIR)``. Preprocessing (input
  size, scale and offset, i.e. mean/std) comes from the preset's
  ``image_converter.json`` (or its ``preprocessor.json``), else from the
  backbone's ``image_shape`` and [0, 1] pixels; ``--image-size``,
  ``--image-mean``, ``--image-std``, ``--channel-order`` override it.
  Pooling (``--layer-pool``): ``cls`` (the class token, or the model's own
  pooled image embedding: CLIP's projected CLS, SigLIP's attention-pooling
  head) or ``avg`` (the mean over the patch tokens, class and register
  tokens excluded; the spatial mean of a CNN's feature map). ``--layer``
  cuts the (vision) backbone at a named layer instead.
* :class:`OnnxImageEncoder`: an ``.onnx`` image model through onnxruntime
  (e.g. HSEmotion's EfficientNets). The input's layout (NCHW or NHWC),
  channels and size are read from the model's first input; mean/std and
  channel order come from the flags (default [0, 1] RGB pixels). ``--layer``
  names the output (default the model's first output); an intermediate
  tensor of the graph can be named too (it is added as an output).
  Pooling: ``flatten`` (the default for [N, D] outputs), ``avg`` (spatial
  mean of a 4-D output in the input's layout, mean over tokens 1.. of a
  3-D one) or ``cls`` (token 0 of a 3-D output).

Pixels are mapped as ``x = pixel * scale + offset`` per channel, with
``scale = 1 / (255 std)`` and ``offset = -mean / std`` for mean/std given
on [0, 1] pixels (ImageNet: ``--image-mean 0.485,0.456,0.406 --image-std
0.229,0.224,0.225``); keras-hub image converters store scale and offset
directly. The resolved values are part of the extraction fingerprint.

>>> prep = Prep((4, 4), (1 / 255,), (0.0,), "bgr", "nchw", 3)
>>> faces = np.zeros((2, 4, 4, 3), np.uint8); faces[..., 0] = 255
>>> x = prep(faces)
>>> x.shape, float(x[0, 2, 0, 0]), float(x[0, 0, 0, 0])
((2, 3, 4, 4), 1.0, 0.0)
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
import re

import numpy as np

from tfrecords_tools.common import OptionsError

KINDS = ("keras-hub", "onnx")
POOLS = ("flatten", "avg", "cls")
HSEMOTION_ONNX = ("https://github.com/av-savchenko/face-emotion-recognition/tree/main/models/"
                  "affectnet_emotions/onnx")
HOWTO = {
    "keras-hub": ("face encoders load from a local folder only: on a machine with network run "
                  "`keras_hub.models.Backbone.from_preset(\"{name}\").save_to_preset(DIR)` and "
                  "`keras_hub.layers.ImageConverter.from_preset(\"{name}\")"
                  ".save_to_preset(DIR)`, copy DIR here and pass --encoder-model DIR"),
    "onnx": ("ONNX face models load from a local file only: download the .onnx file on a "
             "machine with network (HSEmotion's: enet_b0_8_best_vgaf.onnx and others under "
             f"{HSEMOTION_ONNX}; or export your own with torch.onnx.export), copy it here and "
             "pass --encoder-model FILE"),
}
# keras-hub image backbones read from config.json: what their output holds
# (tokens with a class token first, a pooled vector, a 4-D feature map)
TOKEN_BACKBONES = ("ViTBackbone", "DINOV2Backbone", "DINOV3Backbone", "CLIPVisionEncoder")
POOLED_BACKBONES = ("CLIPBackbone", "SigLIPBackbone", "SigLIPVisionEncoder")


def _weights_error(msg):
    from tfrecords_tools.face import WeightsError

    return WeightsError(msg)


def _looks_like_name(path: str) -> bool:
    return bool(re.fullmatch(r"(hf://|kaggle://)?[A-Za-z0-9][\w.-]*(/[\w.-]+){0,4}", path)
                and not path.startswith((".", "/", "~")))


def check_model_path(kind: str, path: str | None) -> str:
    """``path`` when it is a local model of ``kind``; else one clear ``WeightsError``.

    >>> check_model_path("keras-hub", "clip_vit_base_patch16")
    Traceback (most recent call last):
    ...
    tfrecords_tools.face.WeightsError: --encoder-model clip_vit_base_patch16: no such folder (a
    keras-hub preset name?); face encoders load from a local folder only: on a machine with
    network run `keras_hub.models.Backbone.from_preset("clip_vit_base_patch16")...
    """
    name = re.sub(r"^(hf|kaggle)://", "", path or "NAME")
    howto = HOWTO[kind].format(name=name)
    what = "DIR" if kind == "keras-hub" else "FILE"
    if not path:
        raise _weights_error(f"--encoder {kind} needs --encoder-model {what}; {howto}")
    if not os.path.exists(path):
        guess = ("no such folder (a keras-hub preset name?)" if kind == "keras-hub"
                 and _looks_like_name(path) and not path.endswith(".onnx") else "not found")
        raise _weights_error(f"--encoder-model {path}: {guess}; {howto}")
    if kind == "onnx":
        if not os.path.isfile(path):
            raise _weights_error(f"--encoder-model {path}: not a file (an .onnx model); {howto}")
        return path
    if not os.path.isdir(path):
        raise _weights_error(f"--encoder-model {path}: not a folder (a keras-hub preset saved "
                             f"with save_to_preset); {howto}")
    missing = [] if os.path.isfile(os.path.join(path, "config.json")) else ["config.json"]
    if not weight_files(kind, path, check=False):
        missing.append("model.weights.h5")
    if missing:
        raise _weights_error(f"--encoder-model {path}: not a complete keras-hub preset "
                             f"(missing {', '.join(missing)}); {howto}")
    return path


def weight_files(kind: str, path: str, check: bool = True) -> list:
    """The files holding the weights (what the fingerprint hashes)."""
    if check:
        check_model_path(kind, path)
    if kind == "onnx":  # external data files sit beside the model
        return [path] + sorted(glob.glob(path + ".data")) + sorted(glob.glob(path + "_data"))
    return sorted(glob.glob(os.path.join(path, "*.weights.h5")))


def config_files(kind: str, path: str) -> list:
    """keras-hub: the files configuring the backbone and its preprocessing (fingerprinted)."""
    if kind != "keras-hub":
        return []
    return [os.path.join(path, n) for n in ("config.json", "image_converter.json",
                                            "preprocessor.json")
            if os.path.isfile(os.path.join(path, n))]


def _read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _converter_config(path) -> dict:
    """The preset's image converter config (``image_converter.json``, else inside
    ``preprocessor.json``), or ``{}``."""
    f = os.path.join(path, "image_converter.json")
    if os.path.isfile(f):
        return _read_json(f).get("config", {})
    f = os.path.join(path, "preprocessor.json")
    if os.path.isfile(f):
        conv = _read_json(f).get("config", {}).get("image_converter")
        if isinstance(conv, dict):
            return conv.get("config", {})
    return {}


def _vision_config(cfg: dict) -> dict:
    """The vision tower's config of a CLIP/SigLIP backbone (else the config itself)."""
    vis = cfg.get("vision_encoder")
    return vis.get("config", {}) if isinstance(vis, dict) else cfg


def keras_hub_info(path: str) -> dict:
    """What a keras-hub image preset gives, read from its JSON files (no weights loaded).

    ``{class_name, output ("tokens", "pooled", "map"), prefix (class and
    register tokens before the patches), image_shape, dims {pool: dim or
    None}, converter {image_size, scale, offset}}``.
    """
    check_model_path("keras-hub", path)
    cfg = _read_json(os.path.join(path, "config.json"))
    cls, c = cfg.get("class_name", ""), cfg.get("config", {})
    vis = _vision_config(c)
    hidden = vis.get("hidden_dim")
    info = {"class_name": cls, "image_shape": vis.get("image_shape"),
            "converter": _converter_config(path)}
    if cls in TOKEN_BACKBONES:
        cls_token = bool(c.get("use_class_token", True))
        info.update(output="tokens", prefix=int(cls_token) + int(c.get("num_register_tokens", 0)),
                    cls_token=cls_token, dims={"cls": hidden if cls_token else None,
                                               "avg": hidden})
    elif cls in POOLED_BACKBONES:
        pooled = c.get("projection_dim") if cls == "CLIPBackbone" else hidden
        info.update(output="pooled", prefix=1 if cls == "CLIPBackbone" else 0, cls_token=True,
                    dims={"cls": pooled, "avg": hidden if cls == "CLIPBackbone" else None})
    elif "audio" in cls.lower() or cls in ("WhisperBackbone", "MoonshineBackbone") or (
            "vocabulary_size" in c and "image_shape" not in c):
        raise _weights_error(f"--encoder-model {path}: a keras-hub {cls or 'model'}, not an "
                             "image backbone")
    else:  # CNNs (EfficientNet, ResNet, ...): a [B, H, W, C] feature map
        info.update(output="map", prefix=0, cls_token=False, dims={"avg": None})
    return info


def parse_size(value) -> tuple | None:
    """``224``, ``"224"``, ``"260,260"``, ``"224x192"`` or (H, W) -> (H, W); None stays None.

    >>> parse_size("224"), parse_size("260x200"), parse_size((112, 112)), parse_size(None)
    ((224, 224), (260, 200), (112, 112), None)
    """
    if value is None or value == "" or value == ():
        return None
    parts = (re.split(r"[x,\s]+", value.strip()) if isinstance(value, str)
             else [value] if isinstance(value, (int, np.integer)) else list(value))
    try:
        size = tuple(int(p) for p in parts if str(p).strip())
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise OptionsError(f"--image-size {value}: give SIZE or HEIGHTxWIDTH in pixels")
    return size


def parse_floats(value, flag: str) -> tuple:
    """``"0.5,0.5,0.5"`` or a sequence -> a tuple of 1 or 3 floats (``()`` when not given)."""
    if value is None or value == "" or value == ():
        return ()
    parts = value.split(",") if isinstance(value, str) else (
        [value] if isinstance(value, (int, float)) else list(value))
    try:
        out = tuple(float(p) for p in parts if str(p).strip())
    except ValueError:
        out = ()
    if len(out) not in (1, 3) or not all(np.isfinite(out)):
        raise OptionsError(f"{flag} {value}: give one value or three (R,G,B), on [0, 1] pixels")
    if flag == "--image-std" and min(out) <= 0:
        raise OptionsError(f"{flag} {value}: must be positive")
    return out


@dataclasses.dataclass(frozen=True)
class Prep:
    """Face pixels (uint8 RGB [N, H, W, 3]) to a model input: channel order, grayscale,
    ``pixel * scale + offset`` per channel, NHWC or NCHW."""

    size: tuple
    scale: tuple
    offset: tuple
    channel_order: str = "rgb"
    layout: str = "nhwc"
    channels: int = 3

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        x = np.asarray(faces, np.float32)
        if self.channel_order == "bgr":
            x = x[..., ::-1]
        if self.channels == 1:
            x = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        scale = np.asarray(self.scale, np.float32)
        offset = np.asarray(self.offset, np.float32)
        x = x * scale[:self.channels] if len(scale) == 3 else x * scale
        x = x + (offset[:self.channels] if len(offset) == 3 else offset)
        if self.layout == "nchw":
            x = np.transpose(x, (0, 3, 1, 2))
        return np.ascontiguousarray(x, np.float32)

    def fingerprint(self) -> dict:
        r = lambda v: [float(f"{float(a):.8g}") for a in v]  # noqa: E731
        return {"image_size": list(self.size), "image_scale": r(self.scale),
                "image_offset": r(self.offset), "channel_order": self.channel_order}


def _as_tuple(v, default):
    if v is None:
        return default
    return tuple(float(a) for a in (v if isinstance(v, (list, tuple)) else [v]))


def resolve_prep(kind: str, path: str, image_size=None, mean=(), std=(),
                 channel_order=None, layer=None) -> Prep:
    """The preprocessing of a model: the preset's (keras-hub) or the model input's (onnx),
    overridden by the flags given."""
    size, scale, offset, layout, channels = None, (1 / 255.0,), (0.0,), "nhwc", 3
    if kind == "keras-hub":
        info = keras_hub_info(path)
        conv = info["converter"]
        shape = info["image_shape"] or ()
        if conv.get("image_size"):
            size = tuple(int(v) for v in conv["image_size"])
        elif len(shape) == 3 and shape[0] and shape[1]:
            size = (int(shape[0]), int(shape[1]))
        if conv:
            scale = _as_tuple(conv.get("scale"), (1.0,))
            offset = _as_tuple(conv.get("offset"), (0.0,))
    else:
        inp = onnx_info(path, layer)
        size, layout, channels = inp["image_size"], inp["layout"], inp["channels"]
    if image_size:
        size = tuple(image_size)
    if mean or std:
        m, s = (tuple(mean) or (0.0,)), (tuple(std) or (1.0,))
        if len(m) != len(s) and 1 not in (len(m), len(s)):
            raise _weights_error("--image-mean and --image-std need the same number of values")
        n = max(len(m), len(s))
        m, s = (m * 3)[:n] if len(m) == 1 else m, (s * 3)[:n] if len(s) == 1 else s
        scale = tuple(1.0 / (255.0 * b) for b in s)
        offset = tuple(-a / b for a, b in zip(m, s))
    if size is None:
        raise _weights_error(f"--encoder-model {path}: the input size is not fixed by the model "
                             "or its preset; pass --image-size SIZE")
    return Prep(tuple(int(v) for v in size), tuple(scale), tuple(offset),
                channel_order or "rgb", layout, channels)


# -- ONNX ---------------------------------------------------------------------------


def _ort():
    try:
        import onnxruntime
    except ImportError as err:
        raise _weights_error("--encoder onnx needs onnxruntime (pip install 'emobed_tf[onnx]'): "
                             f"{err}") from None
    return onnxruntime


def _onnx_bytes(path: str, output: str | None) -> tuple:
    """(model bytes or path, output names, value shapes) with ``output`` made a graph output
    when it is an intermediate tensor."""
    ort = _ort()
    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise _weights_error(f"--encoder-model {path}: cannot be loaded by onnxruntime "
                             f"({' '.join(str(err).split())[:300]})") from None
    outs = [o.name for o in sess.get_outputs()]
    if output is None or output in outs:
        return path, sess, None
    try:
        import onnx
    except ImportError:
        raise _weights_error(f"--layer {output}: not an output of {path} ({', '.join(outs)}); "
                             "naming an inner tensor needs the onnx package") from None
    model = onnx.load(path)
    inner = {o for n in model.graph.node for o in n.output}
    if output not in inner:
        raise _weights_error(f"--layer {output}: no tensor of that name in {path} (outputs: "
                             f"{', '.join(outs)})")
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shapes are only a convenience
        pass
    vi = next((v for v in model.graph.value_info if v.name == output), None)
    model.graph.output.append(vi if vi is not None else onnx.ValueInfoProto(name=output))
    data = model.SerializeToString()
    return data, ort.InferenceSession(data, providers=["CPUExecutionProvider"]), output


def _dims(shape):
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


@functools.lru_cache(maxsize=16)
def _onnx_info_cached(path, output, size, mtime_ns):
    _, sess, _ = _onnx_bytes(path, output)
    inp = sess.get_inputs()[0]
    shape = _dims(inp.shape)
    if len(shape) != 4:
        raise _weights_error(f"--encoder-model {path}: input {inp.name!r} has shape {inp.shape}; "
                             "an image model takes [batch, C, H, W] or [batch, H, W, C]")
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        layout, channels, hw = "nchw", shape[1], shape[2:]
    elif shape[3] in (1, 3):
        layout, channels, hw = "nhwc", shape[3], shape[1:3]
    else:
        raise _weights_error(f"--encoder-model {path}: input {inp.name!r} has shape {inp.shape}; "
                             "neither NCHW nor NHWC with 1 or 3 channels")
    outs = {o.name: _dims(o.shape) for o in sess.get_outputs()}
    name = output or sess.get_outputs()[0].name
    out_shape = outs.get(name)
    return {"input": inp.name, "input_type": inp.type, "layout": layout, "channels": channels,
            "image_size": tuple(hw) if all(hw) else None, "batch": shape[0],
            "output": name, "output_shape": out_shape}


def onnx_info(path: str, output: str | None = None) -> dict:
    """The model's first input (``layout``, ``channels``, ``image_size``, fixed ``batch``) and
    the output read (``output``, ``output_shape`` with None for unknown dims)."""
    check_model_path("onnx", path)
    st = os.stat(path)
    return dict(_onnx_info_cached(os.path.abspath(path), output or None, st.st_size,
                                  st.st_mtime_ns))


def default_pool(kind: str, path: str, layer: str | None = None) -> str:
    """The ``--layer-pool`` used when none is given: ``cls`` for keras-hub models with a class
    token or a pooled embedding, else ``avg``; onnx: by the output's rank."""
    if kind == "keras-hub":
        if layer:
            return "avg"
        info = keras_hub_info(path)
        return "cls" if info["cls_token"] else "avg"
    shape = onnx_info(path, layer)["output_shape"]
    return {3: "cls", 4: "avg"}.get(len(shape) if shape else 2, "flatten")


def model_dim(kind: str, path: str, layer: str | None, pool: str):
    """Features per face, from the config or the ONNX graph (None when only running tells)."""
    if kind == "keras-hub":
        if layer:
            return None
        return keras_hub_info(path)["dims"].get(pool)
    info = onnx_info(path, layer)
    shape = info["output_shape"]
    if not shape:
        return None
    if pool == "flatten":
        return int(np.prod(shape[1:])) if all(shape[1:]) else None
    if len(shape) == 4:
        return shape[1] if info["layout"] == "nchw" else shape[3]
    return shape[-1] if len(shape) == 3 else None


def _pool_tokens(x: np.ndarray, pool: str, prefix: int, layout: str = "nhwc", what=""):
    """[N, D] from a model output: 2-D as is; 3-D tokens by CLS or patch mean; 4-D maps by
    spatial mean (``layout`` of the map)."""
    x = np.asarray(x, np.float32)
    if x.ndim == 2 and pool in ("cls", "flatten"):
        return x
    if pool == "flatten":
        return x.reshape(len(x), -1)
    if x.ndim == 3:
        if pool == "cls":
            return x[:, 0]
        return x[:, prefix:].mean(1)
    if x.ndim == 4 and pool == "avg":
        return x.mean(axis=(2, 3) if layout == "nchw" else (1, 2))
    raise _weights_error(f"{what}: --layer-pool {pool} does not apply to an output of shape "
                         f"{tuple(x.shape[1:])} per face"
                         + (" (use --layer-pool cls or flatten)" if x.ndim == 2 else
                            " (use --layer-pool avg or flatten)"))


class OnnxImageEncoder:
    """An ONNX image model (onnxruntime, CPU) read at output ``layer`` and pooled."""

    def __init__(self, path: str, layer: str | None = None, pool: str | None = None,
                 image_size=None, mean=(), std=(), channel_order=None, threads: int = 0):
        check_model_path("onnx", path)
        ort = _ort()
        info = onnx_info(path, layer)
        data, _, _ = _onnx_bytes(path, layer)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(data, sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.info = info
        self.path = path
        self.output = info["output"]
        self.pool = pool or default_pool("onnx", path, layer)
        self.prep = resolve_prep("onnx", path, image_size, mean, std, channel_order, layer)
        self.input_size = self.prep.size
        self.channels = 3
        self.dtype = np.float16 if "float16" in info["input_type"] else np.float32
        dim = model_dim("onnx", path, layer, self.pool)
        if dim is None:  # unknown from the graph: one zero face tells
            dim = self(np.zeros((1, *self.input_size, 3), np.uint8)).shape[1]
        self.dim = int(dim)

    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        return self.prep(faces).astype(self.dtype)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        x = self.preprocess(faces)
        step = 1 if self.info["batch"] == 1 else max(1, len(x))
        outs = [self.session.run([self.output], {self.info["input"]: x[i:i + step]})[0]
                for i in range(0, len(x), step)]
        return _pool_tokens(np.concatenate(outs), self.pool, 1, self.info["layout"],
                            f"{self.path}:{self.output}")


# -- keras-hub ----------------------------------------------------------------------


class KerasHubImageEncoder:
    """A keras-hub image backbone (local preset) cut to its image output and pooled."""

    def __init__(self, path: str, layer: str | None = None, pool: str | None = None,
                 image_size=None, mean=(), std=(), channel_order=None):
        info = keras_hub_info(path)
        try:
            import keras
            import keras_hub
        except ImportError as err:
            raise _weights_error("--encoder keras-hub needs keras-hub (pip install "
                                 f"'emobed_tf[keras-hub]'): {err}") from None
        self.path, self.info = path, info
        self.pool = pool or default_pool("keras-hub", path, layer)
        if self.pool not in ("cls", "avg"):
            raise _weights_error(f"--layer-pool {self.pool}: keras-hub image backbones pool by "
                                 "cls (class token or pooled embedding) or avg (patch tokens)")
        if self.pool == "cls" and not info["cls_token"] and not layer:
            raise _weights_error(f"--encoder-model {path}: a {info['class_name']} has no class "
                                 "token or pooled output; use --layer-pool avg")
        if info["output"] == "pooled" and self.pool == "avg" and not layer and (
                info["class_name"] != "CLIPBackbone"):
            raise _weights_error(f"--encoder-model {path}: {info['class_name']} pools its "
                                 "tokens itself; use --layer-pool cls")
        self.prep = resolve_prep("keras-hub", path, image_size, mean, std, channel_order)
        try:
            backbone = keras_hub.models.Backbone.from_preset(path)
        except Exception as err:
            raise _weights_error(f"--encoder-model {path}: cannot be loaded as a keras-hub "
                                 f"backbone ({' '.join(str(err).split())[:300]})") from None
        vision = getattr(backbone, "vision_encoder", None) or backbone
        if layer:
            try:
                out = vision.get_layer(layer).output
            except ValueError:
                names = [lay.name for lay in vision.layers]
                raise _weights_error(f"--layer {layer}: no such layer in {path} "
                                     f"(layers: {names})") from None
            self.model = keras.Model(vision.inputs[0], out)
        elif info["output"] == "pooled" and self.pool == "cls":
            inp = keras.Input(shape=tuple(vision.image_shape), name="images")
            self.model = keras.Model(inp, backbone.get_vision_embeddings(inp))
        else:
            self.model = keras.Model(vision.inputs[0], vision.outputs[0])
        self.prefix = info["prefix"]
        self.input_size = self.prep.size
        self.channels = 3
        shape = self.model.output.shape
        self.dim = int(shape[-1] if self.pool in ("cls", "avg") and len(shape) in (2, 3, 4)
                       else np.prod(shape[1:]))

    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        return self.prep(faces)

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        out = self.model(self.preprocess(faces), training=False)
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return _pool_tokens(np.asarray(out), self.pool, self.prefix, "nhwc",
                            f"{self.path}")


def load_encoder(kind: str, path: str, layer=None, pool=None, image_size=None, mean=(),
                 std=(), channel_order=None):
    """The image encoder of ``kind`` read from the local ``path``."""
    cls = {"keras-hub": KerasHubImageEncoder, "onnx": OnnxImageEncoder}[kind]
    return cls(path, layer, pool, image_size, mean, std, channel_order)
