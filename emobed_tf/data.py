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

Every record goes through one parser, :func:`parse_batch`, which applies
``schema.RECORD_CHECKS`` to a batch of records in the graph; a failed check
stops the pipeline with an error that starts with ``schema.BAD_RECORD`` and
names the shard, the recording and the problem. :func:`data_error_from`
turns such a ``tf.data`` failure (and corrupt files) into a
:class:`~emobed_tf.schema.DataError`.

Example (a tiny data set written to a temporary folder):

>>> import tempfile
>>> from emobed_tf.writer import DatasetWriter
>>> from emobed_tf.schema import Item
>>> folder = tempfile.mkdtemp()
>>> with DatasetWriter(folder, "toy", "classification", ["calm", "angry"], {"audio": 2}) as w:
...     for i in range(5):
...         w.add(Item("audio", np.full((i + 1, 2), float(i)), i % 2, recording=f"r{i}"))
>>> src = Source.open(folder)
>>> batch = next(iter(make_modality_dataset(src, "audio", "train", 4)))
>>> batch["features"].shape, batch["mask"].shape, batch["label"].numpy().tolist()
(TensorShape([4, 8, 2]), TensorShape([4, 8]), [0, 1, 0, 1])
"""

from __future__ import annotations

import ast
import codecs
import dataclasses
import os
import re
import string
from typing import Mapping, Sequence

import numpy as np

from emobed_tf import schema
from emobed_tf.configs import CACHE_MODES, NORMALIZATIONS, DataConfig
from emobed_tf.schema import DataError, Manifest

AUTOTUNE = -1
MIN_SPEAKER_FRAMES = 10  # fewer: a speaker's own statistics are too noisy to normalise with
PARSE_BATCH = 256  # records parsed at once where examples are kept (cache, windows)
_ID_KEYS = (schema.KEY_RECORDING, schema.KEY_SPEAKER, schema.KEY_CORPUS)


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
        """The data folder ``data_dir`` with its checked manifest (raises DataError)."""
        return cls(data_dir, schema.load_manifest(data_dir))

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.data_dir, schema.MANIFEST_NAME)

    def expected(self, modality: str) -> schema.Expected:
        """What this source's manifest promises about every record of ``modality``."""
        return schema.Expected.of(self.manifest, modality, self.data_dir)

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


# --------------------------------------------------------------------------
# the one record parser


def _plain(fn):
    """``fn`` for ``tf.data`` as written, without AutoGraph's source conversion.

    The dataset functions here hold no Python control flow over tensors
    (``tf.cond`` where a branch is needed), so converting them only costs
    time: about 0.1-0.3 s per function and pipeline, paid by every run.
    """
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(fn)


def _graph_message(template: str, values: Mapping, row):
    """``template.format(**values)`` in the graph, for the record at ``row``."""
    import tensorflow as tf

    pieces = []
    for literal, name, _, _ in string.Formatter().parse(template):
        pieces.append(literal)
        if name:
            v = values[name]
            if isinstance(v, tf.Tensor):
                v = v[row] if v.shape.rank else v
                v = v if v.dtype == tf.string else tf.strings.as_string(v)
            pieces.append(v if isinstance(v, tf.Tensor) else str(v))
    return tf.strings.join(pieces)


def _assert_records(facts: Mapping, expected: schema.Expected, recordings, paths):
    """One ``tf.debugging.Assert`` of ``schema.RECORD_CHECKS`` over a batch.

    Fails with ``schema.RECORD_MESSAGE`` for the first failing record and
    its first failing check; the message is only built on failure.
    """
    import tensorflow as tf

    checks = [c for c in schema.RECORD_CHECKS if c.applies(expected)]
    n = tf.shape(recordings)[0]
    oks = tf.stack([tf.broadcast_to(c.ok(facts, expected), [n]) for c in checks])  # [C, B]
    all_ok = tf.reduce_all(oks)
    values = {**expected.fields(), **facts}

    def message():
        row = tf.argmin(tf.cast(tf.reduce_all(oks, axis=0), tf.int32), output_type=tf.int32)
        which = tf.argmin(tf.cast(oks[:, row], tf.int32), output_type=tf.int32)
        problems = tf.stack([_graph_message(c.problem, values, row) for c in checks])
        where = tf.where(tf.equal(paths[row], ""), "", tf.strings.join([" in ", paths[row]]))
        return _graph_message(schema.RECORD_MESSAGE, {"recording": recordings, "where": where,
                                                      "problem": problems[which]}, row)

    text = tf.cond(all_ok, lambda: tf.constant(""), message)
    return tf.debugging.Assert(all_ok, [text])


def parse_batch(records, paths, expected: schema.Expected = schema.Expected(),
                label_dims: bool = True) -> dict:
    """Parses and checks a batch of serialised records in the graph: the one record parser.

    Args:
        records: ``[B]`` serialised ``tf.train.Example`` strings.
        paths: ``[B]`` (or scalar) shard path of each record, named in errors.
        expected: what every record must be (:class:`schema.Expected`);
            its ``dim``, when set, is also the static feature dimension.
        label_dims: also decode the per-frame labels.

    Returns:
        ``features`` [B, T, D] float32 zero-padded to the batch's longest
        record, ``lengths`` [B] int32, ``mask`` [B, T], ``label_class`` [B]
        int32, ``label_dims`` [B, T, K] float32 (zero-padded; when asked),
        and the record's ``modality``, ``corpus``, ``speaker``,
        ``recording`` and ``split`` strings [B].

    Raises (when the batch is computed) ``tf.errors.InvalidArgumentError``
    whose message is :func:`schema.bad_record`'s for the first record that
    fails ``schema.RECORD_CHECKS``.

    >>> import tensorflow as tf
    >>> from emobed_tf.schema import Item, serialize_item, Expected
    >>> recs = [serialize_item(Item("audio", np.ones((t, 2)), 0, recording=f"r{t}"))
    ...         for t in (1, 3)]
    >>> out = parse_batch(tf.constant(recs), "x.tfrecord", Expected(dim=2))
    >>> out["features"].shape, out["lengths"].numpy().tolist()
    (TensorShape([2, 3, 2]), [1, 3])
    >>> parse_batch(tf.constant(recs), "x.tfrecord", Expected(dim=5))
    Traceback (most recent call last):
    ...
    tensorflow.python.framework.errors_impl.InvalidArgumentError: ...bad record 'r1' in
    x.tfrecord: feature dimension 2 differs from the manifest manifest.json, which says 5...
    """
    import tensorflow as tf

    ex = tf.io.parse_example(records, schema.feature_spec())
    n = tf.shape(records)[0]
    paths = tf.broadcast_to(paths, [n])
    shape = ex[schema.KEY_SHAPE]
    nbytes = tf.strings.length(ex[schema.KEY_FEATURES])
    width = (tf.reduce_max(nbytes) + 3) // 4 * 4  # decode_raw wants whole floats
    flat = tf.io.decode_raw(ex[schema.KEY_FEATURES], tf.float32, little_endian=True,
                            fixed_length=width)
    dshape = ex[schema.KEY_LABEL_DIMS_SHAPE]
    dims = tf.RaggedTensor.from_sparse(ex[schema.KEY_LABEL_DIMS])
    facts = {"version": ex[schema.KEY_VERSION], "modality": ex[schema.KEY_MODALITY],
             "frames": shape[:, 0], "dim": shape[:, 1], "nbytes": tf.cast(nbytes, tf.int64),
             "finite": tf.reduce_all(tf.math.is_finite(flat), axis=1),
             "label_class": ex[schema.KEY_LABEL_CLASS], "label_frames": dshape[:, 0],
             "label_width": dshape[:, 1],
             "label_count": tf.cast(dims.row_lengths(), tf.int64)}
    check = _assert_records(facts, expected, ex[schema.KEY_RECORDING], paths)
    with tf.control_dependencies([check]):  # nothing is shaped before the records passed
        lengths = tf.cast(shape[:, 0], tf.int32)
        t_max = tf.reduce_max(lengths)
        d = expected.dim if expected.dim is not None else tf.cast(tf.reduce_max(shape[:, 1]),
                                                                   tf.int32)
        out = {"features": tf.reshape(flat, [n, t_max, d]), "lengths": lengths,
               "mask": tf.sequence_mask(lengths, t_max),
               "label_class": tf.cast(ex[schema.KEY_LABEL_CLASS], tf.int32),
               "modality": ex[schema.KEY_MODALITY]}
        if label_dims:
            k = (expected.label_width if expected.label_width is not None
                 else tf.cast(tf.reduce_max(dshape[:, 1]), tf.int32))
            t_lab = tf.cast(tf.reduce_max(dshape[:, 0]), tf.int32)
            out["label_dims"] = tf.reshape(dims.to_tensor(shape=[n, t_lab * k]), [n, t_lab, k])
    for key in schema.ID_KEYS:
        out[key] = ex[key]
    return out


def parse_record(record, source=""):
    """One serialised record parsed and checked in the graph (:func:`parse_batch` of one).

    Returns ``features`` [T, D], ``label_class``, ``label_dims`` [T, K],
    ``modality`` and the id strings.

    >>> import tensorflow as tf
    >>> from emobed_tf.schema import Item, serialize_item
    >>> rec = serialize_item(Item("audio", np.ones((3, 2)), 1, np.zeros((3, 1)), recording="r"))
    >>> out = parse_record(tf.constant(rec))
    >>> out["features"].shape, int(out["label_class"]), out["label_dims"].shape
    (TensorShape([3, 2]), 1, TensorShape([3, 1]))
    """
    import tensorflow as tf

    out = parse_batch(tf.reshape(record, [1]), source)
    return {k: v[0] for k, v in out.items() if k not in ("lengths", "mask")}


def shift_labels_back(labels, frames: int, lengths=None):
    """Annotation delay compensation: ``out[t] = labels[min(t + frames, length - 1)]``.

    The last value is repeated at the end of the recording. ``labels`` is
    [T, K], or a padded batch [B, T, K] whose rows have ``lengths`` [B].

    >>> lab = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    >>> shift_labels_back(lab, 2).numpy()[:, 0].tolist()
    [3.0, 4.0, 4.0, 4.0]
    """
    import tensorflow as tf

    if frames <= 0:
        return labels
    if lengths is None:
        labels = tf.convert_to_tensor(labels)
        return shift_labels_back(labels[None], frames, tf.shape(labels)[:1])[0]
    t = tf.shape(labels)[1]
    idx = tf.minimum(tf.range(t)[None, :] + frames, tf.maximum(lengths - 1, 0)[:, None])
    return tf.gather(labels, idx, batch_dims=1)


def _first_record_dim(path: str, compression: str = "") -> int:
    """The feature dimension of the first record of shard ``path``."""
    import tensorflow as tf

    for rec in tf.data.TFRecordDataset(path, compression_type=compression or None).take(1):
        return schema.decode_example(rec.numpy(), path).features.shape[1]
    return 0


def _model_inputs(source: Source, modality: str, opts: "PipelineOptions", with_ids: bool,
                  paths: Sequence[str] = ()):
    """``(records, paths) -> batch`` for the model: :func:`parse_batch`, then labels and scaling.

    Gives ``features`` [B, T, D] (standardised, zero at padding), ``mask``
    [B, T] and ``label`` ([B] class ids, or [B, T, K] per-frame values of the
    chosen columns, delayed by ``opts.label_delay_frames``). ``paths``, the
    shards to be read, are named when the manifest's statistics and feature
    dimension disagree.
    """
    import tensorflow as tf

    m = source.manifest
    info = m.modalities[modality]
    expected = source.expected(modality)
    regression = m.task == "regression"
    label_cols = list(opts.label_dims) or list(range(len(m.label_names)))
    if regression and not all(0 <= c < len(m.label_names) for c in label_cols):
        raise DataError(f"{source.manifest_path}: label columns {label_cols} requested, the "
                        f"data set has {len(m.label_names)} {list(m.label_names)}")
    if opts.normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, not {opts.normalize!r}")
    if opts.standardize:
        if not info.mean or not info.std:
            raise DataError(f"{source.manifest_path}: manifest has no training-set statistics "
                            f"for {modality} (needed for standardisation)")
        if len(info.mean) != info.dim or len(info.std) != info.dim:
            found = (f"; {paths[0]} holds records of dimension "
                     f"{_first_record_dim(paths[0], m.compression)}" if paths else "")
            raise DataError(f"{source.manifest_path}: says {modality} features have dimension "
                            f"{info.dim} but its training-set statistics have {len(info.mean)} "
                            f"values{found}; the manifest does not match the shards, regenerate "
                            "the data set")
        mean = tf.constant(np.asarray(info.mean, np.float32))
        std = tf.constant(np.asarray(info.std, np.float32))
        if opts.normalize == "speaker":
            keys, means, stds = speaker_norm_table(source, modality)
            # unknown or too small speakers: the last row, the training-set statistics
            rows = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys or [""], tf.string),
                tf.constant(list(range(len(keys))) or [len(keys)], tf.int64)),
                default_value=len(keys))
            means = tf.constant(np.concatenate([means, np.asarray([info.mean], np.float32)]))
            stds = tf.constant(np.concatenate([stds, np.asarray([info.std], np.float32)]))

    def parse(records, paths):
        ex = parse_batch(records, paths, expected, label_dims=regression)
        feats, mask = ex["features"], ex["mask"]
        if regression:
            lab = tf.gather(ex["label_dims"], label_cols, axis=2)
            lab = shift_labels_back(lab, opts.label_delay_frames, ex["lengths"])
            lab = lab * tf.cast(mask, lab.dtype)[..., None]
        else:
            lab = ex["label_class"]
        if opts.standardize and opts.normalize == "speaker":
            row = rows.lookup(ex[schema.KEY_SPEAKER])
            feats = ((feats - tf.gather(means, row)[:, None, :]) / tf.gather(stds, row)[:, None, :]
                     * tf.cast(mask, tf.float32)[..., None])
        elif opts.standardize:
            feats = (feats - mean) / std * tf.cast(mask, tf.float32)[..., None]
        out = {"features": feats, "mask": mask, "label": lab}
        if with_ids:
            out.update({key: ex[key] for key in _ID_KEYS})
        return out

    return parse


# --------------------------------------------------------------------------
# files, checks and errors


def speaker_key(speaker: str) -> str:
    """The id under which speakers of two corpora are compared: a numeric id as a number
    (``"01"``, ``"1"`` and ``" 1"`` are one speaker), any other id as written, less spaces.

    >>> [speaker_key(s) for s in ("01", "1", " 007 ", "A01", "")]
    ['1', '1', '7', 'A01', '']
    """
    s = speaker.strip()
    return str(int(s)) if s.isdigit() else s


def speaker_statistics(source: Source, modality: str) -> dict:
    """``{speaker: SpeakerStats}`` over all shards of ``modality`` (one pass over the records).

    Every record goes through :func:`parse_batch`; raises DataError naming
    the shard for corrupt, truncated or failing records.

    >>> import tempfile
    >>> from emobed_tf.writer import DatasetWriter
    >>> from emobed_tf.schema import Item
    >>> folder = tempfile.mkdtemp()
    >>> with DatasetWriter(folder, "toy", "classification", ["a", "b"], {"audio": 2}) as w:
    ...     w.add(Item("audio", np.ones((3, 2)), 0, speaker="s1", recording="r1"))
    ...     w.add(Item("audio", np.ones((2, 2)), 1, speaker="s2", recording="r2"))
    >>> stats = speaker_statistics(Source.open(folder), "audio")
    >>> sorted((spk, s.items, s.frames) for spk, s in stats.items())
    [('s1', 1, 3), ('s2', 1, 2)]
    """
    import tensorflow as tf

    m = source.manifest
    paths = [os.path.join(source.data_dir, sh.path) for sh in all_shards(m, modality)]
    for p in paths:
        if not os.path.isfile(p):
            raise DataError(f"{p}: shard listed in the manifest is missing")
    compression = m.compression or None
    expected = source.expected(modality)

    def read(path):  # records tagged with their shard
        return tf.data.TFRecordDataset(path, compression_type=compression).map(
            _plain(lambda r: (r, path)))

    records = tf.data.Dataset.from_tensor_slices(paths).flat_map(_plain(read))
    batches = records.batch(512).map(
        _plain(lambda r, p: parse_batch(r, p, expected, label_dims=False))).as_numpy_iterator()
    out = {}
    try:
        for batch in batches:
            for spk, feats, t in zip(batch[schema.KEY_SPEAKER], batch["features"],
                                     batch["lengths"]):
                x = feats[:t].astype(np.float64)
                s = out.get(spk.decode())
                add = SpeakerStats(1, int(t), x.sum(0), (x * x).sum(0))
                out[spk.decode()] = add if s is None else SpeakerStats(
                    s.items + 1, s.frames + add.frames, s.sum + add.sum, s.sumsq + add.sumsq)
    except (tf.errors.OpError, UnicodeDecodeError) as err:
        found = data_error_from(err, [(p, m.compression) for p in paths])
        if found is None:
            raise
        raise found from None
    return out


_SPEAKER_STATS_CACHE: dict = {}


def cached_speaker_statistics(source: Source, modality: str) -> dict:
    """:func:`speaker_statistics`, read once per data folder, modality and set of shard files
    (a shard rewritten in place, as a new file or with a new modification time, is read again)."""

    def stamp(path):
        try:
            st = os.stat(path)
        except OSError:
            return None  # speaker_statistics names the missing file
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    shards = tuple((sh.path, stamp(os.path.join(source.data_dir, sh.path)))
                   for sh in all_shards(source.manifest, modality))
    key = (os.path.abspath(source.data_dir), modality, shards)
    if key not in _SPEAKER_STATS_CACHE:
        _SPEAKER_STATS_CACHE[key] = speaker_statistics(source, modality)
    return _SPEAKER_STATS_CACHE[key]


def speaker_moments(stats: SpeakerStats) -> tuple:
    """(mean [D], std [D]) float32 of one speaker's frames; a constant feature's std is 1."""
    mean = stats.sum / stats.frames
    std = np.sqrt(np.maximum(stats.sumsq / stats.frames - mean * mean, 0.0))
    std[std < 1e-8] = 1.0  # as the writer does for constant features
    return mean.astype(np.float32), std.astype(np.float32)


def speaker_norm_table(source: Source | None, modality: str, stats: Mapping | None = None) -> tuple:
    """``(speakers, means [S, D], stds [S, D])`` for per-speaker normalisation.

    Every speaker of the data folder with at least :data:`MIN_SPEAKER_FRAMES`
    frames, from all its items (features only; labels are never read), the
    held-out speakers' included: this is transductive speaker
    normalisation, as in the speech-emotion literature, which needs some
    unlabelled speech of each test speaker. Items without a speaker id and
    speakers with fewer frames are left out (they get the training-set
    statistics).

    >>> stats = {"s1": SpeakerStats(20, 20, np.full(1, 40.0), np.full(1, 100.0)),
    ...          "s2": SpeakerStats(1, 1, np.zeros(1), np.zeros(1)),
    ...          "": SpeakerStats(30, 30, np.zeros(1), np.full(1, 30.0))}
    >>> speakers, means, stds = speaker_norm_table(None, "audio", stats)
    >>> speakers, means.tolist(), stds.tolist()
    (['s1'], [[2.0]], [[1.0]])
    """
    stats = cached_speaker_statistics(source, modality) if stats is None else stats
    keys = sorted(s for s, st in stats.items() if s and st.frames >= MIN_SPEAKER_FRAMES)
    dim = len(next(iter(stats.values())).sum) if stats else 0
    moments = [speaker_moments(stats[s]) for s in keys]
    means = np.asarray([m for m, _ in moments], np.float32).reshape(len(keys), dim)
    stds = np.asarray([s for _, s in moments], np.float32).reshape(len(keys), dim)
    return keys, means, stds


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

    >>> stats = {"s1": SpeakerStats(2, 4, np.array([4.0]), np.array([8.0])),
    ...          "s2": SpeakerStats(1, 2, np.array([0.0]), np.array([2.0]))}
    >>> m = Manifest("toy", "classification", ("a", "b"), {"audio": schema.ModalityInfo(dim=1)})
    >>> view = fold_view(Source("/data", m), "audio", {"train": ["s1"], "test": ["s2"]}, stats)
    >>> info = view.manifest.modalities["audio"]
    >>> view.speakers, info.counts, info.mean
    ({'train': ('s1',), 'test': ('s2',)}, {'train': 2, 'test': 1}, (1.0,))
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
    A modality or split the data set lacks raises DataError naming the
    manifest when ``required``, else gives ``[]``.

    >>> m = Manifest("toy", "classification", ("a", "b"), {"audio": schema.ModalityInfo(dim=1)})
    >>> shard_paths(Source("/data/toy", m), "audio", "dev", required=False)
    []
    >>> shard_paths(Source("/data/toy", m), "audio", "dev")
    Traceback (most recent call last):
    ...
    emobed_tf.schema.DataError: /data/toy/manifest.json: data set 'toy' has no audio shards
    for split 'dev' (splits: [])
    """
    m = source.manifest
    where = source.manifest_path
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


def verify_shards(paths: Sequence[str], compression: str = "",
                  expected: schema.Expected = schema.Expected()) -> int:
    """Reads every record of every shard; raises DataError naming a corrupt file.

    Each record is decoded eagerly and must pass ``schema.RECORD_CHECKS``
    (those ``expected``, e.g. ``Source.expected(modality)``, enables).
    Returns the number of records read. Used up-front by ``inspect`` and
    after a failure during training to name the bad shard.

    >>> import tempfile
    >>> from emobed_tf.writer import ShardWriter
    >>> from emobed_tf.schema import Item, serialize_item
    >>> w = ShardWriter(tempfile.mkdtemp(), "audio-train")
    >>> w.write(serialize_item(Item("audio", np.ones((2, 3)), 0, recording="r1")))
    >>> path = os.path.join(w.directory, w.close()[0].path)
    >>> verify_shards([path])
    1
    >>> verify_shards([path], expected=schema.Expected(dim=4))
    Traceback (most recent call last):
    ...
    emobed_tf.schema.DataError: bad record 'r1' in ...audio-train-00000.tfrecord: feature
    dimension 3 differs from the manifest manifest.json, which says 4
    """
    import tensorflow as tf

    total = 0
    for path in paths:
        count = 0
        try:
            for rec in tf.data.TFRecordDataset(path, compression_type=compression or None):
                schema.decode_example(rec.numpy(), path, expected)
                count += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            raise DataError(f"{path}: corrupt or truncated TFRecord after {count} good records "
                            f"({_tf_message(err)})") from None
        total += count
    return total


def _tf_message(err) -> str:
    """The first line of a TensorFlow error without its op and function decorations.

    >>> _tf_message(ValueError("{{function_node __wrapped__X}} corrupted record at 12 [Op:Y]"))
    'corrupted record at 12'
    """
    line = (getattr(err, "message", None) or str(err)).strip().splitlines()[0]
    line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)
    return line.split(" [Op:")[0].strip()


# what tf.io.parse_example says about a record that is not a schema record
_UNPARSABLE = ("Could not parse example input", "Name: <unknown>, Key:",
               "Name: <unknown>, Feature:")


def _assertion_text(msg: str) -> str:
    """The ``schema.BAD_RECORD`` message inside a ``tf.debugging.Assert`` failure.

    In a graph (``tf.data``) TensorFlow prints it C-escaped in brackets,
    ``assertion failed: [TEXT]``; run eagerly, as a bytes literal,
    ``Summarized data: b"TEXT"``.
    """
    line = next(ln for ln in msg.splitlines() if schema.BAD_RECORD in ln)
    start = line.index(schema.BAD_RECORD)
    if line[start - 2:start] in ('b"', "b'"):  # eager: a Python bytes literal
        quote = line[start - 1]
        text = line[start:line.rindex(quote)] if line.rindex(quote) > start else line[start:]
        return ast.literal_eval("b" + quote + text + quote).decode("utf-8", "replace")
    text = line[start:]
    text = text[:-1] if text.endswith("]") else text  # Assert's bracket around the text
    return codecs.escape_decode(text.encode("utf-8"))[0].decode("utf-8", "replace")


def _manifest_of(path: str) -> str | None:
    """The ``manifest.json`` of the data folder holding shard ``path``, if any."""
    folder = os.path.dirname(os.path.abspath(path))
    for _ in range(4):
        if os.path.isfile(os.path.join(folder, schema.MANIFEST_NAME)):
            return os.path.join(folder, schema.MANIFEST_NAME)
        folder = os.path.dirname(folder)
    return None


def data_error_from(err, shards: Sequence[tuple] = ()):
    """The DataError behind a ``tf.data`` failure, or None if it is not about the data.

    A failed record check (a message containing ``schema.BAD_RECORD``)
    becomes its message, which names the shard, recording and problem. A
    corrupt or truncated file (``DataLossError``) or a record that is not a
    schema record at all is traced to its file by reading the
    ``(path, compression)`` ``shards`` record by record. Shards that hold
    another number of examples than the manifest lists name the manifest.

    >>> import tensorflow as tf
    >>> err = tf.errors.InvalidArgumentError(
    ...     None, None, "assertion failed: [bad record 'r1' in a.tfrecord: NaN/inf features]")
    >>> data_error_from(err)
    DataError("bad record 'r1' in a.tfrecord: NaN/inf features")
    >>> data_error_from(ValueError("something else")) is None
    True
    """
    import tensorflow as tf

    msg = getattr(err, "message", None) or str(err)
    if isinstance(err, tf.errors.InvalidArgumentError) and schema.BAD_RECORD in msg:
        return DataError(_assertion_text(msg))
    unparsable = isinstance(err, UnicodeDecodeError) or (
        isinstance(err, tf.errors.InvalidArgumentError) and any(t in msg for t in _UNPARSABLE))
    if isinstance(err, tf.errors.DataLossError) or unparsable:
        for path, compression in shards:
            try:
                verify_shards([path], compression)
            except DataError as found:
                return found
        if isinstance(err, tf.errors.DataLossError):
            return DataError(f"corrupt TFRecord data: {_tf_message(err)}")
        return None
    counted = re.search(r"expected to contain (\d+) elements but contained (only|at least) "
                        r"(\d+)", msg)
    if isinstance(err, tf.errors.FailedPreconditionError) and counted:
        where = sorted({_manifest_of(p) or os.path.dirname(p) for p, _ in shards})
        want, how, got = counted.groups()
        return DataError(f"{', '.join(where) or 'the data'}: the shards hold "
                         f"{'fewer' if how == 'only' else 'more'} examples than the manifest "
                         f"lists ({want} batches expected, {'' if how == 'only' else 'at least '}"
                         f"{got} read); the manifest does not match the shards, regenerate the "
                         "data set")
    return None


# --------------------------------------------------------------------------
# the pipeline


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
        standardize: standardise the features (see ``normalize``).
        normalize: ``"corpus"``: with the manifest's training-set mean/std;
            ``"speaker"``: each item with its own speaker's mean/std over all
            of that speaker's frames (:func:`speaker_norm_table`; unknown
            and small speakers fall back to ``"corpus"``).
        cycle_length: shards read in parallel.
        cache: ``"auto"`` keeps a split's decoded examples in memory when
            its shards total at most ``cache_limit_mb`` (read once, then
            every epoch is served from memory, shuffled over the whole
            split); ``"memory"`` always does; ``"none"`` streams from the
            shards every epoch (memory stays flat however large the data).
        cache_limit_mb: the ``"auto"`` threshold, in MiB of shards.

    >>> PipelineOptions(window=100, cache="none").window_shift
    0
    >>> PipelineOptions(cache="disk")
    Traceback (most recent call last):
    ...
    ValueError: cache must be one of ('auto', 'memory', 'none'), not 'disk'
    """

    window: int = 0
    window_shift: int = 0
    shuffle_buffer: int = DataConfig.shuffle_buffer  # defaults: the configs' (one place)
    label_delay_frames: int = 0
    label_dims: tuple = ()
    standardize: bool = True
    normalize: str = DataConfig.normalize
    cycle_length: int = 4
    cache: str = DataConfig.cache
    cache_limit_mb: int = DataConfig.cache_limit_mb

    def __post_init__(self):
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, not {self.cache!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, not "
                             f"{self.normalize!r}")




def uses_cache(source: Source, modality: str, split: str, options: PipelineOptions) -> bool:
    """Whether ``options.cache`` keeps this split in memory (see :class:`PipelineOptions`).

    >>> m = Manifest("toy", "classification", ("a",), {"audio": schema.ModalityInfo(
    ...     dim=1, shards={"train": (schema.ShardInfo("a.tfrecord", 10, 5 << 20),)})})
    >>> [uses_cache(Source("/d", m), "audio", "train", PipelineOptions(cache_limit_mb=mb))
    ...  for mb in (4, 5)]
    [False, True]
    """
    if options.cache == "auto":
        shards = source.manifest.modalities[modality].shards.get(split, ())
        return sum(sh.bytes for sh in shards) <= options.cache_limit_mb * (1 << 20)
    return options.cache == "memory"


def check_compatible(sources: Mapping[str, Source]) -> Manifest:
    """The first source's manifest, after checking every source has its task and labels."""
    items = list(sources.items())
    first_mod, first = items[0]
    for mod, src in items[1:]:
        a, b = first.manifest, src.manifest
        if a.task != b.task or tuple(a.label_names) != tuple(b.label_names):
            raise DataError(
                f"{src.data_dir} ({mod}) and {first.data_dir} ({first_mod}) disagree on the "
                f"task or label set: {b.task} {list(b.label_names)} vs {a.task} "
                f"{list(a.label_names)}")
    return first.manifest


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
    """Pads a batch's time axis (features, mask, per-frame labels) to :func:`bucket_length`.

    >>> import tensorflow as tf
    >>> b = bucket_time({"features": tf.ones([2, 9, 3]), "mask": tf.ones([2, 9], tf.bool),
    ...                  "label": tf.zeros([2])})
    >>> b["features"].shape, b["mask"].shape
    (TensorShape([2, 16, 3]), TensorShape([2, 16]))
    """
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
    for key in _ID_KEYS:
        if key in example:
            out[key] = tf.repeat(example[key][None], keep)
    return tf.data.Dataset.from_tensor_slices(out)


def _keeps_speakers(speakers):
    """A predicate on ``(record, path)`` keeping records of ``speakers``."""
    import tensorflow as tf

    spec = {schema.KEY_SPEAKER: schema.feature_spec()[schema.KEY_SPEAKER]}
    wanted = tf.constant(sorted(speakers), tf.string)

    def keep(record, path):
        spk = tf.io.parse_single_example(record, spec)[schema.KEY_SPEAKER]
        return tf.reduce_any(tf.equal(spk, wanted))

    return keep


def count_windows(paths, compression: str, window: int, shift: int, speakers=None) -> int:
    """Training windows the shards yield (reads only each record's shape and speaker)."""
    import tensorflow as tf

    spec = {schema.KEY_SHAPE: schema.feature_spec()[schema.KEY_SHAPE]}
    records = tf.data.TFRecordDataset(paths, compression_type=compression or None)
    if speakers is not None:
        keep = _keeps_speakers(speakers)
        records = records.filter(_plain(lambda r: keep(r, "")))
    lengths = records.map(
        _plain(lambda r: tf.io.parse_single_example(r, spec)[schema.KEY_SHAPE][0]),
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
        n = int(ds.reduce(tf.constant(0, tf.int64), _plain(lambda acc, _: acc + 1)))
    except (tf.errors.OpError, UnicodeDecodeError) as err:
        found = data_error_from(err, [(p, compression) for p in paths])
        if found is None:
            raise
        raise found from None
    if n != expected:
        raise DataError(f"{', '.join(paths)}: the shards hold {n} examples but the manifest "
                        f"lists {expected}; regenerate the data set")
    return ds


def _read_records(source: Source, split: str, paths: Sequence[str], options: PipelineOptions,
                  shuffle_files: bool, seed: int):
    """``(record, shard path)`` pairs of the shards in order (or in shuffled file order)."""
    import tensorflow as tf

    compression = source.manifest.compression or None
    files = tf.data.Dataset.from_tensor_slices(list(paths))
    if shuffle_files:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

    def read(path):  # raw records tagged with their shard, for error messages
        return tf.data.TFRecordDataset(path, compression_type=compression).map(
            _plain(lambda r: (r, path)))

    ds = files.interleave(_plain(read), cycle_length=min(len(paths), options.cycle_length),
                          num_parallel_calls=AUTOTUNE, deterministic=True)
    speakers = source.speaker_filter(split)
    if speakers is not None:  # partitions assigned at read time (cross-validation folds)
        ds = ds.filter(_plain(_keeps_speakers(speakers)))
    return ds


def _with_tensor_seed(build):
    """``build(seed)`` for a seed tensor inside a tf.data function.

    TensorFlow's ``get_seed`` compares the op seed with 0 in Python when the
    global seed is 0 (``keras.utils.set_random_seed(0)``), which fails for a
    tensor; the function's own graph seed is cleared while ``build`` runs
    (the shuffles are then seeded by the tensor alone).
    """
    import tensorflow as tf

    def call(seed):
        graph = tf.compat.v1.get_default_graph()
        saved, graph.seed = graph.seed, None
        try:
            return build(seed)
        finally:
            graph.seed = saved

    return call


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

    The chain: shards -> ``(record, shard)`` pairs -> examples -> batches.
    A *streamed* split shuffles the raw records and parses each batch as it
    is formed. Otherwise the records are parsed in batches of
    :data:`PARSE_BATCH` and split back into examples, which a *cached*
    split keeps in memory (read once, shuffled whole every epoch) and a
    *windowed* one (regression training with ``options.window``) cuts into
    fixed-length windows. A bad record fails with a message naming its
    shard (:func:`data_error_from`); a cached split raises DataError here.
    See the module example.
    """
    import tensorflow as tf

    paths = shard_paths(source, modality, split)
    m = source.manifest
    n_records = m.modalities[modality].counts[split]
    cached = uses_cache(source, modality, split, options)
    windowed = training and m.task == "regression" and options.window > 0
    streamed = not (cached or windowed)
    shift = options.window_shift or options.window
    parse = _plain(_model_inputs(source, modality, options, with_ids, paths))
    ordered = dict(num_parallel_calls=AUTOTUNE, deterministic=True)

    def examples(shuffle_files, seed):
        ds = _read_records(source, split, paths, options, shuffle_files=shuffle_files, seed=seed)
        if streamed and training:  # shuffle raw records; parsed once batched
            ds = ds.shuffle(options.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
        if not streamed:  # parse in large batches, back to examples
            ds = ds.batch(PARSE_BATCH).map(parse, **ordered).unbatch()
            ds = ds.map(_plain(_trim_padding), **ordered)
        return ds

    if cached:  # read once now; every epoch is served from memory
        memory = _in_memory(examples(False, seed), paths, n_records, m.compression)

    def one_iteration(seed):  # every shuffle of one pass over the split seeded by ``seed``
        ds = memory if cached else examples(training, seed)
        if cached and training:  # shuffled over the whole split
            ds = ds.shuffle(max(n_records, 1), seed=seed if windowed else seed + 1,
                            reshuffle_each_iteration=True)
        if windowed:  # long recordings, cut into fixed-length windows, shuffled
            ds = ds.interleave(_plain(lambda ex: _windows(ex, options.window, shift)),
                               cycle_length=4, **ordered)
            ds = ds.shuffle(options.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
        return ds.repeat() if repeat else ds

    if repeat:
        # A repeated stream (the auxiliary one) is read ahead by prefetching, so
        # how many times its shuffles had reshuffled when Keras dropped an
        # epoch's iterator depends on thread timing; a stream made anew per
        # iterator, seeded by a per-iterator draw, keeps a seeded run identical.
        ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        ds = ds.flat_map(_plain(_with_tensor_seed(one_iteration)))
    else:
        ds = one_iteration(seed)
    if streamed:
        ds = ds.batch(batch_size, drop_remainder=False).map(parse, **ordered)
    else:
        ds = ds.padded_batch(batch_size, drop_remainder=False)
    if not windowed:  # windows already share one length
        ds = ds.map(_plain(bucket_time))
    if not repeat:  # a known length gives Keras complete progress bars
        n = (count_windows(paths, m.compression, options.window, shift,
                           source.speaker_filter(split)) if windowed else n_records)
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
    opt = tf.data.Options()
    opt.deterministic = True
    return ds.prefetch(AUTOTUNE).with_options(opt)


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

    >>> import tempfile
    >>> from emobed_tf.writer import DatasetWriter
    >>> from emobed_tf.schema import Item
    >>> folder = tempfile.mkdtemp()
    >>> with DatasetWriter(folder, "toy", "classification", ["a", "b"],
    ...                    {"audio": 2, "video": 3}) as w:
    ...     for i in range(4):
    ...         w.add(Item("audio", np.full((2, 2), i), i % 2, recording=f"a{i}"))
    ...         w.add(Item("video", np.full((1, 3), i), i % 2, recording=f"v{i}"))
    >>> src = Source.open(folder)
    >>> ds = make_mixed_dataset({"audio": src, "video": src}, "audio", {"audio": 2, "video": 3})
    >>> [(b["audio"]["features"].shape[0], b["video"]["features"].shape[0]) for b in ds]
    [(2, 3), (2, 3)]
    """
    import tensorflow as tf

    if target not in sources:
        raise DataError(f"no data source for the target modality {target!r}")
    check_compatible(sources)
    streams = {}
    for mod, src in sources.items():
        streams[mod] = make_modality_dataset(
            src, mod, split, batch_sizes[mod], training=True, repeat=(mod != target),
            seed=seed if mod == target else seed + 17, options=options)
    ds = tf.data.Dataset.zip(streams).prefetch(AUTOTUNE)
    return ds
