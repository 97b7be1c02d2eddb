"""The in-memory fast path: a split read once into arrays, and training batches drawn from them.

A split whose shards fit in memory (the rule of ``--cache``,
:func:`emobed_tf.data.pipeline.uses_cache`) is decoded once by the one
pipeline (:func:`~emobed_tf.data.pipeline.make_modality_dataset`: the same
parser, standardisation, label columns and delay, speaker folds) into an
:class:`InMemorySplit` of numpy arrays. Training then never builds another
iterator over the shards: :func:`make_training_stream` is one endless
``tf.data`` stream of index batches gathered from those arrays, which Keras'
``fit`` reads with ``steps_per_epoch`` (one iterator for the whole run).

The stream keeps the semantics of :func:`~emobed_tf.data.pipeline.make_mixed_dataset`:

* the target modality defines the epoch: ``ceil(n / batch_size)`` batches,
  every item once, the last batch smaller;
* the auxiliary modality is an independent endless stream of its own
  shuffled passes, one after the other, cut into full batches of its own
  size and zipped in, so a minibatch holds audio and video items that are
  not paired;
* the order is seeded: pass ``e`` of a modality is the permutation
  ``stateless_shuffle(range(n), seed=(seed, e))`` (the auxiliary with
  ``seed + 17``), so it depends only on the seed and the epoch and a run
  resumed after epoch ``k`` reads exactly the batches the uninterrupted run
  read from there (``start_epoch``).

Sequences (the GRU form) are held padded to the split's longest item; each
batch is cut back to its own longest item and padded to the pipeline's
bucketed length (:func:`~emobed_tf.data.pipeline.bucket_time`), as streamed
batches are. Regression training windows (``--window``) are cut by the
streamed pipeline only.

>>> import tempfile
>>> from emobed_tf.records.writer import DatasetWriter
>>> from emobed_tf.records.schema import Item
>>> from emobed_tf.data.source import Source
>>> folder = tempfile.mkdtemp()
>>> with DatasetWriter(folder, "toy", "classification", ["a", "b"], {"audio": 2}) as w:
...     for i in range(5):
...         w.add(Item("audio", np.full((1, 2), float(i)), i % 2, recording=f"r{i}"))
>>> split = load_split(Source.open(folder), "audio", "train")
>>> split.features.shape, split.label.tolist(), split.recordings[:2]
((5, 1, 2), [0, 1, 0, 1, 0], ['r0', 'r1'])
>>> ds, steps = make_training_stream({"audio": split}, "audio", {"audio": 2}, seed=0)
>>> steps, [int(b["audio"]["features"].shape[0]) for b in ds.take(4)]
(3, [2, 2, 1, 2])
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from emobed_tf.data.pipeline import PARSE_BATCH, PipelineOptions, make_modality_dataset, uses_cache
from emobed_tf.data.source import Source
from emobed_tf.records import schema
from emobed_tf.records.schema import DataError

AUXILIARY_SEED_OFFSET = 17  # the auxiliary stream's seed is seed + 17 (as make_mixed_dataset's)


@dataclasses.dataclass
class InMemorySplit:
    """One modality's split as arrays: ``features`` [N, T, D] float32 (standardised, zero at
    padding), ``mask`` [N, T] bool, ``label`` ([N] class ids or [N, T, K] per-frame values),
    and each item's recording and speaker id."""

    features: np.ndarray
    mask: np.ndarray
    label: np.ndarray
    recordings: list
    speakers: list

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes + self.mask.nbytes + self.label.nbytes)

    def batches(self, batch_size: int):
        """``(features, mask, label)`` batches in order, each cut to its longest item."""
        for i in range(0, len(self), batch_size):
            mask = self.mask[i:i + batch_size]
            t = max(int(mask.sum(1).max()), 1) if mask.shape[1] > 1 else mask.shape[1]
            label = self.label[i:i + batch_size]
            yield (self.features[i:i + batch_size, :t], mask[:, :t],
                   label[:, :t] if label.ndim == 3 else label)


def applies(sources: Mapping[str, Source], target: str, options: PipelineOptions,
            task: str, strategy: str = "none") -> bool:
    """Whether a run takes the in-memory path: every split it reads is held in memory by
    ``--cache`` (:func:`uses_cache`), it trains on whole items (no regression windows) and
    on one machine's default device placement (no tf.distribute strategy)."""
    if strategy != "none" or (task == "regression" and options.window > 0):
        return False
    needed = [(target, s) for s in ("train", "dev", "test")] + [(m, "train") for m in sources
                                                                if m != target]
    return all(uses_cache(sources[m], m, s, options) for m, s in needed)


def load_split(source: Source, modality: str, split: str,
               options: PipelineOptions = PipelineOptions()) -> InMemorySplit:
    """Reads ``split`` of ``modality`` once, through the one pipeline, into arrays.

    Whole items (no windows), in record order; a bad record raises the
    pipeline's :class:`~emobed_tf.records.schema.DataError` naming its shard.
    """
    ds = make_modality_dataset(source, modality, split, PARSE_BATCH, training=False,
                               with_ids=True,
                               options=dataclasses.replace(options, window=0, cache="none"))
    feats, masks, labels, recs, spks = [], [], [], [], []
    for b in ds.as_numpy_iterator():
        feats.append(b["features"])
        masks.append(b["mask"])
        labels.append(b["label"])
        recs += [r.decode() for r in b[schema.KEY_RECORDING]]
        spks += [s.decode() for s in b[schema.KEY_SPEAKER]]
    if not feats:
        dim = source.manifest.modalities[modality].dim
        return InMemorySplit(np.zeros((0, 1, dim), np.float32), np.zeros((0, 1), bool),
                             np.zeros((0,), np.int64), [], [])
    t = max(f.shape[1] for f in feats)

    def pad(x):
        widths = [(0, 0), (0, t - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
        return np.pad(x, widths) if x.ndim > 1 and x.shape[1] != t else x

    label = (np.concatenate([pad(x) for x in labels]) if labels[0].ndim == 3
             else np.concatenate(labels))
    mask = np.concatenate([pad(x) for x in masks]).astype(bool)
    features = np.concatenate([pad(x) for x in feats]).astype(np.float32)
    # held at the split's longest item (the pipeline pads each batch to its bucket)
    longest = max(int(mask.sum(1).max()), 1)
    return InMemorySplit(features[:, :longest], mask[:, :longest],
                         label[:, :longest] if label.ndim == 3 else label, recs, spks)


def load_splits(source: Source, modality: str, splits, options: PipelineOptions = PipelineOptions()
                ) -> dict:
    """``{split: InMemorySplit}`` of ``splits``. Partitions assigned by speaker at read time
    (cross-validation folds: every split reads the same shards) are read in one pass and
    divided by speaker id; splits written at extraction time are read one by one."""
    if source.speakers is None:
        return {s: load_split(source, modality, s, options) for s in splits}
    shards = {source.manifest.modalities[modality].shards.get(s, ()) for s in splits}
    if len(shards) != 1:
        return {s: load_split(source, modality, s, options) for s in splits}
    wanted = {s: set(source.speaker_filter(s)) for s in splits}
    union = tuple(sorted(set().union(*wanted.values())))
    first = splits[0]
    m = source.manifest
    info = m.modalities[modality]
    # a view whose first split holds every speaker of the splits (its counts summed)
    total = {k: {**v, first: sum(v.get(s, 0) for s in splits)}
             for k, v in (("counts", info.counts), ("frames", info.frames))}
    view = dataclasses.replace(source, speakers={first: union}, manifest=dataclasses.replace(
        m, modalities={**m.modalities, modality: dataclasses.replace(info, **total)}))
    everything = load_split(view, modality, first, options)
    spk = np.asarray(everything.speakers, dtype=object)
    out = {}
    if len(splits) == 1:  # one split: the arrays as read, no copy
        return {first: everything}
    for s in splits:
        rows = np.flatnonzero(np.isin(spk, list(wanted[s]))) if len(spk) else np.zeros(0, int)
        out[s] = InMemorySplit(everything.features[rows], everything.mask[rows],
                               everything.label[rows],
                               [everything.recordings[i] for i in rows],
                               [everything.speakers[i] for i in rows])
    return out


def labelled_subset(split: InMemorySplit, k: int, seed: int) -> InMemorySplit:
    """At most ``k`` items per (speaker, class) of a classification ``split``, the same for a
    given ``seed`` whatever the system (classic and EmoBed of one fold and seed train on the
    same items): each group's items in a seeded random order, its first ``k`` kept, the
    split's order preserved. ``k`` = 0 keeps everything.

    >>> s = InMemorySplit(np.zeros((6, 1, 1), np.float32), np.ones((6, 1), bool),
    ...                   np.array([0, 0, 0, 1, 1, 0]), list("abcdef"), list("xxxxxy"))
    >>> sub = labelled_subset(s, 1, seed=0)
    >>> len(sub), sorted(zip(sub.speakers, sub.label.tolist()))
    (3, [('x', 0), ('x', 1), ('y', 0)])
    """
    if not k:
        return split
    if split.label.ndim != 1:
        raise DataError("--labels-per-class is for classification (one label per item)")
    rng = np.random.default_rng([seed, k])
    order = rng.permutation(len(split))
    taken, keep = {}, []
    for i in order:
        key = (split.speakers[i], int(split.label[i]))
        if taken.get(key, 0) < k:
            taken[key] = taken.get(key, 0) + 1
            keep.append(i)
    rows = np.sort(np.asarray(keep, dtype=int))
    return InMemorySplit(split.features[rows], split.mask[rows], split.label[rows],
                         [split.recordings[i] for i in rows], [split.speakers[i] for i in rows])


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one pass over ``n`` items (the last one smaller)."""
    return -(-n // batch_size)


def index_batches(n: int, batch_size: int, seed: int, skip: int = 0, endless: bool = False):
    """The endless stream of index batches: pass ``e`` is ``stateless_shuffle(range(n),
    seed=(seed, e))`` cut into batches of ``batch_size`` (the last one of a pass smaller), or
    with ``endless`` the passes one after the other cut into full batches (the auxiliary
    stream, as the streamed pipeline's repeated stream is batched); the first ``skip``
    batches are left out (a resumed run).

    >>> [b.tolist() for b in index_batches(3, 2, seed=5).take(4).as_numpy_iterator()][2:] == [
    ...     b.tolist() for b in index_batches(3, 2, seed=5, skip=2).take(2).as_numpy_iterator()]
    True
    >>> sorted(sum((b.tolist() for b in index_batches(5, 2, seed=1).take(3).as_numpy_iterator()),
    ...            []))
    [0, 1, 2, 3, 4]
    """
    import tensorflow as tf

    def permutation(epoch):
        return tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))

    ds = tf.data.Dataset.counter().map(permutation)
    if endless:
        ds = ds.unbatch().batch(batch_size)
    else:
        ds = ds.flat_map(lambda p: tf.data.Dataset.from_tensor_slices(p).batch(batch_size))
    return ds.skip(skip) if skip else ds


def _gathered(split: InMemorySplit, idx_ds):
    """Batches of ``split`` at the index batches of ``idx_ds``, cut and bucketed in time."""
    import tensorflow as tf

    from emobed_tf.data.pipeline import bucket_time

    arrays = {"features": split.features, "mask": split.mask, "label": split.label}
    sequences = split.features.shape[1] > 1
    data = tf.data.Dataset.from_tensors(arrays).repeat()

    def take(idx, arrs):
        b = {k: tf.gather(v, idx) for k, v in arrs.items()}
        if sequences:  # back to the batch's longest item, padded to its bucket
            t = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(b["mask"], tf.int32), 1)), 1)
            b = {k: v[:, :t] if (k != "label" or v.shape.rank == 3) else v
                 for k, v in b.items()}
            b = bucket_time(b)
        return b

    return tf.data.Dataset.zip((idx_ds, data)).map(take, num_parallel_calls=1)


def make_training_stream(splits: Mapping[str, InMemorySplit], target: str,
                         batch_sizes: Mapping[str, int], seed: int = 0, start_epoch: int = 0):
    """``(dataset, steps_per_epoch)``: endless mixed (or target-only) training batches
    ``{modality: {"features", "mask", "label"}}`` from arrays, starting at ``start_epoch``
    (see the module docstring for the order)."""
    import tensorflow as tf

    empty = sorted(m for m, split in splits.items() if not len(split))
    if empty:
        raise DataError(f"the {empty[0]} training split holds no items (after the speaker "
                        "filter): there is nothing to train on")
    n = len(splits[target])
    steps = steps_per_epoch(n, batch_sizes[target])
    streams = {}
    for mod, split in splits.items():
        s = seed if mod == target else seed + AUXILIARY_SEED_OFFSET
        # a resumed run skips the batches of both streams that the earlier epochs read
        idx = index_batches(len(split), batch_sizes[mod], s, skip=start_epoch * steps,
                            endless=mod != target)
        streams[mod] = _gathered(split, idx)
    ds = tf.data.Dataset.zip(streams)
    opt = tf.data.Options()
    opt.deterministic = True
    return ds.prefetch(2).with_options(opt), steps
