"""A data folder's manifest: what the extraction wrote (shards, counts, statistics, labels).

:func:`load_manifest` reads and checks ``manifest.json``;
:func:`standardisation` is the one place that turns frame sums into the
mean and standard deviation the pipeline standardises with (a constant
feature, whose std is below :data:`STD_FLOOR`, gets std 1: centred, unscaled).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import numpy as np

from emobed_tf import io
from emobed_tf.configs import MODALITIES
from emobed_tf.records.schema import MANIFEST_NAME, SCHEMA_VERSION, SPLITS, TASKS, DataError

STD_FLOOR = 1e-8  # a feature whose std is below this is constant: std 1 (centred, unscaled)


def standardisation(total, total_sq, frames: int) -> tuple:
    """``(mean [D], std [D])`` float64 from the sum and the sum of squares of ``frames`` frames.

    >>> mean, std = standardisation(np.array([4.0, 6.0]), np.array([8.0, 18.0]), 2)
    >>> mean.tolist(), std.tolist()
    ([2.0, 3.0], [1.0, 1.0])
    """
    mean = total / frames
    std = np.sqrt(np.maximum(total_sq / frames - mean * mean, 0.0))
    std[std < STD_FLOOR] = 1.0
    return mean, std


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

    Example:

    >>> m = Manifest("toy", "classification", ("calm", "angry"), {"audio": ModalityInfo(dim=3)})
    >>> Manifest.from_json(m.to_json()) == m, m.num_classes
    (True, 2)
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
        """Writes ``data_dir/manifest.json`` atomically; returns its path."""
        path = os.path.join(data_dir, MANIFEST_NAME)
        io.write_json(path, self.to_json())
        return path


def load_manifest(data_dir: str) -> Manifest:
    """Reads and checks ``DATA_DIR/manifest.json``; raises DataError if unusable.

    The message names the manifest and the problem: missing, not UTF-8, not
    JSON (e.g. truncated), fields missing, another schema version, an
    unknown task, or example counts that disagree with the shards it lists.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = Manifest("toy", "regression", ("arousal",), {}).save(folder)
    >>> load_manifest(folder).task
    'regression'
    >>> with open(os.path.join(folder, MANIFEST_NAME), "w") as fh:
    ...     _ = fh.write('{"name": "toy", "ta')
    >>> load_manifest(folder)
    Traceback (most recent call last):
    ...
    emobed_tf.records.schema.DataError: .../manifest.json: unreadable manifest (not valid JSON: ...)
    """
    path = os.path.join(data_dir, MANIFEST_NAME)
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: data folder does not exist")
    if not os.path.isfile(path):
        raise DataError(
            f"{path}: no manifest.json in the data folder; write the data set with "
            "`python -m tfrecords_tools.extract ... --out DIR`"
        )
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: unreadable manifest (not UTF-8 text: byte {err.start} is "
                        f"{raw[err.start:err.start + 1]!r}); the file is corrupt, regenerate "
                        "the data set") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: unreadable manifest (not valid JSON: {err.msg}, line "
                        f"{err.lineno} column {err.colno}); the file is truncated or corrupt, "
                        "regenerate the data set") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: unreadable manifest (a JSON {type(d).__name__}, not an "
                        "object)")
    try:
        manifest = Manifest.from_json(d)
    except KeyError as err:
        raise DataError(f"{path}: unreadable manifest (field {err.args[0]!r} is "
                        "missing)") from None
    except (TypeError, ValueError, AttributeError) as err:
        raise DataError(f"{path}: unreadable manifest (a field has the wrong type or value: "
                        f"{err})") from None
    if manifest.schema_version != SCHEMA_VERSION:
        raise DataError(
            f"{path}: shards were written with TFRecord schema version "
            f"{manifest.schema_version}, this emobed_tf reads version {SCHEMA_VERSION}; "
            "regenerate them with tfrecords_tools"
        )
    if manifest.task not in TASKS:
        raise DataError(f"{path}: unknown task {manifest.task!r}, expected one of {TASKS}")
    for mod, info in manifest.modalities.items():
        for split in sorted(set(info.shards) | set(info.counts)):
            listed = sum(sh.examples for sh in info.shards.get(split, ()))
            if info.counts.get(split, 0) != listed:
                raise DataError(f"{path}: {mod} split {split!r} counts "
                                f"{info.counts.get(split, 0)} examples but its shards list "
                                f"{listed}; the manifest was edited or damaged, regenerate "
                                "the data set")
    return manifest
