"""Speakers: ids compared across corpora, per-speaker statistics and normalisation tables,
speaker partitions of a data folder (:func:`fold_view`, :func:`speaker_fold_sources`) and
the speaker-independent cross-validation folds (:func:`make_folds`): the one home of speaker
folds."""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np

from emobed_tf import configs
from emobed_tf.records import schema
from emobed_tf.records.manifest import Manifest, ModalityInfo, standardisation  # noqa: F401
from emobed_tf.records.parse import _plain, data_error_from, parse_batch
from emobed_tf.records.schema import DataError
from emobed_tf.data.source import Source, all_shards

MIN_SPEAKER_FRAMES = 10  # fewer: a speaker's own statistics are too noisy to normalise with


@dataclasses.dataclass(frozen=True)
class SpeakerStats:
    """What one speaker contributes to one modality of a data set."""

    items: int
    frames: int
    sum: np.ndarray  # [D] float64 sum of the frames
    sumsq: np.ndarray  # [D] float64 sum of the squared frames


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
    >>> from emobed_tf.records.writer import DatasetWriter
    >>> from emobed_tf.records.schema import Item
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
    mean, std = standardisation(stats.sum, stats.sumsq, stats.frames)
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
    >>> m = Manifest("toy", "classification", ("a", "b"), {"audio": ModalityInfo(dim=1)})
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
    mean, std = standardisation(sum(stats[s].sum for s in chosen["train"]),
                                sum(stats[s].sumsq for s in chosen["train"]), n)
    new_info = dataclasses.replace(info, shards={s: shards for s in chosen}, counts=counts,
                                   frames=frames, mean=tuple(mean.tolist()),
                                   std=tuple(std.tolist()))
    manifest = dataclasses.replace(m, modalities={modality: new_info})
    return Source(source.data_dir, manifest, chosen)


def shares_speakers(cfg: configs.TrainConfig, sources: dict) -> bool:
    """Whether the auxiliary corpus records the target's speakers, so that every held-out
    target speaker must be found among its items (``--shared-speakers``).

    ``auto``: yes when the auxiliary comes from another data folder whose
    manifest carries the same corpus name (e.g. two extractions of
    ``ravdess``, whose ids may be spelled differently). Within one data
    folder the ids were written by one reader, so they match by construction
    and a held-out speaker's items of either modality are left out by id,
    whether or not the other modality has that speaker (the demo's video
    corpus is other people).
    """
    if cfg.data.shared_speakers != "auto":
        return cfg.data.shared_speakers == "yes"
    folders = {os.path.realpath(src.data_dir) for src in sources.values()}
    names = {src.manifest.name for src in sources.values()}
    return len(sources) > 1 and len(folders) > 1 and len(names) == 1


def require_speaker_ids(source: Source, modality: str, stats: dict) -> None:
    """Speaker partitions need a speaker id on every item: DataError naming the folder."""
    missing = stats.get("")
    if missing is not None:
        raise DataError(f"{source.data_dir}: {missing.items} {modality} items have no speaker "
                        "id, so speaker partitions (--test-speakers/--dev-speakers, crossval) "
                        "cannot place them; give every item a speaker at extraction")


def _match(wanted, stats: dict) -> tuple:
    """(the ids of ``stats`` that are the speakers ``wanted``, the wanted ones not found),
    compared by :func:`emobed_tf.data.speakers.speaker_key`."""
    keys = {speaker_key(w) for w in wanted}
    found = sorted(s for s in stats if speaker_key(s) in keys)
    have = {speaker_key(s) for s in found}
    return found, sorted(w for w in wanted if speaker_key(w) not in have)


def speaker_fold_sources(cfg: configs.TrainConfig, sources: dict) -> dict:
    """``sources`` with partitions assigned by speaker (``cfg.data.*_speakers``).

    The target modality's train/dev/test are its items of those speakers
    (train: every speaker not held out, unless listed). The auxiliary
    modality trains on all its items except those of a dev or test speaker
    of the target. Speaker ids are compared by
    :func:`emobed_tf.data.speakers.speaker_key` (numeric ids as numbers: ``1`` is
    ``01``). When the corpora share speakers (:func:`shares_speakers`: an
    audio-visual corpus used unpaired), every held-out target speaker must
    be found among the auxiliary items and every auxiliary item must carry
    a speaker id, or a DataError names them: a held-out speaker's face
    never reaches training under another spelling. A corpus of other people
    is used whole, less any item whose id matches a held-out speaker.
    """
    d = cfg.data
    target = sources[cfg.target]
    target_stats = cached_speaker_statistics(target, cfg.target)
    require_speaker_ids(target, cfg.target, target_stats)
    parts = {}
    for split in ("train", "dev", "test"):
        parts[split], unknown = _match(getattr(d, f"{split}_speakers"), target_stats)
        if unknown:
            raise DataError(f"{target.data_dir}: no {cfg.target} items of the {split} speakers "
                            f"{unknown} (speakers: {sorted(target_stats)})")
    held_out = set(parts["dev"]) | set(parts["test"])
    train = set(parts["train"]) or set(target_stats) - held_out
    overlap = sorted(train & held_out)
    if overlap:
        raise configs.ConfigError(f"speakers {overlap} are both training and held-out speakers")
    out = {cfg.target: fold_view(target, cfg.target, {
        "train": sorted(train), "dev": parts["dev"], "test": parts["test"]}, target_stats)}
    for mod, src in sources.items():
        if mod != cfg.target:
            stats = cached_speaker_statistics(src, mod)
            excluded, unmatched = _match(held_out, stats)
            if shares_speakers(cfg, sources):
                if "" in stats:
                    raise DataError(
                        f"{src.data_dir}: {stats[''].items} {mod} items have no speaker id, "
                        "so they cannot be kept out of the held-out speakers' folds "
                        "(the corpora share speakers: --shared-speakers "
                        f"{d.shared_speakers})")
                if unmatched:
                    raise DataError(
                        f"{src.data_dir}: the held-out {cfg.target} speakers {unmatched} have "
                        f"no {mod} items here, though the corpora share speakers "
                        f"(--shared-speakers {d.shared_speakers}): their ids are spelled "
                        f"differently (here: {sorted(stats)[:6]}...) or their items are "
                        "missing; pass --shared-speakers no if these are other people")
            out[mod] = fold_view(src, mod, {"train": sorted(set(stats) - set(excluded))},
                                   stats)
    return out


def auxiliary_exclusions(cfg: configs.TrainConfig, sources: dict) -> dict:
    """``{modality: items left out}`` of each auxiliary source of a speaker-fold run:
    its items of the target's held-out speakers (for the cross-validation report)."""
    views = speaker_fold_sources(cfg, sources)
    out = {}
    for mod, src in sources.items():
        if mod != cfg.target:
            total = sum(st.items for st in cached_speaker_statistics(src, mod).values())
            out[mod] = total - views[mod].manifest.modalities[mod].counts["train"]
    return out


@dataclasses.dataclass(frozen=True)
class Fold:
    """One cross-validation fold: speaker ids per partition."""

    index: int
    train: tuple
    dev: tuple
    test: tuple


def make_folds(speakers, scheme: str = "speaker:8", dev_speakers: int = 0,
               train_speakers: int = 0, seed: int = 0) -> list:
    """Speaker-independent folds.

    Args:
        speakers: the target corpus' speaker ids.
        scheme: ``"loso"`` (one test speaker per fold) or ``"speaker:K"``
            (K folds, fold i tests ``sorted(speakers)[i::K]``).
        dev_speakers: dev speakers per fold; 0 = the next fold's test
            speakers (``speaker:K``) or ``max(1, round(n / 10))`` (LOSO).
        train_speakers: keep only this many training speakers (a random,
            fold-specific subset; 0 = all), for learning curves.
        seed: seed of that subset.

    Returns:
        ``[Fold]``; every speaker is tested exactly once, and no fold's
        test or dev speaker trains in it.

    Example:
    >>> folds = make_folds(["a", "b", "c", "d", "e", "f"], "speaker:3")
    >>> [f.test for f in folds]
    [('a', 'd'), ('b', 'e'), ('c', 'f')]
    >>> folds[2]
    Fold(index=2, train=('b', 'e'), dev=('a', 'd'), test=('c', 'f'))
    >>> make_folds(["a", "b", "c", "d"], "loso")[3]
    Fold(index=3, train=('b', 'c'), dev=('a',), test=('d',))
    """
    spk = sorted(set(speakers))
    n = len(spk)
    if scheme == "loso":
        k = n
    elif scheme.startswith("speaker:"):
        try:
            k = int(scheme.split(":", 1)[1])
        except ValueError:
            k = 0
    else:
        raise configs.ConfigError(f"--folds must be loso or speaker:K, got {scheme!r}")
    n_dev = dev_speakers or (max(1, round(n / 10)) if scheme == "loso" else 0)
    # a fold needs test speakers, dev speakers and at least one training speaker: with the
    # next fold as dev that is 3 groups; with n_dev dev speakers, a test group small enough
    # to leave room for them and one more
    fits = [j for j in range(2, n + 1)
            if (j >= 3 if not n_dev else -(-n // j) + n_dev < n)]
    if k not in fits:
        dev_what = f"{n_dev} dev speakers" if n_dev else "the next fold as dev"
        need = f"K must be {fits[0]}..{n}" if fits else "there are too few speakers"
        raise configs.ConfigError(f"--folds {scheme}: with {n} speakers, {dev_what} and at least "
                            f"one training speaker per fold, {need}")
    groups = [tuple(spk[i::k]) for i in range(k)]
    folds = []
    for i in range(k):
        test = groups[i]
        if n_dev:  # the speakers that follow the test speakers, cyclically
            start = spk.index(test[-1]) + 1
            dev = [s for s in spk[start:] + spk[:start] if s not in test][:n_dev]
        else:
            dev = groups[(i + 1) % k]
        train = [s for s in spk if s not in test and s not in dev]
        if train_speakers:
            if train_speakers > len(train):
                raise configs.ConfigError(f"--n-train-speakers {train_speakers}: fold {i} has only "
                                    f"{len(train)} training speakers")
            rng = np.random.default_rng(seed * 1000 + i)
            train = sorted(rng.choice(train, train_speakers, replace=False).tolist())
        if not train:
            raise configs.ConfigError(f"fold {i} has no training speaker left")
        folds.append(Fold(i, tuple(train), tuple(sorted(dev)), tuple(sorted(test))))
    return folds
