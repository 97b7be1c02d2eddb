"""Sharded, atomic TFRecord writing and the data set manifest.

``DatasetWriter`` is what every producer of training data uses (the demo
corpora, ``tfrecords_tools``): it validates each item against the declared
dimensions and label set, spreads items over size-bounded shards per
modality and split, accumulates training-set statistics and finally writes
``manifest.json``. Shards are written to ``*.tmp`` and renamed when complete,
so a crash never leaves a half shard under a final name, and the manifest is
written atomically. The bytes depend only on the items
(``schema.serialize_item`` is deterministic): writing the same items again
gives identical files.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from emobed_tf import io
from emobed_tf.records import schema
from emobed_tf.records.manifest import Manifest, ModalityInfo, ShardInfo, standardisation
from emobed_tf.records.schema import DataError, Item

DEFAULT_MAX_SHARD_BYTES = 64 * 1024 * 1024


class ShardWriter:
    """Writes records into ``{prefix}-00000.tfrecord``, ``-00001`` ... shards.

    A shard is closed once it holds ``max_bytes`` (before compression) and the
    next record opens a new one. Each shard is written under ``.tmp`` and
    renamed on close.

    Args:
        directory: output folder (created).
        prefix: file name prefix, e.g. ``"audio-train"``.
        max_bytes: size bound of one shard.
        compression: ``""`` or ``"GZIP"``.
        root: shard paths are recorded relative to this folder (default:
            ``directory``).

    Example:

    >>> import tempfile
    >>> w = ShardWriter(tempfile.mkdtemp(), "audio-train", max_bytes=5)
    >>> for record in (b"abc", b"defgh", b"ij"):
    ...     w.write(record)
    >>> [(s.path, s.examples) for s in w.close()]
    [('audio-train-00000.tfrecord', 2), ('audio-train-00001.tfrecord', 1)]
    """

    def __init__(self, directory: str, prefix: str, max_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                 compression: str = "", root: str | None = None):
        self.directory = directory
        self._root = root or directory
        self.prefix = prefix
        self.max_bytes = int(max_bytes)
        self.compression = compression
        self._writer = None
        self._tmp = None
        self._final = None
        self._count = 0
        self._bytes = 0
        self.shards: list[ShardInfo] = []
        os.makedirs(directory, exist_ok=True)

    def _open(self):
        import tensorflow as tf

        ext = ".tfrecord.gz" if self.compression == "GZIP" else ".tfrecord"
        name = f"{self.prefix}-{len(self.shards):05d}{ext}"
        self._final = os.path.join(self.directory, name)
        self._tmp = io.temp_path(self._final)
        options = tf.io.TFRecordOptions(compression_type=self.compression or None)
        self._writer = tf.io.TFRecordWriter(self._tmp, options)
        self._count = 0
        self._bytes = 0

    def _close_current(self):
        if self._writer is None:
            return
        self._writer.close()
        os.replace(self._tmp, self._final)
        rel = os.path.relpath(self._final, self._root)
        self.shards.append(ShardInfo(rel, self._count, os.path.getsize(self._final)))
        self._writer = None

    def write(self, record: bytes) -> None:
        """Appends one serialised record, opening a shard or closing a full one."""
        if self._writer is None:
            self._open()
        self._writer.write(record)
        self._count += 1
        self._bytes += len(record)
        if self._bytes >= self.max_bytes:
            self._close_current()

    def close(self) -> list[ShardInfo]:
        """Finishes the open shard; returns every finished shard."""
        self._close_current()
        return self.shards

    def abort(self) -> list[ShardInfo]:
        """Drops the open, unfinished shard (no file is left); finished shards are kept.

        >>> import os, tempfile
        >>> w = ShardWriter(tempfile.mkdtemp(), "p")
        >>> w.write(b"abc")
        >>> w.abort(), os.listdir(w.directory)
        ([], [])
        """
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            if os.path.exists(self._tmp):
                os.remove(self._tmp)
        return self.shards


class _RunningStats:
    """Frame-level sums for mean and standard deviation (float64)."""

    def __init__(self, dim: int):
        self.n = 0
        self.sum = np.zeros(dim, np.float64)
        self.sumsq = np.zeros(dim, np.float64)

    def update(self, feats: np.ndarray) -> None:
        f = feats.astype(np.float64)
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.sumsq += (f * f).sum(0)

    def finalize(self):
        if self.n == 0:
            return (), ()
        mean, std = standardisation(self.sum, self.sumsq, self.n)
        return tuple(mean.tolist()), tuple(std.tolist())


class DatasetWriter:
    """Writes a data set folder: shards per modality and split plus a manifest.

    Args:
        out_dir: the data folder (``out_dir/audio/``, ``out_dir/video/``,
            ``out_dir/manifest.json``).
        name: data set name written to the manifest.
        task: ``"classification"`` or ``"regression"``.
        label_names: class names, or the dimension names for regression.
        dims: feature dimension per modality, e.g. ``{"audio": 88}``.
        feature_sets: optional feature set name per modality.
        frame_step_s: frame step of continuous labels.
        dim_names: names of ``label_dims`` columns for classification corpora
            that also carry dimensional labels.
        compression: ``""`` or ``"GZIP"``.
        max_shard_bytes: shard size bound.
        overwrite: allow writing where a manifest already exists.

    Example:

    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "toy")
    >>> with DatasetWriter(out, "toy", "classification", ["a", "b"],
    ...                    {"audio": 3}) as w:
    ...     w.add(Item("audio", np.ones((2, 3)), label_class=1, recording="r1"))
    >>> w.manifest.modalities["audio"].counts["train"]
    1
    """

    def __init__(self, out_dir: str, name: str, task: str, label_names: Sequence[str],
                 dims: Mapping[str, int], feature_sets: Mapping[str, str] | None = None,
                 frame_step_s: float = 0.04, dim_names: Sequence[str] = (),
                 compression: str = "", max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                 overwrite: bool = False, extra: Mapping | None = None):
        if task not in schema.TASKS:
            raise ValueError(f"task must be one of {schema.TASKS}, got {task!r}")
        for m in dims:
            if m not in schema.MODALITIES:
                raise ValueError(f"unknown modality {m!r}, expected one of {schema.MODALITIES}")
        manifest_path = os.path.join(out_dir, schema.MANIFEST_NAME)
        if os.path.exists(manifest_path) and not overwrite:
            raise FileExistsError(
                f"{manifest_path} already exists; refusing to overwrite a written data set "
                "(pass overwrite=True / --overwrite, or choose another folder)"
            )
        self.out_dir = out_dir
        self.name = name
        self.task = task
        self.label_names = tuple(label_names)
        self.dims = dict(dims)
        self.feature_sets = dict(feature_sets or {})
        self.frame_step_s = frame_step_s
        self.dim_names = tuple(dim_names)
        self.compression = compression
        self.max_shard_bytes = max_shard_bytes
        self.extra = dict(extra or {})
        self._writers: dict = {}
        self._counts: dict = {}
        self._frames: dict = {}
        self._stats = {m: _RunningStats(d) for m, d in self.dims.items()}
        self.manifest: Manifest | None = None
        os.makedirs(out_dir, exist_ok=True)

    def _check(self, item: Item) -> None:
        where = item.example_id
        if item.modality not in self.dims:
            raise DataError(f"{where}: modality {item.modality!r} not declared for this data set "
                            f"(declared: {sorted(self.dims)})")
        if item.split not in schema.SPLITS:
            raise DataError(f"{where}: unknown split {item.split!r}, expected one of "
                            f"{schema.SPLITS}")
        feats = schema.as_feature_matrix(item.features, where)
        if feats.shape[1] != self.dims[item.modality]:
            raise DataError(f"{where}: feature dimension {feats.shape[1]} differs from the "
                            f"declared {item.modality} dimension {self.dims[item.modality]}")
        if self.task == "classification":
            if not 0 <= item.label_class < len(self.label_names):
                raise DataError(f"{where}: label {item.label_class} outside the label set "
                                f"0..{len(self.label_names) - 1} {list(self.label_names)}")
        else:
            if item.label_dims is None:
                raise DataError(f"{where}: regression item without label_dims")
            lab = np.asarray(item.label_dims)
            lab = lab[:, None] if lab.ndim == 1 else lab
            if lab.shape != (feats.shape[0], len(self.label_names)):
                raise DataError(f"{where}: label_dims shape {lab.shape} should be "
                                f"[{feats.shape[0]} frames, {len(self.label_names)} dims "
                                f"{list(self.label_names)}]")
            if not np.all(np.isfinite(lab)):
                raise DataError(f"{where}: label_dims contain NaN/inf")

    def add(self, item: Item) -> None:
        """Validates and writes one item (raises DataError naming the item if it is unfit)."""
        self._check(item)
        record = schema.serialize_item(item)
        key = (item.modality, item.split)
        if key not in self._writers:
            w = ShardWriter(os.path.join(self.out_dir, item.modality),
                            f"{item.modality}-{item.split}", self.max_shard_bytes,
                            self.compression, root=self.out_dir)
            self._writers[key] = w
            self._counts[key] = 0
            self._frames[key] = 0
        self._writers[key].write(record)
        self._counts[key] += 1
        feats = np.asarray(item.features, np.float32)
        feats = feats[None] if feats.ndim == 1 else feats
        self._frames[key] += feats.shape[0]
        if item.split == "train":
            self._stats[item.modality].update(feats)

    def close(self) -> Manifest:
        """Closes all shards and writes ``manifest.json`` (atomically); returns the manifest."""
        mods = {}
        for m, dim in self.dims.items():
            shards = {s: tuple(self._writers[(m, s)].close())
                      for (mm, s) in self._writers if mm == m}
            mean, std = self._stats[m].finalize()
            mods[m] = ModalityInfo(
                dim=dim, feature_set=self.feature_sets.get(m, ""), shards=shards,
                counts={s: self._counts[(m, s)] for (mm, s) in self._counts if mm == m},
                frames={s: self._frames[(m, s)] for (mm, s) in self._frames if mm == m},
                mean=mean, std=std)
        self.manifest = Manifest(self.name, self.task, self.label_names, mods,
                                 self.frame_step_s, self.dim_names, schema.SCHEMA_VERSION,
                                 self.compression, self.extra)
        self.manifest.save(self.out_dir)
        return self.manifest

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # keep finished shards, but write no manifest for a failed data set
            for w in self._writers.values():
                w.abort()
        return False
