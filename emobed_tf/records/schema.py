"""The TFRecord schema: the one place that spells feature keys and record checks.

Every writer (``emobed_tf.records.writer``, ``tfrecords_tools``) and every reader
(``emobed_tf.data.pipeline``) goes through this module. One ``tf.train.Example`` holds
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

What a reader demands of a record is the table :data:`RECORD_CHECKS`: the
eager decoder (:func:`decode_example`, used by ``verify_shards``) and the
graph parser (``emobed_tf.records.parse.parse_batch``) both evaluate it, and every
failure message starts with :data:`BAD_RECORD`.

The data set's ``manifest.json`` (:class:`Manifest`) describes the shards.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from emobed_tf.configs import MODALITIES
from emobed_tf.errors import EmobedError

SCHEMA_VERSION = 1
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

# key: (value list kind, number of values (None: any), default (None: required))
_LAYOUT = {
    KEY_VERSION: ("int64", 1, 0),
    KEY_MODALITY: ("bytes", 1, None),
    KEY_FEATURES: ("bytes", 1, None),
    KEY_SHAPE: ("int64", 2, None),
    KEY_LABEL_CLASS: ("int64", 1, -1),
    KEY_LABEL_DIMS: ("float", None, ()),
    KEY_LABEL_DIMS_SHAPE: ("int64", 2, (0, 0)),
    KEY_CORPUS: ("bytes", 1, ""),
    KEY_SPEAKER: ("bytes", 1, ""),
    KEY_RECORDING: ("bytes", 1, ""),
    KEY_SPLIT: ("bytes", 1, ""),
    KEY_META: ("bytes", 1, ""),
}

BAD_RECORD = "bad record"
"""How every failed record check begins: in eager code, in the graph's
``tf.debugging.Assert`` messages, and where ``emobed_tf.records.parse.data_error_from``
recognises them."""


class DataError(EmobedError, ValueError):
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

    Example:

    >>> Item("audio", np.zeros((2, 3)), 1, corpus="toy", recording="r1").example_id
    'toy/train/audio/r1'
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


# --------------------------------------------------------------------------
# what a reader demands of a record


@dataclasses.dataclass(frozen=True)
class Expected:
    """What a reader expects of every record; ``None`` leaves a property unchecked.

    Args:
        modality: the modality of the shards being read.
        dim: the feature dimension D the manifest declares.
        num_classes: classification: labels must lie in ``0..num_classes-1``.
        label_width: regression: per-frame labels must be [T, label_width].
        manifest: the ``manifest.json`` path named in messages.

    Example:

    >>> from emobed_tf.records.manifest import Manifest, ModalityInfo
    >>> m = Manifest("toy", "classification", ("a", "b"), {"audio": ModalityInfo(dim=3)})
    >>> Expected.of(m, "audio", "/data/toy")
    Expected(modality='audio', dim=3, num_classes=2, label_width=None,
             manifest='/data/toy/manifest.json')
    """

    modality: str | None = None
    dim: int | None = None
    num_classes: int | None = None
    label_width: int | None = None
    manifest: str = ""

    @classmethod
    def of(cls, manifest, modality: str, data_dir: str = "") -> "Expected":
        """What ``manifest`` (a :class:`~emobed_tf.records.manifest.Manifest` in ``data_dir``) promises about the records of ``modality``."""
        n = len(manifest.label_names)
        classification = manifest.task == "classification"
        return cls(modality=modality, dim=manifest.modalities[modality].dim,
                   num_classes=n if classification else None,
                   label_width=None if classification else n,
                   manifest=os.path.join(data_dir, MANIFEST_NAME))

    def fields(self) -> dict:
        """The values message templates may name besides the record's facts."""
        return {"expected_modality": self.modality, "expected_dim": self.dim,
                "last_class": None if self.num_classes is None else self.num_classes - 1,
                "expected_width": self.label_width, "manifest": self.manifest or MANIFEST_NAME}


@dataclasses.dataclass(frozen=True)
class RecordCheck:
    """One rule every record must satisfy.

    Args:
        ok: ``ok(facts, expected)``, true where a record passes. ``facts``
            are what both decoders derive from a record: ``version``,
            ``modality`` (text), the feature shape ``frames`` x ``dim`` and
            its byte count ``nbytes``, ``finite`` (every feature value is),
            ``label_class``, the per-frame label shape ``label_frames`` x
            ``label_width`` and ``label_count`` (values stored). They are
            Python scalars in eager code and ``[B]`` tensors in the graph,
            so a rule uses only ``==``, ``<``, ``>=``, ``>`` and ``&``,
            which mean the same on both.
        problem: the message template; its ``{fields}`` are facts and
            :meth:`Expected.fields`.
        needs: the :class:`Expected` attribute the rule compares with
            (``""``: always applies); a rule whose expectation is ``None``
            is skipped.
    """

    ok: Callable
    problem: str
    needs: str = ""

    def applies(self, expected: Expected) -> bool:
        return not self.needs or getattr(expected, self.needs) is not None


RECORD_CHECKS = (
    RecordCheck(lambda f, e: f["version"] == SCHEMA_VERSION,
                "written with another TFRecord schema version {version} (this emobed_tf "
                f"reads version {SCHEMA_VERSION}); regenerate the shards with tfrecords_tools"),
    RecordCheck(lambda f, e: (f["frames"] > 0) & (f["dim"] > 0)
                & (f["nbytes"] == f["frames"] * f["dim"] * 4),
                "feature bytes do not match shape [{frames}, {dim}] ({nbytes} bytes; "
                "T, D > 0 and 4 bytes per value expected)"),
    RecordCheck(lambda f, e: (f["label_frames"] >= 0) & (f["label_width"] >= 0)
                & (f["label_count"] == f["label_frames"] * f["label_width"]),
                "label_dims hold {label_count} values but label_dims_shape is "
                "[{label_frames}, {label_width}]"),
    RecordCheck(lambda f, e: f["modality"] == e.modality,
                "a {modality} record where {expected_modality} records are expected",
                needs="modality"),
    RecordCheck(lambda f, e: f["dim"] == e.dim,
                "feature dimension {dim} differs from the manifest {manifest}, which says "
                "{expected_dim}", needs="dim"),
    RecordCheck(lambda f, e: f["finite"], "NaN/inf features"),
    RecordCheck(lambda f, e: (f["label_class"] >= 0) & (f["label_class"] < e.num_classes),
                "label {label_class} outside the label set (labels are 0..{last_class})",
                needs="num_classes"),
    RecordCheck(lambda f, e: (f["label_frames"] == f["frames"])
                & (f["label_width"] == e.label_width),
                "per-frame labels of shape [{label_frames}, {label_width}] do not match the "
                "{frames} feature frames and {expected_width} label dimensions",
                needs="label_width"),
)
"""The checks every reader applies to every record, in the order they are
reported (the first failing one names the problem)."""


RECORD_MESSAGE = BAD_RECORD + " '{recording}'{where}: {problem}"
"""The one message format of a failed record check; ``where`` is ``" in SHARD"`` or empty."""


def bad_record(recording: str, source: str, problem: str) -> str:
    """:data:`RECORD_MESSAGE` for one record (``source``: its shard, may be empty).

    >>> bad_record("rec7", "/data/audio-train-00000.tfrecord", "NaN/inf features")
    "bad record 'rec7' in /data/audio-train-00000.tfrecord: NaN/inf features"
    """
    return RECORD_MESSAGE.format(recording=recording, where=f" in {source}" if source else "",
                                 problem=problem)


def first_problem(facts: Mapping[str, Any], expected: Expected = Expected()) -> str | None:
    """The message of the first :data:`RECORD_CHECKS` rule one record fails, or None.

    ``facts`` are one record's facts (see :class:`RecordCheck`), as Python scalars.

    >>> facts = dict(version=1, modality="audio", frames=2, dim=3, nbytes=24, finite=True,
    ...              label_class=5, label_frames=0, label_width=0, label_count=0)
    >>> first_problem(facts) is None
    True
    >>> first_problem(facts, Expected(num_classes=4))
    'label 5 outside the label set (labels are 0..3)'
    """
    values = {**expected.fields(), **facts}
    for check in RECORD_CHECKS:
        if check.applies(expected) and not bool(np.all(check.ok(facts, expected))):
            return check.problem.format(**values)
    return None


# --------------------------------------------------------------------------
# writing and reading one record


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
    """Returns ``features`` as a float32 [T, D] array or raises DataError.

    >>> as_feature_matrix([1, 2, 3]).shape  # one frame
    (1, 3)
    >>> as_feature_matrix([[1.0, float("nan")]], "toy/r1")
    Traceback (most recent call last):
    ...
    emobed_tf.records.schema.DataError: toy/r1: features contain NaN/inf (first at frame 0, dimension 1)
    """
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
    """Encodes an :class:`Item` as a serialised ``tf.train.Example``.

    The bytes depend only on the item: the feature map is written in sorted
    key order (``deterministic=True``), so every process and every rerun
    writes the same records.

    >>> rec = serialize_item(Item("audio", np.ones((2, 3)), 1, recording="r1"))
    >>> rec == serialize_item(Item("audio", np.ones((2, 3)), 1, recording="r1"))
    True
    >>> decode_example(rec).features.shape
    (2, 3)
    """
    import tensorflow as tf

    where = item.example_id
    if item.modality not in MODALITIES:
        raise DataError(f"{where}: unknown modality {item.modality!r}, expected one of "
                        f"{MODALITIES}")
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
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def feature_spec() -> dict:
    """The ``tf.io.parse_example`` spec of a schema-1 record (``meta`` optional).

    >>> sorted(k for k, v in feature_spec().items() if getattr(v, "default_value", 0) is None)
    ['features', 'modality', 'shape']
    """
    import tensorflow as tf

    dtypes = {"int64": tf.int64, "bytes": tf.string, "float": tf.float32}
    spec = {}
    for key, (kind, count, default) in _LAYOUT.items():
        if count is None:
            spec[key] = tf.io.VarLenFeature(dtypes[kind])
        else:
            spec[key] = tf.io.FixedLenFeature([] if count == 1 else [count], dtypes[kind],
                                              default_value=default)
    return spec


_MISSING = {"int64": 0, "bytes": b"", "float": 0.0}


def _example_values(serialized: bytes, source: str) -> tuple:
    """``({key: value}, problems)`` of one record laid out as :data:`_LAYOUT` says.

    Absent optional features get their defaults; a feature that is missing,
    of another kind or of another length is listed in ``problems`` and read
    as zeros (or empty text) so that the record's other facts can still be
    checked.
    """
    import tensorflow as tf

    try:
        ex = tf.train.Example.FromString(serialized)
    except Exception as err:  # protobuf DecodeError
        raise DataError(f"{BAD_RECORD} in {source or 'a shard'}: not a tf.train.Example "
                        f"({err})") from None
    f = ex.features.feature
    out, problems = {}, []
    for key, (kind, count, default) in _LAYOUT.items():
        feat = f[key] if key in f else None
        has = feat.WhichOneof("kind") if feat is not None else None
        values = list(getattr(feat, f"{kind}_list").value) if has == f"{kind}_list" else []
        if has not in (None, f"{kind}_list"):
            problems.append(f"feature {key!r} holds a {has}, not a {kind}_list")
        elif not values and count is not None and default is None:
            problems.append(f"required feature {key!r} is missing")
        elif values and count is not None and len(values) != count:
            problems.append(f"feature {key!r} holds {len(values)} values, expected {count}")
            values = []
        if count is not None and not values:
            if default is None:
                default = _MISSING[kind] if count == 1 else [_MISSING[kind]] * count
            values = [default] if count == 1 else list(default)
        if kind == "bytes" and key != KEY_FEATURES:
            values = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x
                      for x in values]
        out[key] = values[0] if count == 1 else values
    return out, problems


def decode_example(serialized: bytes, source: str = "", expected: Expected = Expected()) -> Item:
    """Eager, pure-Python decoding of one record into an :class:`Item`.

    The record must pass :data:`RECORD_CHECKS` (those ``expected`` enables);
    otherwise a DataError names ``source`` (the shard), the recording and
    the problem.

    >>> rec = serialize_item(Item("video", np.ones((1, 4)), 2, recording="r9"))
    >>> decode_example(rec).label_class
    2
    >>> decode_example(rec, "v.tfrecord", Expected(num_classes=2))
    Traceback (most recent call last):
    ...
    emobed_tf.records.schema.DataError: bad record 'r9' in v.tfrecord: label 2 outside the label set
    (labels are 0..1)
    """
    v, layout_problems = _example_values(serialized, source)
    frames, dim = (int(x) for x in v[KEY_SHAPE])
    raw = v[KEY_FEATURES]
    feats = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4")
    label_frames, label_width = (int(x) for x in v[KEY_LABEL_DIMS_SHAPE])
    facts = {"version": int(v[KEY_VERSION]), "modality": v[KEY_MODALITY], "frames": frames,
             "dim": dim, "nbytes": len(raw), "finite": bool(np.all(np.isfinite(feats))),
             "label_class": int(v[KEY_LABEL_CLASS]), "label_frames": label_frames,
             "label_width": label_width, "label_count": len(v[KEY_LABEL_DIMS])}
    problem = first_problem(facts, expected)
    if layout_problems and facts["version"] == SCHEMA_VERSION:
        problem = "; ".join(layout_problems)  # another version: say that, not its layout
    if problem is not None:
        raise DataError(bad_record(v[KEY_RECORDING], source, problem))
    dims = np.asarray(v[KEY_LABEL_DIMS], np.float32).reshape(label_frames, label_width)
    return Item(
        modality=v[KEY_MODALITY],
        features=feats.reshape(frames, dim).astype(np.float32),
        label_class=int(v[KEY_LABEL_CLASS]),
        label_dims=dims if dims.size else None,
        corpus=v[KEY_CORPUS],
        speaker=v[KEY_SPEAKER],
        recording=v[KEY_RECORDING],
        split=v[KEY_SPLIT],
        meta=v[KEY_META],
    )


# --------------------------------------------------------------------------
# manifest.json

