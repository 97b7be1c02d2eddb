"""The TFRecord schema: the one place that spells feature keys.

Every writer (``emobed_tf.writer``, ``tfrecords_tools``) and every reader
(``emobed_tf.data``) goes through this module. One ``tf.train.Example`` holds
one item of one modality:

==================  ========  ===============================================
key                 type      meaning
==================  ========  ===============================================
``schema_version``  int64     :data:`SCHEMA_VERSION` of the writer
``modality``        bytes     ``"audio"`` or ``"video"``
``features``        bytes     float32 little-endian feature sequence, [T, D]
``shape``           int64[2]  ``[T, D]``
``label_class``     int64     class id, ``-1`` when the corpus has none
``label_dims``      float[]   per-frame dimensional labels, [T, K] (may be empty)
``label_dims_shape`` int64[2] ``[T, K]`` (``[0, 0]`` when absent)
``corpus``          bytes     corpus name
``speaker``         bytes     speaker or subject id
``recording``       bytes     recording / clip id
``split``           bytes     ``train`` / ``dev`` / ``test``
``meta``            bytes     optional JSON object text with corpus metadata
                              (e.g. RAVDESS intensity, statement, take id);
                              absent in older records, read as ``""``
==================  ========  ===============================================

The data set's ``manifest.json`` (:class:`Manifest`) describes the shards.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import numpy as np

SCHEMA_VERSION = 1
MODALITIES = ("audio", "video")
SPLITS = ("train", "dev", "test")
TASKS = ("classification", "regression")
MANIFEST_NAME = "manifest.json"

KEY_VERSION = "schema_version"
KEY_MODALITY = "modality"
KEY_FEATURES = "features"
KEY_SHAPE = "shape"
KEY_LABEL_CLASS = "label_class"
KEY_LABEL_DIMS = "label_dims"
KEY_LABEL_DIMS_SHAPE = "label_dims_shape"
KEY_CORPUS = "corpus"
KEY_SPEAKER = "speaker"
KEY_RECORDING = "recording"
KEY_SPLIT = "split"
KEY_META = "meta"
ID_KEYS = (KEY_CORPUS, KEY_SPEAKER, KEY_RECORDING, KEY_SPLIT)


class DataError(ValueError):
    """Bad input data: the message names the file or example and the problem."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One example of one modality, as written to and read from a shard.

    Args:
        modality: ``"audio"`` or ``"video"``.
        features: float array [T, D] (a 1-D array is read as one frame).
        label_class: class id, or -1 when the corpus has no class label.
        label_dims: per-frame dimensional labels [T, K] (e.g. arousal,
            valence), or None.
        corpus, speaker, recording, split: identifiers.
        meta: optional JSON object text (``""``: none), e.g.
            ``{"intensity": "strong", "take": "01-05-02-01-02-07"}``.
    """

    modality: str
    features: np.ndarray
    label_class: int = -1
    label_dims: np.ndarray | None = None
    corpus: str = ""
    speaker: str = ""
    recording: str = ""
    split: str = "train"
    meta: str = ""

    @property
    def example_id(self) -> str:
        return f"{self.corpus}/{self.split}/{self.modality}/{self.recording}"


def _bytes(values: Sequence[bytes]):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values: Sequence[int]):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def _floats(values):
    import tensorflow as tf

    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def as_feature_matrix(features, where: str = "") -> np.ndarray:
    """Returns ``features`` as a float32 [T, D] array or raises DataError."""
    arr = np.asarray(features, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{where}: features must be [T, D] with T, D > 0, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(
            f"{where}: features contain NaN/inf (first at frame {bad[0]}, dimension {bad[1]})"
        )
    return arr


def serialize_item(item: Item) -> bytes:
    """Encodes an :class:`Item` as a serialised ``tf.train.Example``."""
    import tensorflow as tf

    where = item.example_id
    if item.modality not in MODALITIES:
        raise DataError(f"{where}: unknown modality {item.modality!r}, expected one of {MODALITIES}")
    feats = as_feature_matrix(item.features, where)
    if item.label_dims is None:
        dims = np.zeros((0, 0), np.float32)
    else:
        dims = np.asarray(item.label_dims, np.float32)
        if dims.ndim == 1:
            dims = dims[:, None]
        if dims.ndim != 2 or not np.all(np.isfinite(dims)):
            raise DataError(f"{where}: label_dims must be a finite [T, K] array")
    feature = {
        KEY_VERSION: _ints([SCHEMA_VERSION]),
        KEY_MODALITY: _bytes([item.modality.encode()]),
        KEY_FEATURES: _bytes([feats.astype("<f4").tobytes()]),
        KEY_SHAPE: _ints(feats.shape),
        KEY_LABEL_CLASS: _ints([int(item.label_class)]),
        KEY_LABEL_DIMS: _floats(dims.reshape(-1).tolist()),
        KEY_LABEL_DIMS_SHAPE: _ints(dims.shape),
        KEY_CORPUS: _bytes([item.corpus.encode()]),
        KEY_SPEAKER: _bytes([item.speaker.encode()]),
        KEY_RECORDING: _bytes([item.recording.encode()]),
        KEY_SPLIT: _bytes([item.split.encode()]),
    }
    if item.meta:  # optional: records without metadata stay as they were
        try:
            ok = isinstance(json.loads(item.meta), dict)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DataError(f"{where}: meta must be the text of a JSON object, got {item.meta!r}")
        feature[KEY_META] = _bytes([item.meta.encode()])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def feature_spec() -> dict:
    """The ``tf.io.parse_single_example`` spec of a schema-1 record (``meta`` optional)."""
    import tensorflow as tf

    return {
        KEY_VERSION: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        KEY_MODALITY: tf.io.FixedLenFeature([], tf.string),
        KEY_FEATURES: tf.io.FixedLenFeature([], tf.string),
        KEY_SHAPE: tf.io.FixedLenFeature([2], tf.int64),
        KEY_LABEL_CLASS: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        KEY_LABEL_DIMS: tf.io.VarLenFeature(tf.float32),
        KEY_LABEL_DIMS_SHAPE: tf.io.FixedLenFeature([2], tf.int64, default_value=[0, 0]),
        KEY_CORPUS: tf.io.FixedLenFeature([], tf.string, default_value=""),
        KEY_SPEAKER: tf.io.FixedLenFeature([], tf.string, default_value=""),
        KEY_RECORDING: tf.io.FixedLenFeature([], tf.string, default_value=""),
        KEY_SPLIT: tf.io.FixedLenFeature([], tf.string, default_value=""),
        KEY_META: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }


def parse_record(record, source=""):
    """Parses one serialised record into tensors (graph-mode friendly).

    Returns a dict with ``features`` [T, D] float32, ``label_class`` int32,
    ``label_dims`` [T, K] float32 and the string ids. Records written with
    another schema version, whose feature bytes do not match their shape, or
    that hold NaN/inf fail with an error that names ``source`` (the shard
    path) and the recording id.
    """
    import tensorflow as tf

    ex = tf.io.parse_single_example(record, feature_spec())
    rec = ex[KEY_RECORDING]
    version_ok = tf.equal(ex[KEY_VERSION], SCHEMA_VERSION)
    check_version = tf.debugging.Assert(
        version_ok,
        [
            "Record of another TFRecord schema version in shard",
            source,
            "recording",
            rec,
            "version",
            ex[KEY_VERSION],
            f"expected {SCHEMA_VERSION}; regenerate the shards with tfrecords_tools",
        ],
    )
    with tf.control_dependencies([check_version]):
        flat = tf.io.decode_raw(ex[KEY_FEATURES], tf.float32, little_endian=True)
    shape = tf.cast(ex[KEY_SHAPE], tf.int32)
    size_ok = tf.equal(tf.size(flat), shape[0] * shape[1])
    check_size = tf.debugging.Assert(
        size_ok,
        ["Corrupt record in shard", source, "recording", rec, "feature bytes do not match shape", shape],
    )
    with tf.control_dependencies([check_size]):
        feats = tf.reshape(flat, shape)
    finite = tf.reduce_all(tf.math.is_finite(feats))
    check_finite = tf.debugging.Assert(
        finite, ["NaN/inf features in shard", source, "recording", rec]
    )
    with tf.control_dependencies([check_finite]):
        feats = tf.identity(feats)
    dshape = tf.cast(ex[KEY_LABEL_DIMS_SHAPE], tf.int32)
    dims = tf.reshape(tf.sparse.to_dense(ex[KEY_LABEL_DIMS]), dshape)
    return {
        "features": feats,
        "label_class": tf.cast(ex[KEY_LABEL_CLASS], tf.int32),
        "label_dims": dims,
        "modality": ex[KEY_MODALITY],
        KEY_CORPUS: ex[KEY_CORPUS],
        KEY_SPEAKER: ex[KEY_SPEAKER],
        KEY_RECORDING: rec,
        KEY_SPLIT: ex[KEY_SPLIT],
    }


def decode_example(serialized: bytes) -> Item:
    """Eager, pure-Python decoding of one record into an :class:`Item`."""
    import tensorflow as tf

    ex = tf.train.Example.FromString(serialized)
    f = ex.features.feature

    def one_bytes(k):
        return f[k].bytes_list.value[0].decode() if f[k].bytes_list.value else ""

    version = f[KEY_VERSION].int64_list.value[0] if f[KEY_VERSION].int64_list.value else 0
    if version != SCHEMA_VERSION:
        raise DataError(
            f"record {one_bytes(KEY_RECORDING)!r} has schema version {version}, "
            f"expected {SCHEMA_VERSION}; regenerate the shards with tfrecords_tools"
        )
    shape = tuple(f[KEY_SHAPE].int64_list.value)
    feats = np.frombuffer(f[KEY_FEATURES].bytes_list.value[0], dtype="<f4")
    if len(shape) != 2 or feats.size != shape[0] * shape[1]:
        raise DataError(f"record {one_bytes(KEY_RECORDING)!r}: feature bytes do not match shape {shape}")
    dshape = tuple(f[KEY_LABEL_DIMS_SHAPE].int64_list.value) or (0, 0)
    dims = np.asarray(f[KEY_LABEL_DIMS].float_list.value, np.float32).reshape(dshape)
    return Item(
        modality=one_bytes(KEY_MODALITY),
        features=feats.reshape(shape).astype(np.float32),
        label_class=int(f[KEY_LABEL_CLASS].int64_list.value[0]),
        label_dims=dims if dims.size else None,
        corpus=one_bytes(KEY_CORPUS),
        speaker=one_bytes(KEY_SPEAKER),
        recording=one_bytes(KEY_RECORDING),
        split=one_bytes(KEY_SPLIT),
        meta=one_bytes(KEY_META) if KEY_META in f else "",
    )


# --------------------------------------------------------------------------
# manifest.json


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """One shard file (path relative to the data folder)."""

    path: str
    examples: int
    bytes: int

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ModalityInfo:
    """What the manifest says about one modality of a data set."""

    dim: int
    feature_set: str = ""
    shards: Mapping[str, tuple] = dataclasses.field(default_factory=dict)  # split -> ShardInfo...
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)  # split -> examples
    frames: Mapping[str, int] = dataclasses.field(default_factory=dict)  # split -> frames
    mean: tuple = ()
    std: tuple = ()

    def to_json(self) -> dict:
        return {
            "dim": self.dim,
            "feature_set": self.feature_set,
            "shards": {s: [sh.to_json() for sh in v] for s, v in self.shards.items()},
            "counts": dict(self.counts),
            "frames": dict(self.frames),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ModalityInfo":
        return cls(
            dim=int(d["dim"]),
            feature_set=d.get("feature_set", ""),
            shards={s: tuple(ShardInfo(**sh) for sh in v) for s, v in d.get("shards", {}).items()},
            counts={k: int(v) for k, v in d.get("counts", {}).items()},
            frames={k: int(v) for k, v in d.get("frames", {}).items()},
            mean=tuple(float(x) for x in d.get("mean", ())),
            std=tuple(float(x) for x in d.get("std", ())),
        )


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A data set's ``manifest.json``.

    Args:
        name: data set name.
        task: ``"classification"`` or ``"regression"``.
        label_names: class names (classification) or the dimension names
            stored in ``label_dims`` (regression, e.g. arousal, valence).
        modalities: ``{"audio": ModalityInfo, "video": ModalityInfo}``
            (either may be missing).
        frame_step_s: seconds between frames of continuous labels.
        dim_names: names of the columns of ``label_dims`` when a
            classification corpus also carries dimensional labels (OMG).
        schema_version: the schema the shards were written with.
        compression: ``""`` or ``"GZIP"``.
    """

    name: str
    task: str
    label_names: tuple
    modalities: Mapping[str, ModalityInfo]
    frame_step_s: float = 0.04
    dim_names: tuple = ()
    schema_version: int = SCHEMA_VERSION
    compression: str = ""
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "task": self.task,
            "label_names": list(self.label_names),
            "dim_names": list(self.dim_names),
            "frame_step_s": self.frame_step_s,
            "compression": self.compression,
            "modalities": {m: info.to_json() for m, info in self.modalities.items()},
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Manifest":
        return cls(
            name=d["name"],
            task=d["task"],
            label_names=tuple(d["label_names"]),
            modalities={m: ModalityInfo.from_json(v) for m, v in d["modalities"].items()},
            frame_step_s=float(d.get("frame_step_s", 0.04)),
            dim_names=tuple(d.get("dim_names", ())),
            schema_version=int(d.get("schema_version", 0)),
            compression=d.get("compression", ""),
            extra=d.get("extra", {}),
        )

    def save(self, data_dir: str) -> str:
        path = os.path.join(data_dir, MANIFEST_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.to_json(), fh, indent=1)
        os.replace(tmp, path)
        return path


def load_manifest(data_dir: str) -> Manifest:
    """Reads and checks ``DATA_DIR/manifest.json``; raises DataError if unusable."""
    path = os.path.join(data_dir, MANIFEST_NAME)
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: data folder does not exist")
    if not os.path.isfile(path):
        raise DataError(
            f"{path}: no manifest.json in the data folder; write the data set with "
            "`python -m tfrecords_tools.extract ... --out DIR`"
        )
    try:
        with open(path) as fh:
            raw = json.load(fh)
        manifest = Manifest.from_json(raw)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: unreadable manifest ({err})") from err
    if manifest.schema_version != SCHEMA_VERSION:
        raise DataError(
            f"{path}: shards were written with TFRecord schema version "
            f"{manifest.schema_version}, this emobed_tf reads version {SCHEMA_VERSION}; "
            "regenerate them with tfrecords_tools"
        )
    if manifest.task not in TASKS:
        raise DataError(f"{path}: unknown task {manifest.task!r}, expected one of {TASKS}")
    return manifest
