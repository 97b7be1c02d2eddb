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

Every record goes through one parser,
:func:`emobed_tf.records.parse.parse_batch`; a ``tf.data`` failure becomes a
:class:`~emobed_tf.records.schema.DataError` through
:func:`emobed_tf.records.parse.data_error_from`.

Example (a tiny data set written to a temporary folder):

>>> import tempfile
>>> from emobed_tf.records.writer import DatasetWriter
>>> from emobed_tf.records.schema import Item
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

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from emobed_tf.configs import CACHE_MODES, NORMALIZATIONS, DataConfig
from emobed_tf.data.source import Source, check_compatible, shard_paths  # noqa: F401
from emobed_tf.data.speakers import speaker_norm_table
from emobed_tf.records import schema
from emobed_tf.records.manifest import Manifest, ModalityInfo, ShardInfo  # noqa: F401
from emobed_tf.records.parse import _plain, data_error_from, parse_batch
from emobed_tf.records.schema import DataError

AUTOTUNE = -1
PARSE_BATCH = 256  # records parsed at once where examples are kept (cache, windows)
_ID_KEYS = (schema.KEY_RECORDING, schema.KEY_SPEAKER, schema.KEY_CORPUS)


# --------------------------------------------------------------------------
# the one record parser


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

    >>> m = Manifest("toy", "classification", ("a",), {"audio": ModalityInfo(
    ...     dim=1, shards={"train": (ShardInfo("a.tfrecord", 10, 5 << 20),)})})
    >>> [uses_cache(Source("/d", m), "audio", "train", PipelineOptions(cache_limit_mb=mb))
    ...  for mb in (4, 5)]
    [False, True]
    """
    if options.cache == "auto":
        shards = source.manifest.modalities[modality].shards.get(split, ())
        return sum(sh.bytes for sh in shards) <= options.cache_limit_mb * (1 << 20)
    return options.cache == "memory"


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
        # endless, as a repeat is (flat_map hides it): zipped with the target stream, the
        # epoch keeps the target's known length (Keras' progress bar and step count)
        ds = ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
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
    >>> from emobed_tf.records.writer import DatasetWriter
    >>> from emobed_tf.records.schema import Item
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
