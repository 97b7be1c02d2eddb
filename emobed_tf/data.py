"""The ``tf.data`` input pipeline: shards on disk to (mixed) minibatches.

``make_modality_dataset`` serves one modality (classic training,
evaluation, inference); ``make_mixed_dataset`` zips two independently
shuffled modality streams into minibatches that hold audio *and* video
examples which are not paired and may come from different corpora::

    {"audio": {"features": [Ba, Ta, Da], "mask": [Ba, Ta], "label": ...},
     "video": {"features": [Bv, Tv, Dv], "mask": [Bv, Tv], "label": ...}}

The target modality's stream defines the epoch; the auxiliary stream
repeats. Labels are ``[B]`` class ids (classification) or ``[B, T, K]``
per-frame values (regression). Features are standardised online with the
training-set statistics in the manifest.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np

from emobed_tf import schema
from emobed_tf.schema import DataError, Manifest

AUTOTUNE = -1


@dataclasses.dataclass(frozen=True)
class Source:
    """One modality's data: a data folder and its manifest.

    Audio and video may come from different folders (different corpora);
    they must agree on the task and the label set.

    ``speakers`` (set by :func:`fold_view`) assigns the partitions at read
    time: ``{split: speaker ids}``, every split reading the records of all
    the extraction's shards whose speaker is listed. ``None``: the splits
    written at extraction time.
    """

    data_dir: str
    manifest: Manifest
    speakers: Mapping[str, tuple] | None = None

    @classmethod
    def open(cls, data_dir: str) -> "Source":
        return cls(data_dir, schema.load_manifest(data_dir))

    def speaker_filter(self, split: str):
        """The speaker ids ``split`` keeps, or None when it keeps every record read."""
        if self.speakers is None:
            return None
        return tuple(self.speakers.get(split, ()))


@dataclasses.dataclass(frozen=True)
class SpeakerStats:
    """What one speaker contributes to one modality of a data set."""

    items: int
    frames: int
    sum: np.ndarray  # [D] float64 sum of the frames
    sumsq: np.ndarray  # [D] float64 sum of the squared frames


def all_shards(manifest: Manifest, modality: str) -> tuple:
    """Every shard of a modality (all extraction splits), each once, in manifest order."""
    seen, out = set(), []
    for shards in manifest.modalities[modality].shards.values():
        for sh in shards:
            if sh.path not in seen:
                seen.add(sh.path)
                out.append(sh)
    return tuple(out)


def speaker_statistics(source: Source, modality: str) -> dict:
    """``{speaker: SpeakerStats}`` over all shards of ``modality`` (one pass over the records).

    Raises DataError naming the shard for corrupt or non-finite records.
    """
    import tensorflow as tf

    m = source.manifest
    info = m.modalities[modality]
    paths = [os.path.join(source.data_dir, sh.path) for sh in all_shards(m, modality)]
    for p in paths:
        if not os.path.isfile(p):
            raise DataError(f"{p}: shard listed in the manifest is missing")
    spec = {k: schema.feature_spec()[k] for k in (schema.KEY_SPEAKER, schema.KEY_SHAPE,
                                                   schema.KEY_FEATURES)}
    out = {}
    for path in paths:
        ds = tf.data.TFRecordDataset(path, compression_type=m.compression or None).batch(512)
        try:
            for batch in ds:
                ex = tf.io.parse_example(batch, spec)
                for spk, shape, raw in zip(ex[schema.KEY_SPEAKER].numpy(),
                                           ex[schema.KEY_SHAPE].numpy(),
                                           ex[schema.KEY_FEATURES].numpy()):
                    x = np.frombuffer(raw, "<f4")
                    if x.size != shape[0] * shape[1] or shape[1] != info.dim:
                        raise DataError(f"{path}: a record of speaker {spk.decode()!r} has "
                                        f"shape {tuple(shape)}, the manifest says dimension "
                                        f"{info.dim}")
                    x = x.reshape(shape).astype(np.float64)
                    if not np.all(np.isfinite(x)):
                        raise DataError(f"{path}: NaN/inf features in a record of speaker "
                                        f"{spk.decode()!r}")
                    s = out.get(spk.decode())
                    add = SpeakerStats(1, int(shape[0]), x.sum(0), (x * x).sum(0))
                    out[spk.decode()] = add if s is None else SpeakerStats(
                        s.items + 1, s.frames + add.frames, s.sum + add.sum, s.sumsq + add.sumsq)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            raise DataError(f"{path}: corrupt or truncated TFRecord "
                            f"({err.message.splitlines()[0]})") from err
    return out


def fold_view(source: Source, modality: str, speakers: Mapping[str, Sequence[str]],
              stats: Mapping[str, SpeakerStats] | None = None) -> Source:
    """``source`` with its partitions assigned by speaker at read time (no new shards).

    Args:
        source: the data folder as extracted (any splits).
        modality: the modality this view serves.
        speakers: ``{split: speaker ids}``, e.g. a cross-validation fold's
            ``{"train": [...], "dev": [...], "test": [...]}``.
        stats: :func:`speaker_statistics` of this modality (read if None).

    Returns:
        A :class:`Source` whose manifest lists, for every split, all shards,
        the split's item and frame counts, and standardisation statistics
        computed on the ``"train"`` speakers only. Splits without any item
        are left out.
    """
    stats = speaker_statistics(source, modality) if stats is None else stats
    m = source.manifest
    info = m.modalities[modality]
    shards = all_shards(m, modality)
    chosen, counts, frames = {}, {}, {}
    for split, spk in speakers.items():
        spk = tuple(sorted(s for s in set(spk) if s in stats))
        if not spk:
            continue
        chosen[split] = spk
        counts[split] = sum(stats[s].items for s in spk)
        frames[split] = sum(stats[s].frames for s in spk)
    if "train" not in chosen:
        raise DataError(f"{source.data_dir}: no {modality} item of the training speakers "
                        f"{sorted(speakers.get('train', ()))[:8]}... (speakers in the data: "
                        f"{sorted(stats)[:8]}...)")
    n = sum(stats[s].frames for s in chosen["train"])
    total = sum(stats[s].sum for s in chosen["train"])
    mean = total / n
    var = np.maximum(sum(stats[s].sumsq for s in chosen["train"]) / n - mean * mean, 0.0)
    std = np.sqrt(var)
    std[std < 1e-8] = 1.0  # as the writer does for constant features
    new_info = dataclasses.replace(info, shards={s: shards for s in chosen}, counts=counts,
                                   frames=frames, mean=tuple(mean.tolist()),
                                   std=tuple(std.tolist()))
    manifest = dataclasses.replace(m, modalities={modality: new_info})
    return Source(source.data_dir, manifest, chosen)


def shard_paths(source: Source, modality: str, split: str, required: bool = True) -> list:
    """Full paths of a modality's shards for ``split``, checked against the manifest.

    Missing files, and files whose size differs from the size recorded at
    writing time (truncated or rewritten), raise DataError naming the file.
    """
    m = source.manifest
    where = os.path.join(source.data_dir, schema.MANIFEST_NAME)
    if modality not in m.modalities:
        if required:
            raise DataError(f"{where}: data set {m.name!r} has no {modality} features "
                            f"(it has: {sorted(m.modalities)})")
        return []
    shards = m.modalities[modality].shards.get(split, ())
    if not shards:
        if required:
            raise DataError(f"{where}: data set {m.name!r} has no {modality} shards for split "
                            f"{split!r} (splits: {sorted(m.modalities[modality].shards)})")
        return []
    paths = []
    for sh in shards:
        path = os.path.join(source.data_dir, sh.path)
        if not os.path.isfile(path):
            raise DataError(f"{path}: shard listed in the manifest is missing")
        size = os.path.getsize(path)
        if size != sh.bytes:
            raise DataError(f"{path}: shard is {size} bytes but was written with {sh.bytes} "
                            "(truncated or modified); regenerate it")
        paths.append(path)
    return paths


def verify_shards(paths: Sequence[str], compression: str = "") -> int:
    """Reads every record of every shard; raises DataError naming a corrupt file.

    Returns the number of records read. Used up-front by ``inspect`` and
    after a ``DataLossError`` during training to name the bad shard.
    """
    import tensorflow as tf

    total = 0
    for path in paths:
        count = 0
        try:
            for rec in tf.data.TFRecordDataset(path, compression_type=compression or None):
                schema.decode_example(rec.numpy())
                count += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            raise DataError(f"{path}: corrupt or truncated TFRecord after {count} good records "
                            f"({err.message.splitlines()[0]})") from err
        except DataError as err:
            raise DataError(f"{path}: {err}") from err
        except Exception as err:  # protobuf DecodeError and friends
            raise DataError(f"{path}: record {count} cannot be decoded ({err})") from err
        total += count
    return total


def data_error_from(err, shards: Sequence[tuple] = ()):
    """The DataError behind a ``tf.data`` failure, or None if it is not about the data.

    A failed record check becomes its message (which names the shard and
    recording); a ``DataLossError`` (corrupt or truncated file) is traced
    to the file by reading the ``(path, compression)`` ``shards`` record by
    record.
    """
    import tensorflow as tf

    msg = getattr(err, "message", str(err))
    tags = ("in shard", "schema version", "Corrupt record")
    if isinstance(err, tf.errors.InvalidArgumentError) and any(t in msg for t in tags):
        line = next((ln for ln in msg.splitlines() if any(t in ln for t in tags)), msg)
        return DataError(line.strip())
    if isinstance(err, tf.errors.DataLossError):
        for path, compression in shards:
            try:
                verify_shards([path], compression)
            except DataError as found:
                return found
        return DataError(f"corrupt TFRecord data: {msg.splitlines()[0]}")
    return None


def shift_labels_back(labels, frames: int):
    """Annotation delay compensation: ``out[t] = labels[t + frames]``.

    The last value is repeated at the end of the recording; works on
    [T, K] tensors or arrays.
    """
    import tensorflow as tf

    if frames <= 0:
        return labels
    t = tf.shape(labels)[0]
    n = tf.minimum(frames, t)
    tail = tf.repeat(labels[-1:], n, axis=0)
    return tf.concat([labels[n:], tail], axis=0)


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """How examples become batches.

    Args:
        window: frames per training window (regression); 0 = whole sequences.
        window_shift: hop between windows in frames.
        shuffle_buffer: examples (windows) in the shuffle buffer.
        label_delay_frames: shift the gold standard back by this many
            frames (annotation delay compensation, regression only).
        label_dims: which ``label_dims`` columns to predict (regression).
        standardize: apply the manifest's training-set mean/std.
        cycle_length: shards read in parallel.
        cache: ``"auto"`` keeps a split's decoded examples in memory when
            its shards total at most ``cache_limit_mb`` (read once, then
            every epoch is served from memory, shuffled over the whole
            split); ``"memory"`` always does; ``"none"`` streams from the
            shards every epoch (memory stays flat however large the data).
        cache_limit_mb: the ``"auto"`` threshold, in MiB of shards.
    """

    window: int = 0
    window_shift: int = 0
    shuffle_buffer: int = 2048
    label_delay_frames: int = 0
    label_dims: tuple = ()
    standardize: bool = True
    cycle_length: int = 4
    cache: str = "auto"
    cache_limit_mb: int = 1024

    def __post_init__(self):
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, not {self.cache!r}")


CACHE_MODES = ("auto", "memory", "none")


def uses_cache(source: Source, modality: str, split: str, options: PipelineOptions) -> bool:
    """Whether ``options.cache`` keeps this split in memory (see :class:`PipelineOptions`)."""
    if options.cache == "auto":
        shards = source.manifest.modalities[modality].shards.get(split, ())
        return sum(sh.bytes for sh in shards) <= options.cache_limit_mb * (1 << 20)
    return options.cache == "memory"


def _check_compatible(sources: Mapping[str, Source]) -> Manifest:
    items = list(sources.items())
    first_mod, first = items[0]
    for mod, src in items[1:]:
        a, b = first.manifest, src.manifest
        if a.task != b.task or tuple(a.label_names) != tuple(b.label_names):
            raise DataError(
                f"{src.data_dir} ({mod}) and {first.data_dir} ({first_mod}) disagree on the task or "
                f"label set: {b.task} {list(b.label_names)} vs {a.task} {list(a.label_names)}")
    return first.manifest


def _parse_fn(source: Source, modality: str, opts: PipelineOptions, with_ids: bool = True):
    import tensorflow as tf

    m = source.manifest
    info = m.modalities[modality]
    dim = info.dim
    task = m.task
    k_classes = len(m.label_names)
    label_cols = list(opts.label_dims) or list(range(len(m.label_names)))
    if opts.standardize:
        if len(info.mean) != dim or len(info.std) != dim:
            raise DataError(f"{source.data_dir}: manifest has no training-set statistics for "
                            f"{modality} (needed for standardisation)")
        mean = tf.constant(np.asarray(info.mean, np.float32))
        std = tf.constant(np.asarray(info.std, np.float32))

    def parse(record, path):
        ex = schema.parse_record(record, path)
        feats = ex["features"]
        rec = ex[schema.KEY_RECORDING]
        checks = [tf.debugging.Assert(
            tf.equal(tf.shape(feats)[1], dim),
            ["Feature dimension differs from the manifest in shard", path, "recording", rec,
             "dimension", tf.shape(feats)[1], f"manifest says {dim}"]),
            tf.debugging.Assert(
                tf.equal(ex["modality"], modality),
                ["Record of another modality in shard", path, "recording", rec, ex["modality"]])]
        if task == "classification":
            lab = ex["label_class"]
            checks.append(tf.debugging.Assert(
                tf.logical_and(lab >= 0, lab < k_classes),
                ["Label outside the label set in shard", path, "recording", rec, "label", lab,
                 f"labels are 0..{k_classes - 1}"]))
        else:
            dims = ex["label_dims"]
            checks.append(tf.debugging.Assert(
                tf.logical_and(tf.equal(tf.shape(dims)[0], tf.shape(feats)[0]),
                               tf.shape(dims)[1] > max(label_cols)),
                ["Per-frame labels do not match the features in shard", path, "recording", rec,
                 "labels", tf.shape(dims), "features", tf.shape(feats)]))
            lab = tf.gather(dims, label_cols, axis=1)
            lab = shift_labels_back(lab, opts.label_delay_frames)
        with tf.control_dependencies(checks):
            feats = tf.ensure_shape(tf.identity(feats), [None, dim])
        if opts.standardize:
            feats = (feats - mean) / std
        out = {"features": feats, "mask": tf.ones(tf.shape(feats)[:1], tf.bool), "label": lab}
        if with_ids:
            for key in (schema.KEY_RECORDING, schema.KEY_SPEAKER, schema.KEY_CORPUS):
                out[key] = ex[key]
        return out

    return parse


def _batch_parse_fn(source: Source, modality: str, opts: PipelineOptions, with_ids: bool):
    """Vectorised parsing of a batch of records into a padded batch.

    ``tf.io.parse_example`` on the batch, then one ``decode_raw`` with the
    batch's largest record as ``fixed_length``: every row is T_i x D floats
    zero-padded, i.e. already the padded [B, T_max, D] batch. Much cheaper
    than parsing record by record; the same checks as :func:`_parse_fn`
    name the shard and recording of the first bad record.
    """
    import tensorflow as tf

    m = source.manifest
    info = m.modalities[modality]
    dim, task, k_classes = info.dim, m.task, len(m.label_names)
    label_cols = list(opts.label_dims) or list(range(len(m.label_names)))
    spec = schema.feature_spec()
    if opts.standardize:
        mean = tf.constant(np.asarray(info.mean, np.float32))
        std = tf.constant(np.asarray(info.std, np.float32))

    def parse(records, paths):
        ex = tf.io.parse_example(records, spec)
        rec = ex[schema.KEY_RECORDING]

        def check(ok, message, *extra):
            i = tf.argmin(tf.cast(ok, tf.int32))  # the first failing row
            return tf.debugging.Assert(tf.reduce_all(ok), [message, paths[i], "recording",
                                                           rec[i], *[e[i] for e in extra]])
        shape = tf.cast(ex[schema.KEY_SHAPE], tf.int32)
        nbytes = tf.strings.length(ex[schema.KEY_FEATURES])
        checks = [
            check(tf.equal(ex[schema.KEY_VERSION], schema.SCHEMA_VERSION),
                  "Record of another TFRecord schema version in shard", ex[schema.KEY_VERSION]),
            check(tf.equal(nbytes, shape[:, 0] * shape[:, 1] * 4),
                  "Corrupt record in shard; feature bytes do not match shape", shape),
            check(tf.equal(shape[:, 1], dim),
                  f"Feature dimension differs from the manifest (manifest says {dim}) in shard",
                  shape[:, 1]),
            check(tf.equal(ex["modality"], modality), "Record of another modality in shard",
                  ex["modality"]),
        ]
        with tf.control_dependencies(checks):
            flat = tf.io.decode_raw(ex[schema.KEY_FEATURES], tf.float32, little_endian=True,
                                    fixed_length=tf.reduce_max(nbytes))
        lengths = shape[:, 0]
        t_max = tf.reduce_max(lengths)
        feats = tf.reshape(flat, [-1, t_max, dim])
        mask = tf.sequence_mask(lengths, t_max)
        finite = tf.reduce_all(tf.math.is_finite(feats), axis=[1, 2])
        with tf.control_dependencies([check(finite, "NaN/inf features in shard")]):
            feats = tf.identity(feats)
        if task == "classification":
            lab = tf.cast(ex[schema.KEY_LABEL_CLASS], tf.int32)
            label_check = check(tf.logical_and(lab >= 0, lab < k_classes),
                                f"Label outside the label set (labels are 0..{k_classes - 1}) "
                                "in shard", lab)
        else:
            dshape = tf.cast(ex[schema.KEY_LABEL_DIMS_SHAPE], tf.int32)
            k_all = tf.reduce_max(dshape[:, 1])
            label_check = check(tf.logical_and(tf.equal(dshape[:, 0], lengths),
                                               tf.logical_and(dshape[:, 1] > max(label_cols),
                                                              tf.equal(dshape[:, 1], k_all))),
                                "Per-frame labels do not match the features in shard", dshape)
            dense = tf.sparse.to_dense(ex[schema.KEY_LABEL_DIMS])
            dense = tf.pad(dense, [[0, 0], [0, t_max * k_all - tf.shape(dense)[1]]])
            lab = tf.gather(tf.reshape(dense, [-1, t_max, k_all]), label_cols, axis=2)
            if opts.label_delay_frames > 0:  # per row, the last valid value repeated
                idx = tf.minimum(tf.range(t_max)[None, :] + opts.label_delay_frames,
                                 tf.maximum(lengths - 1, 0)[:, None])
                lab = tf.gather(lab, idx, batch_dims=1)
            lab = lab * tf.cast(mask, lab.dtype)[..., None]
        with tf.control_dependencies([label_check]):
            lab = tf.identity(lab)
        if opts.standardize:
            feats = (feats - mean) / std * tf.cast(mask, tf.float32)[..., None]
        out = {"features": feats, "mask": mask, "label": lab}
        if with_ids:
            for key in (schema.KEY_RECORDING, schema.KEY_SPEAKER, schema.KEY_CORPUS):
                out[key] = ex[key]
        return out

    return parse


def bucket_length(t):
    """The padded time length of a batch whose longest item has ``t`` frames.

    1 stays 1 (utterance-level features); longer batches are padded up to a
    multiple of ``max(8, 2**(floor(log2 t) - 2))``, i.e. at most 25% (and 7
    frames) of padding, and at most four lengths per octave. Each distinct
    batch shape costs a ``tf.function`` trace in Keras' training and
    prediction steps; without buckets every new batch maximum retraces.

    Example:
    >>> [int(bucket_length(t)) for t in (1, 2, 8, 9, 36, 65, 300)]
    [1, 8, 8, 16, 40, 80, 320]
    """
    import tensorflow as tf

    t = tf.cast(t, tf.int32)
    octave = tf.cast(tf.math.floor(tf.math.log(tf.cast(tf.maximum(t, 1), tf.float32))
                                   / np.log(2.0) + 1e-6), tf.int32)
    step = tf.maximum(8, tf.bitwise.left_shift(1, tf.maximum(octave - 2, 0)))
    return tf.where(t <= 1, t, -(-t // step) * step)


def bucket_time(batch):
    """Pads a batch's time axis (features, mask, per-frame labels) to :func:`bucket_length`."""
    import tensorflow as tf

    t = tf.shape(batch["features"])[1]
    pad = bucket_length(t) - t
    out = dict(batch)
    out["features"] = tf.pad(batch["features"], [[0, 0], [0, pad], [0, 0]])
    out["mask"] = tf.pad(batch["mask"], [[0, 0], [0, pad]])
    if batch["label"].shape.rank == 3:  # per-frame regression labels [B, T, K]
        out["label"] = tf.pad(batch["label"], [[0, 0], [0, pad], [0, 0]])
    return out


def _windows(example, window: int, shift: int):
    """Cuts one recording into fixed-length windows (last one zero-padded)."""
    import tensorflow as tf

    def frame(x):
        return tf.signal.frame(x, window, shift, pad_end=True, axis=0)

    feats = frame(example["features"])
    # Windows start every `shift` frames until one reaches the end of the
    # recording; later (mostly padding) windows from pad_end are dropped.
    t = tf.shape(example["features"])[0]
    keep = 1 + tf.maximum(0, (t - window + shift - 1) // shift)
    keep = tf.minimum(keep, tf.shape(feats)[0])
    out = {
        "features": feats[:keep],
        "mask": tf.cast(frame(tf.cast(example["mask"], tf.int32))[:keep], tf.bool),
        "label": frame(example["label"])[:keep],
    }
    for key in (schema.KEY_RECORDING, schema.KEY_SPEAKER, schema.KEY_CORPUS):
        if key in example:
            out[key] = tf.repeat(example[key][None], keep)
    return tf.data.Dataset.from_tensor_slices(out)


def _keeps_speakers(speakers):
    """A predicate on ``(record, path)`` keeping records of ``speakers``."""
    import tensorflow as tf

    spec = {schema.KEY_SPEAKER: tf.io.FixedLenFeature([], tf.string, default_value="")}
    wanted = tf.constant(sorted(speakers), tf.string)

    def keep(record, path):
        spk = tf.io.parse_single_example(record, spec)[schema.KEY_SPEAKER]
        return tf.reduce_any(tf.equal(spk, wanted))

    return keep


def count_windows(paths, compression: str, window: int, shift: int, speakers=None) -> int:
    """Training windows the shards yield (reads only each record's shape and speaker)."""
    import tensorflow as tf

    spec = {schema.KEY_SHAPE: tf.io.FixedLenFeature([2], tf.int64)}
    records = tf.data.TFRecordDataset(paths, compression_type=compression or None)
    if speakers is not None:
        keep = _keeps_speakers(speakers)
        records = records.filter(lambda r: keep(r, ""))
    lengths = records.map(
        lambda r: tf.io.parse_single_example(r, spec)[schema.KEY_SHAPE][0],
        num_parallel_calls=AUTOTUNE)
    total = 0
    for t in lengths.batch(4096).as_numpy_iterator():
        total += int(np.sum(1 + np.maximum(0, -(-(t - window) // shift))))
    return total


def _trim_padding(example):
    """One example of a padded batch, cut back to its own length."""
    import tensorflow as tf

    n = tf.reduce_sum(tf.cast(example["mask"], tf.int32))
    out = dict(example)
    out["features"], out["mask"] = example["features"][:n], example["mask"][:n]
    if example["label"].shape.rank == 2:  # per-frame regression labels
        out["label"] = example["label"][:n]
    return out


def _in_memory(ds, paths, expected: int, compression: str = ""):
    """``ds.cache()``, filled now by one complete pass.

    Filling it up front means every later iterator (each Keras epoch, the
    auxiliary stream that is never read to its end) is served from memory,
    and lets the pass check the example count against the manifest.
    """
    import tensorflow as tf

    ds = ds.cache()
    try:
        n = int(ds.reduce(tf.constant(0, tf.int64), lambda acc, _: acc + 1))
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        found = data_error_from(err, [(p, compression) for p in paths])
        if found is None:
            raise
        raise found from None
    if n != expected:
        raise DataError(f"{', '.join(paths)}: the shards hold {n} examples but the manifest "
                        f"lists {expected}; regenerate the data set")
    return ds


def make_modality_dataset(source: Source, modality: str, split: str, batch_size: int, *,
                          training: bool = False, seed: int = 0, repeat: bool = False,
                          with_ids: bool = False, options: PipelineOptions = PipelineOptions()):
    """Batches of one modality from a data folder.

    Args:
        source: the data folder and manifest.
        modality: ``"audio"`` or ``"video"``.
        split: ``"train"``, ``"dev"`` or ``"test"``.
        batch_size: examples (or windows) per batch.
        training: shuffle shards and examples and, for regression with
            ``options.window``, cut fixed-length windows.
        seed: seed of every shuffle (same seed, same batches).
        repeat: repeat forever.
        with_ids: keep ``recording``/``speaker``/``corpus`` strings.
        options: :class:`PipelineOptions`.

    Returns:
        A ``tf.data.Dataset`` of dicts ``features`` [B, T, D], ``mask``
        [B, T] and ``label``.
    """
    import tensorflow as tf

    paths = shard_paths(source, modality, split)
    m = source.manifest
    compression = m.compression or None
    cached = uses_cache(source, modality, split, options)
    n_records = m.modalities[modality].counts[split]
    files = tf.data.Dataset.from_tensor_slices(paths)
    if training and not cached:  # a cached split is shuffled whole instead
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

    def read(path):  # raw records tagged with their shard, for error messages
        return tf.data.TFRecordDataset(path, compression_type=compression).map(
            lambda r: (r, path))

    ds = files.interleave(read, cycle_length=min(len(paths), options.cycle_length),
                          num_parallel_calls=AUTOTUNE, deterministic=True)
    speakers = source.speaker_filter(split)
    if speakers is not None:  # partitions assigned at read time (cross-validation folds)
        ds = ds.filter(_keeps_speakers(speakers))
    windowed = training and m.task == "regression" and options.window > 0
    if windowed:  # long recordings, cut into windows: parse record by record
        ds = ds.map(_parse_fn(source, modality, options, with_ids), num_parallel_calls=AUTOTUNE,
                    deterministic=True)
        if cached:
            ds = _in_memory(ds, paths, n_records, m.compression).shuffle(
                max(n_records, 1), seed=seed, reshuffle_each_iteration=True)
        shift = options.window_shift or options.window
        ds = ds.interleave(lambda ex: _windows(ex, options.window, shift), cycle_length=4,
                           num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.shuffle(options.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.padded_batch(batch_size, drop_remainder=False)
    elif cached:  # parse once in large batches, keep the examples, shuffle the whole split
        batch_parse = _batch_parse_fn(source, modality, options, with_ids)
        ds = ds.batch(256).map(batch_parse, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = _in_memory(ds.unbatch().map(_trim_padding, num_parallel_calls=AUTOTUNE,
                                         deterministic=True), paths, n_records,
                        m.compression)
        if training:
            ds = ds.shuffle(max(n_records, 1), seed=seed + 1, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.padded_batch(batch_size, drop_remainder=False).map(bucket_time)
    else:  # shuffle the raw records, then parse whole batches at once
        if training:
            ds = ds.shuffle(options.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        batch_parse = _batch_parse_fn(source, modality, options, with_ids)
        ds = ds.batch(batch_size, drop_remainder=False).map(
            batch_parse, num_parallel_calls=AUTOTUNE, deterministic=True).map(bucket_time)
    if not repeat:  # a known length gives Keras complete progress bars
        n = (count_windows(paths, m.compression, options.window,
                           options.window_shift or options.window, speakers) if windowed
             else m.modalities[modality].counts[split])
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
    ds = ds.prefetch(AUTOTUNE)
    opt = tf.data.Options()
    opt.deterministic = True
    return ds.with_options(opt)


def make_mixed_dataset(sources: Mapping[str, Source], target: str, batch_sizes: Mapping[str, int],
                       split: str = "train", *, seed: int = 0,
                       options: PipelineOptions = PipelineOptions()):
    """Mixed minibatches of unpaired audio and video examples.

    Args:
        sources: ``{"audio": Source, "video": Source}``; the two may be
            different data folders (corpora) with the same task and labels.
        target: the target modality; its stream defines the epoch, the
            other one repeats.
        batch_sizes: examples per modality in one batch.
        split: usually ``"train"``.
        seed: shuffling seed; the auxiliary stream uses ``seed + 17``.
        options: :class:`PipelineOptions`.

    Returns:
        A dataset of ``{"audio": {...}, "video": {...}}`` batches.
    """
    import tensorflow as tf

    if target not in sources:
        raise DataError(f"no data source for the target modality {target!r}")
    _check_compatible(sources)
    streams = {}
    for mod, src in sources.items():
        streams[mod] = make_modality_dataset(
            src, mod, split, batch_sizes[mod], training=True, repeat=(mod != target),
            seed=seed if mod == target else seed + 17, options=options)
    ds = tf.data.Dataset.zip(streams).prefetch(AUTOTUNE)
    return ds
