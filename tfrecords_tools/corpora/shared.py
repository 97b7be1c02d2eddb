"""Corpus readers: what to extract (jobs) and with which labels.

* OMG-Emotion: the annotation CSVs (``link,start,end,video,utterance,
  arousal,valence,EmotionMaxVote``) and the clip folder
  (``CLIPS/<video>/<utterance>``); each utterance gives an audio and a video
  job carrying the class and arousal/valence.
* Generic manifest CSV (``path,modality,label,split,speaker`` and optional
  ``corpus,recording,start,end,arousal,valence``): audio-only and video-only
  collections, possibly different corpora for the two modalities.
* RAVDESS (:func:`ravdess_jobs`): files named ``MM-VV-EE-II-SS-RR-AA.ext``
  anywhere under a folder; audio-visual (01) files give an audio and a video
  job, video-only (02) a video job, audio-only (03) an audio job; one take
  (``VV-EE-II-SS-RR-AA``) gives at most one item per modality: its audio
  from the audio-only 03 file (the original PCM WAV), else the 01 file; its
  video from the video-only 02 file, else the 01 file (the same picture);
  another file of the take is a ``duplicate`` row naming the kept one. Labels are
  RAVDESS's words (neutral, calm, happy, sad, angry, fearful, disgust,
  surprised), the speaker is the two-digit actor, the recording the file
  stem; intensity, statement, repetition, vocal channel and the take id
  (``VV-EE-II-SS-RR-AA``, shared by the audio-only and audio-visual files of
  one take) go to the record's ``meta``.
* Face images (:func:`image_jobs`): a labels CSV (``image``/``path``,
  ``emotion``/``label``, optional ``speaker``/``subject`` and ``split``) or
  one sub-folder per class; one video item per image.
* OpenFace 2 (:func:`openface_items`): ``FeatureExtraction`` per-frame CSVs,
  one per clip, read as features (no media decoding); labels from a CSV or
  from RAVDESS file names.
* Feature table (:func:`table_items`): one row per item with an id, label,
  speaker, optional split and numeric feature columns.
* AVEC 2016 / RECOLA: already extracted feature files (ARFF or CSV) and gold
  standards, imported frame by frame (no media decoding).

Every classification reader passes its labels through :func:`apply_labels`
(``--label-map``, ``--labels``): labels are mapped first, a label mapped to
``""`` is dropped (counted and listed), and a label outside the label set is
an error naming the file (and line). Inputs a reader cannot use (a file name
that does not parse, a missing image, a clip without a usable frame ...) are
returned as ``skipped`` rows ``{path, modality, reason}`` that the extraction
lists in ``OUT/failures.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import json
import os
import re

import numpy as np

# corpora.OMG_CLASSES: the OMG-Emotion class order, defined once in the configs
from emobed_tf.configs import OMG_CLASSES
from emobed_tf.errors import EmobedError

OMG_COLUMNS = ("link", "start", "end", "video", "utterance", "arousal", "valence",
               "EmotionMaxVote")
OMG_SPLITS = {"train": ("omg_TrainVideos.csv", "omg_train", "train"),
              "dev": ("omg_ValidationVideos.csv", "omg_valid", "valid", "validation", "dev"),
              "test": ("omg_TestVideos.csv", "omg_test", "test")}


class CorpusError(EmobedError, ValueError):
    """A corpus description that cannot be read; names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One media file (or segment) to turn into one item of one modality."""

    key: str
    modality: str
    path: str
    split: str
    label_class: int = -1
    label_dims: tuple = ()
    corpus: str = ""
    speaker: str = ""
    recording: str = ""
    start: float | None = None
    end: float | None = None
    label: str = ""  # the corpus' label word, before --label-map (label_class is set from it)
    meta: str = ""  # JSON object text stored in the record's ``meta``
    where: str = ""  # file (and line) the label comes from, for error messages

    def cache_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.key)


def read_text(path: str, what: str = "file") -> str:
    """A text file's content as UTF-8 (a byte-order mark is dropped).

    Anything else is a :class:`CorpusError` naming the file, the line and
    the byte offset of the first byte that is not UTF-8.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> _ = open(path, "wb").write("path,label\\na.wav,caf\u00e9\\n".encode("latin-1"))
    >>> read_text(path)
    Traceback (most recent call last):
    ...
    tfrecords_tools.corpora.CorpusError: .../m.csv:2: not UTF-8 text (byte 0xe9 at offset 20); ...
    """
    if not os.path.isfile(path):
        raise CorpusError(f"{path}: {what} not found")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise CorpusError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw.count(b"\n", 0, start) + 1
        raise CorpusError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[start]:02x} at offset "
                          f"{start}); save the file as UTF-8") from None


def _read_csv(path, required):
    with io.StringIO(read_text(path), newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"{path}: missing columns {missing} (has {reader.fieldnames})")
        return list(reader)


def _float(row, key, path, line):
    try:
        v = float(row[key])
    except (TypeError, ValueError) as err:
        raise CorpusError(f"{path}:{line}: {key}={row[key]!r} is not a number") from err
    if not np.isfinite(v):
        raise CorpusError(f"{path}:{line}: {key} is NaN/inf")
    return v


def find_omg_csv(csv_dir: str, split: str) -> str | None:
    for name in os.listdir(csv_dir):
        low = name.lower()
        if low.endswith(".csv") and any(p.lower() in low for p in OMG_SPLITS[split]):
            return os.path.join(csv_dir, name)
    return None


def omg_jobs(csv_dir: str, clips_dir: str, modalities=("audio", "video")) -> list:
    """Jobs for the OMG-Emotion splits whose CSV is in ``csv_dir``."""
    if not os.path.isdir(csv_dir):
        raise CorpusError(f"{csv_dir}: OMG annotation folder not found")
    jobs = []
    for split in ("train", "dev", "test"):
        path = find_omg_csv(csv_dir, split)
        if path is None:
            continue
        for line, row in enumerate(_read_csv(path, OMG_COLUMNS), start=2):
            try:
                label = int(float(row["EmotionMaxVote"]))
            except ValueError as err:
                raise CorpusError(f"{path}:{line}: EmotionMaxVote={row['EmotionMaxVote']!r} "
                                  "is not a class id") from err
            if not 0 <= label < len(OMG_CLASSES):
                raise CorpusError(f"{path}:{line}: EmotionMaxVote={label} outside "
                                  f"0..{len(OMG_CLASSES) - 1} "
                                  f"{list(OMG_CLASSES)}")
            dims = (_float(row, "arousal", path, line), _float(row, "valence", path, line))
            clip = os.path.join(clips_dir, row["video"], row["utterance"])
            rec = f"{row['video']}/{row['utterance']}"
            for mod in modalities:
                jobs.append(Job(f"{mod}/{split}/{rec}", mod, clip, split, label, dims, "omg",
                                row["video"], rec, label=OMG_CLASSES[label],
                                where=f"{path}:{line}"))
    if not jobs:
        raise CorpusError(f"{csv_dir}: no OMG annotation CSV (omg_TrainVideos.csv, "
                          "omg_ValidationVideos.csv, omg_TestVideos.csv)")
    return jobs


# -- reading results, label maps, speaker splits -----------------------------------


@dataclasses.dataclass
class Reading:
    """What a corpus reader found.

    Args:
        jobs: one :class:`Job` per item (``label`` holds the corpus' word;
            :func:`apply_labels` sets ``label_class``).
        skipped: inputs that give no item, ``{path, modality, reason, kind}``
            each (listed in ``OUT/failures.csv``, counted by ``kind``).
        features: ``{job key: [T, D] float32}`` for corpora read as features
            (OpenFace CSVs, tables); None for media to decode.
        feature_set: the features' description (feature corpora).
        label_names: the label set, once :func:`apply_labels` ran.
        stats: numbers for the summary and the manifest's ``extra``.
        frame_step_s: seconds between frames, when the reader measured it
            (OpenFace ``frames``); None: the writer's default.
    """

    jobs: list
    skipped: list = dataclasses.field(default_factory=list)
    features: dict | None = None
    feature_set: str = ""
    label_names: tuple = ()
    stats: dict = dataclasses.field(default_factory=dict)
    frame_step_s: float | None = None


def skip(path: str, modality: str, reason: str, kind: str) -> dict:
    """One input that gives no item, with the reason (a row of ``failures.csv``)."""
    return {"path": path, "modality": modality, "reason": reason, "kind": kind}


def parse_label_map(spec: str | None) -> dict:
    """``{from: to}`` from ``--label-map``: ``"angry=anger,calm="`` or a file.

    A file holds a JSON object (``{"angry": "anger", "calm": ""}``; ``null``
    is ``""``) or lines ``from=to`` (blank lines and ``#`` comments ignored).
    ``to`` empty drops the label. The map is applied once (not chained). An
    entry with more than one ``=`` (``angry=anger=rage``) is an error: a
    label never contains ``=``, so it is a typo, not a label ``anger=rage``.
    """
    if not spec:
        return {}
    if os.path.isfile(spec):
        text = read_text(spec)
        if text.lstrip().startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{spec}: label map is not valid JSON ({err})") from err
            out = {}
            for k, v in raw.items():
                if v is not None and not isinstance(v, str):
                    raise CorpusError(f"{spec}: label map entry {k!r}: {v!r} is not a label "
                                      "(a string; \"\" or null drops the label)")
                out[k.strip()] = (v or "").strip()
            return out
        entries = [(f"{spec}:{i}", line.strip()) for i, line in enumerate(text.splitlines(), 1)
                   if line.strip() and not line.strip().startswith("#")]
    else:
        if "=" not in spec:
            raise CorpusError(f"--label-map {spec}: no such file, and not FROM=TO[,FROM=TO...]")
        entries = [("--label-map", e.strip()) for e in spec.split(",") if e.strip()]
    out = {}
    for where, entry in entries:
        if entry.count("=") != 1:
            raise CorpusError(f"{where}: label map entry {entry!r} is not FROM=TO "
                              + ("(an empty TO drops the label)" if "=" not in entry else
                                 "(one '=' per entry: a label cannot contain '='; separate "
                                 "entries with ',')"))
        a, b = (x.strip() for x in entry.split("=", 1))
        if not a:
            raise CorpusError(f"{where}: label map entry {entry!r} has no FROM label")
        if a in out and out[a] != b:
            raise CorpusError(f"{where}: label {a!r} mapped twice ({out[a]!r} and {b!r})")
        out[a] = b
    return out


def apply_labels(reading: Reading, label_map=None, labels=None, order=None) -> Reading:
    """Maps labels, drops those mapped to ``""`` and sets every job's class id.

    Args:
        reading: a reader's result (jobs carry the corpus' label words).
        label_map: ``{from: to}`` (:func:`parse_label_map`).
        labels: the label set in class-id order; default: ``order`` mapped
            (OMG's fixed classes) or the sorted distinct mapped labels.

    Dropped items are counted per original label in
    ``stats["dropped_by_label_map"]`` and added to ``skipped``; a label
    outside the set is a :class:`CorpusError` naming the file (and line).
    """
    lm = dict(label_map or {})
    if labels:
        names = [x.strip() for x in labels]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup or "" in names:
            raise CorpusError(f"--labels {','.join(names)}: " + (f"repeats {dup}" if dup else
                                                                 "has an empty label"))
    kept, dropped, seen = [], {}, set()
    for j in reading.jobs:
        if not j.label:
            raise CorpusError(f"{j.where or j.path}: empty label")
        seen.add(j.label)
        lab = lm.get(j.label, j.label)
        if lab == "":
            dropped[j.label] = dropped.get(j.label, 0) + 1
            reading.skipped.append(skip(j.path, j.modality,
                                        f"label {j.label!r} dropped by the label map",
                                        "dropped_by_label_map"))
            continue
        kept.append((j, lab))
    if not labels:
        if order:
            names = list(dict.fromkeys(lm.get(o, o) for o in order if lm.get(o, o)))
        else:
            names = sorted({lab for _, lab in kept})
    jobs = []
    for j, lab in kept:
        if lab not in names:
            was = f" (mapped from {j.label!r})" if lab != j.label else ""
            raise CorpusError(f"{j.where or j.path}: unknown label {lab!r}{was}; the label set "
                              f"is {names}: map it with --label-map {j.label}=LABEL "
                              f"(or {j.label}= to drop it)")
        jobs.append(dataclasses.replace(j, label_class=names.index(lab)))
    if not jobs:
        raise CorpusError("no item left after the label map "
                          f"(dropped: {dropped or 'none'}, inputs skipped: {len(reading.skipped)})")
    reading.jobs = jobs
    reading.label_names = tuple(names)
    reading.stats["dropped_by_label_map"] = dropped
    unused = sorted(set(lm) - seen)
    if unused:
        reading.stats["label_map_unused"] = unused
    empty = [n for n in names if not any(j.label_class == names.index(n) for j in jobs)]
    if empty:
        reading.stats["labels_without_items"] = empty
    return reading


def assign_speaker_splits(reading: Reading, test_speakers=(), dev_speakers=()) -> Reading:
    """Splits by speaker: listed test/dev speakers, everyone else ``train``.

    Without either list the splits stay as read (all ``train`` for RAVDESS,
    face folders, OpenFace and tables without a split column);
    ``emobed_tf.crossval`` assigns speaker folds at read time, so one split
    is enough for cross-validation.
    """
    test, dev = set(test_speakers or ()), set(dev_speakers or ())
    if not test and not dev:
        return reading
    both = sorted(test & dev)
    if both:
        raise CorpusError(f"speakers {both} are in both --test-speakers and --dev-speakers")
    have = sorted({j.speaker for j in reading.jobs})
    unknown = sorted((test | dev) - set(have))
    if unknown:
        raise CorpusError(f"speakers {unknown} (--test-speakers/--dev-speakers) are not in the "
                          f"corpus; its speakers are {have}")
    reading.jobs = [dataclasses.replace(j, split="test" if j.speaker in test else
                                        "dev" if j.speaker in dev else "train")
                    for j in reading.jobs]
    return reading


def _clean_header(fieldnames, path):
    names = [(n or "").strip() for n in (fieldnames or [])]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CorpusError(f"{path}: repeated columns {dup}")
    return names


def _read_rows(path: str) -> tuple:
    """(stripped header, [(line, row dict)]) of a CSV (``,`` ``;`` or tab separated)."""
    with io.StringIO(read_text(path), newline="") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        delim = max((",", ";", "\t"), key=lambda d: sample.split("\n", 1)[0].count(d))
        reader = csv.reader(fh, delimiter=delim)
        try:
            header = _clean_header(next(reader), path)
        except StopIteration:
            raise CorpusError(f"{path}: empty file") from None
        rows = []
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise CorpusError(f"{path}:{line}: {len(row)} values, the header has "
                                  f"{len(header)} columns")
            rows.append((line, dict(zip(header, (c.strip() for c in row)))))
    return header, rows


def _pick(header, path, wanted, what, explicit=None, required=True):
    """The first of ``wanted`` in ``header`` (or ``explicit``, which must exist)."""
    if explicit is not None:
        if explicit == "" and not required:
            return None
        if explicit not in header:
            raise CorpusError(f"{path}: no {what} column {explicit!r} (columns: {header})")
        return explicit
    for w in wanted:
        if w in header:
            return w
    if required:
        raise CorpusError(f"{path}: no {what} column ({' or '.join(wanted)}; columns: {header})")
    return None


def _split_of(row, col, path, line):
    split = row[col] if col else "train"
    if split not in ("train", "dev", "test"):
        raise CorpusError(f"{path}:{line}: split {split!r} is not train/dev/test")
    return split


# -- generic manifest ----------------------------------------------------------------

MANIFEST_COLUMNS = ("path", "modality", "label", "split", "speaker")


def read_manifest(csv_path: str, modalities=("audio", "video")) -> Reading:
    """Jobs (labels not yet mapped) of a generic manifest CSV.

    Relative paths are taken relative to the CSV's folder. A row repeating
    an earlier one (same path, modality, label and segment) gives no second
    item: it is a ``skipped`` row of kind ``duplicate`` naming both lines
    (``stats["duplicates"]`` counts them). A row of a modality not in
    ``modalities`` (``--modalities``) is a ``skipped`` row of kind
    ``modality_not_selected``.
    """
    rows = _read_csv(csv_path, MANIFEST_COLUMNS)
    if not rows:
        raise CorpusError(f"{csv_path}: no rows")
    base = os.path.dirname(os.path.abspath(csv_path))
    jobs, skipped, seen = [], [], {}
    for line, r in enumerate(rows, start=2):
        if r["modality"] not in ("audio", "video"):
            raise CorpusError(f"{csv_path}:{line}: modality {r['modality']!r} is not audio/video")
        if r["split"] not in ("train", "dev", "test"):
            raise CorpusError(f"{csv_path}:{line}: split {r['split']!r} is not train/dev/test")
        path = r["path"] if os.path.isabs(r["path"]) else os.path.join(base, r["path"])
        dims = ()
        if r.get("arousal") not in (None, "") and r.get("valence") not in (None, ""):
            dims = (_float(r, "arousal", csv_path, line), _float(r, "valence", csv_path, line))
        rec = r.get("recording") or os.path.splitext(os.path.basename(r["path"]))[0]
        start = _float(r, "start", csv_path, line) if r.get("start") not in (None, "") else None
        end = _float(r, "end", csv_path, line) if r.get("end") not in (None, "") else None
        same = (os.path.normpath(path), r["modality"], r["label"], start, end)
        if r["modality"] not in modalities:
            skipped.append(skip(path, r["modality"], f"{csv_path}:{line}: modality "
                                f"{r['modality']} not selected (--modalities "
                                f"{','.join(modalities)})", "modality_not_selected"))
            continue
        if same in seen:
            skipped.append(skip(path, r["modality"], f"{csv_path}:{line}: repeats line "
                                f"{seen[same]} (same path, modality and label); written once",
                                "duplicate"))
            continue
        seen[same] = line
        jobs.append(Job(f"{r['modality']}/{r['split']}/{line}-{rec}", r["modality"], path,
                        r["split"], -1, dims, r.get("corpus") or "manifest", r["speaker"], rec,
                        start, end, label=r["label"], where=f"{csv_path}:{line}"))
    if not jobs:
        raise CorpusError(f"{csv_path}: no row of modality {' or '.join(modalities)} "
                          "(--modalities)")
    dups = sum(f["kind"] == "duplicate" for f in skipped)
    return Reading(jobs, skipped, stats={"duplicates": dups} if dups else {})


def manifest_jobs(csv_path: str, labels=None, label_map=None) -> Reading:
    """:func:`read_manifest` with the labels mapped and numbered (:func:`apply_labels`)."""
    return apply_labels(read_manifest(csv_path), label_map, labels)


# -- RAVDESS -------------------------------------------------------------------------

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fearful", "07": "disgust", "08": "surprised"}
RAVDESS_MODALITIES = {"01": ("audio", "video"), "02": ("video",), "03": ("audio",)}
RAVDESS_CHANNELS = {"01": "speech", "02": "song"}
RAVDESS_INTENSITIES = {"01": "normal", "02": "strong"}
RAVDESS_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
MEDIA_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".m4v", ".mov",
              ".avi", ".mkv", ".webm", ".flv")


def parse_ravdess_name(stem: str) -> dict:
    """The fields of a RAVDESS file stem ``MM-VV-EE-II-SS-RR-AA``.

    Returns ``modalities`` (jobs of the file), ``vocal_channel``, ``emotion``
    (RAVDESS's word), ``intensity``, ``statement``, ``repetition``, ``actor``
    (two digits, the speaker id) and ``take`` (``VV-EE-II-SS-RR-AA``, the same
    for the audio-only and audio-visual files of one take). Raises
    ValueError with the reason when the stem does not follow the pattern.
    """
    m = RAVDESS_NAME.fullmatch(stem)
    if not m:
        raise ValueError(f"name {stem!r} does not follow the RAVDESS pattern "
                         "MM-VV-EE-II-SS-RR-AA (seven two-digit fields)")
    mm, vv, ee, ii, ss, rr, aa = m.groups()
    checks = (("modality", mm, RAVDESS_MODALITIES), ("vocal channel", vv, RAVDESS_CHANNELS),
              ("emotion", ee, RAVDESS_EMOTIONS), ("intensity", ii, RAVDESS_INTENSITIES),
              ("statement", ss, ("01", "02")), ("repetition", rr, ("01", "02")))
    for what, code, allowed in checks:
        if code not in allowed:
            raise ValueError(f"name {stem!r}: {what} code {code} is not one of "
                             f"{', '.join(allowed)}")
    if aa == "00":
        raise ValueError(f"name {stem!r}: actor 00 is not an actor number")
    return {"modalities": RAVDESS_MODALITIES[mm], "vocal_channel": RAVDESS_CHANNELS[vv],
            "emotion": RAVDESS_EMOTIONS[ee], "intensity": RAVDESS_INTENSITIES[ii],
            "statement": ss, "repetition": rr, "actor": aa,
            "take": "-".join((vv, ee, ii, ss, rr, aa))}


def ravdess_meta(info: dict) -> str:
    """The record ``meta`` JSON of a parsed RAVDESS name."""
    keys = ("emotion", "intensity", "statement", "repetition", "vocal_channel", "take")
    return json.dumps({k: info[k] for k in keys}, separators=(",", ":"))


def _check_channels(channels):
    channels = tuple(channels)
    bad = [c for c in channels if c not in RAVDESS_CHANNELS.values()]
    if bad or not channels:
        raise CorpusError(f"--ravdess-channels {','.join(channels)}: choose among speech,song")
    return channels


def ravdess_jobs(root: str, channels=("speech", "song"), corpus: str = "ravdess",
                 modalities=("audio", "video")) -> Reading:
    """Jobs for the RAVDESS files under ``root`` (searched recursively).

    Every file is either a job or a ``skipped`` row: names off the pattern,
    extensions that are not media, a vocal channel not in ``channels``, a
    file giving no modality of ``modalities``, a second file of the same
    name elsewhere and a take's modality already read from another file
    (:data:`RAVDESS_PREFERENCE`; kind ``duplicate``, naming the kept file)
    are all listed with the reason. All items are ``train``; see
    :func:`assign_speaker_splits`.
    """
    channels = _check_channels(channels)
    if not os.path.isdir(root):
        raise CorpusError(f"{root}: RAVDESS folder not found")
    entries, skipped, first = [], [], {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            stem, ext = os.path.splitext(name)
            try:
                info = parse_ravdess_name(stem)
            except ValueError as err:
                skipped.append(skip(path, "", str(err), "bad_name"))
                continue
            mods = info["modalities"]
            if ext.lower() not in MEDIA_EXTS:
                skipped.append(skip(path, "+".join(mods), f"extension {ext!r} is not a media "
                                    f"file ({' '.join(MEDIA_EXTS)})", "not_media"))
                continue
            if stem in first:
                skipped.append(skip(path, "+".join(mods), f"same RAVDESS name as {first[stem]}",
                                    "duplicate"))
                continue
            first[stem] = path
            if info["vocal_channel"] not in channels:
                for mod in mods:
                    skipped.append(skip(path, mod, f"vocal channel {info['vocal_channel']} not "
                                        f"selected (--ravdess-channels {','.join(channels)})",
                                        "channel_not_selected"))
                continue
            wanted = [m for m in mods if m in modalities]
            if not wanted:
                skipped.append(skip(path, "+".join(mods), f"{'+'.join(mods)} file: modality not "
                                    f"selected (--modalities {','.join(modalities)})",
                                    "modality_not_selected"))
            entries += [(path, stem, info, mod) for mod in wanted]
    jobs = []
    for path, stem, info, mod, kept in _one_file_per_take(entries):
        if kept != path:
            skipped.append(skip(path, mod, f"take {info['take']}: its {mod} is read from {kept} "
                                f"({RAVDESS_PREFERENCE_TEXT[mod]})", "duplicate"))
            continue
        jobs.append(Job(f"{mod}/{stem}", mod, path, "train", corpus=corpus,
                        speaker=info["actor"], recording=stem, label=info["emotion"],
                        meta=ravdess_meta(info), where=path))
    if not jobs:
        raise CorpusError(f"{root}: no usable RAVDESS file ({len(skipped)} skipped"
                          + (f", e.g. {skipped[0]['path']}: {skipped[0]['reason']}" if skipped
                             else "") + ")")
    return Reading(jobs, skipped)


# which file of a take gives each modality, best first: the audio-only WAV holds the original
# 48 kHz PCM audio (the audio-visual MP4 the same audio AAC-compressed); the video-only MP4
# holds the same picture as the audio-visual one, without an audio track to demux
RAVDESS_PREFERENCE = {"audio": ("03", "01"), "video": ("02", "01")}
RAVDESS_PREFERENCE_TEXT = {"audio": "a take's audio comes from its audio-only 03 file, else its "
                                    "audio-visual 01 file",
                           "video": "a take's video comes from its video-only 02 file, else its "
                                    "audio-visual 01 file"}


def _one_file_per_take(entries) -> list:
    """``[(path, stem, info, modality, kept path)]``: which file gives each take's modality.

    ``entries`` are ``(path, stem, info, modality)`` in folder order; per
    (take, modality) the file first in :data:`RAVDESS_PREFERENCE` is kept
    (two files of one take and modality code have one name: the second is
    already a ``same RAVDESS name`` duplicate).
    """
    best = {}
    for path, stem, info, mod in entries:
        rank = RAVDESS_PREFERENCE[mod].index(stem[:2])
        key = (info["take"], mod)
        if key not in best or rank < best[key][0]:
            best[key] = (rank, path)
    return [(path, stem, info, mod, best[(info["take"], mod)][1])
            for path, stem, info, mod in entries]


# -- face images ---------------------------------------------------------------------

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")  # what media.video_frames reads as a still


def _corpus_name(folder: str) -> str:
    """A folder's name, or its parent's when it is a generic ``images`` folder."""
    folder = os.path.abspath(folder)
    name = os.path.basename(folder)
    if name.lower() in ("images", "imgs", "img"):
        name = os.path.basename(os.path.dirname(folder)) or name
    return name


def image_jobs(images_dir: str | None = None, labels_csv: str | None = None,
               corpus: str | None = None) -> Reading:
    """One video job per face image.

    With ``labels_csv``: columns ``image`` or ``path``, ``emotion`` or
    ``label``, optional ``speaker`` or ``subject`` (else the speaker is
    unknown, ``""``) and ``split``; relative paths are looked up under
    ``images_dir`` first, then beside the CSV. Without it: one sub-folder of
    ``images_dir`` per class (searched recursively inside). Missing images,
    non-image files and files outside a class folder are ``skipped`` rows.
    The corpus name is ``corpus`` or the folder's name (the parent's for a
    folder called ``images``).
    """
    if images_dir and not os.path.isdir(images_dir):
        raise CorpusError(f"{images_dir}: image folder not found")
    if not images_dir and not labels_csv:
        raise CorpusError("the images corpus needs --images-dir, --labels-csv or both")
    corpus = corpus or _corpus_name(images_dir or os.path.dirname(os.path.abspath(labels_csv)))
    jobs, skipped = [], []
    if labels_csv:
        header, rows = _read_rows(labels_csv)
        icol = _pick(header, labels_csv, ("image", "path"), "image")
        lcol = _pick(header, labels_csv, ("emotion", "label"), "label")
        scol = _pick(header, labels_csv, ("speaker", "subject"), "speaker", required=False)
        tcol = "split" if "split" in header else None
        bases = list(dict.fromkeys(b for b in (images_dir, os.path.dirname(
            os.path.abspath(labels_csv))) if b))
        for line, r in rows:
            rel = r[icol]
            if not rel:
                raise CorpusError(f"{labels_csv}:{line}: empty {icol}")
            split = _split_of(r, tcol, labels_csv, line)
            cands = [rel] if os.path.isabs(rel) else [os.path.join(b, rel) for b in bases]
            path = next((c for c in cands if os.path.isfile(c)), None)
            if path is None:
                skipped.append(skip(cands[0], "video", f"{labels_csv}:{line}: image file not "
                                    f"found (looked for {' and '.join(cands)})", "missing_file"))
                continue
            rec = os.path.splitext(rel.replace("\\", "/"))[0]
            jobs.append(Job(f"video/{line}-{rec}", "video", path, split, corpus=corpus,
                            speaker=r[scol] if scol else "", recording=rec, label=r[lcol],
                            where=f"{labels_csv}:{line}"))
    else:
        for entry in sorted(os.listdir(images_dir)):
            top = os.path.join(images_dir, entry)
            if not os.path.isdir(top):
                skipped.append(skip(top, "video", "not in a class sub-folder (without "
                                    "--labels-csv, each class is a sub-folder)", "no_class"))
                continue
            for folder, dirs, files in os.walk(top):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    if not name.lower().endswith(IMAGE_EXTS):
                        skipped.append(skip(path, "video", "not an image file "
                                            f"({' '.join(IMAGE_EXTS)})", "not_image"))
                        continue
                    rec = os.path.splitext(os.path.relpath(path, images_dir))[0].replace(
                        os.sep, "/")
                    jobs.append(Job(f"video/{rec}", "video", path, "train", corpus=corpus,
                                    recording=rec, label=entry, where=path))
    if not jobs:
        raise CorpusError(f"{labels_csv or images_dir}: no usable image ({len(skipped)} "
                          "skipped" + (f", e.g. {skipped[0]['reason']}" if skipped else "") + ")")
    return Reading(jobs, skipped)


# -- OpenFace 2 ----------------------------------------------------------------------

OPENFACE_GROUPS = ("au_r", "au_c", "gaze", "pose")
# what OpenFace 2 FeatureExtraction writes: 17 AU intensities, 18 AU presences (AU28 has no
# intensity), gaze angles and head rotation; a group always means all of its columns
OPENFACE_AUS = {"au_r": (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45),
                "au_c": (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)}
OPENFACE_FIXED = {"gaze": ("gaze_angle_x", "gaze_angle_y"),
                  "pose": ("pose_Rx", "pose_Ry", "pose_Rz"),
                  **{g: tuple(f"AU{n:02d}_{g[-1]}" for n in aus)
                     for g, aus in OPENFACE_AUS.items()}}
OPENFACE_POOLS = ("frames", "mean", "functionals")
OPENFACE_FACE_RULES = ("most", "largest")
OPENFACE_LANDMARKS = tuple(f"x_{i}" for i in range(68)) + tuple(f"y_{i}" for i in range(68))
FRAME_RATE_TOLERANCE = 0.01  # --openface-pool frames: clips' frame steps may differ this much


def openface_columns(groups) -> list:
    """The feature columns of ``--openface-features`` groups, in the fixed order.

    Groups always come in the order au_r, au_c, gaze, pose whatever the
    order asked; AU columns by AU number (the 17 ``AUxx_r`` and the 18
    ``AUxx_c`` OpenFace 2 writes); gaze = ``gaze_angle_x, gaze_angle_y``;
    pose = ``pose_Rx, pose_Ry, pose_Rz``. The set depends on the groups
    only, never on a file's header: every file must have all of them
    (:func:`read_openface_csv`), so no clip is written with fewer features.

    >>> openface_columns(("pose", "gaze"))
    ['gaze_angle_x', 'gaze_angle_y', 'pose_Rx', 'pose_Ry', 'pose_Rz']
    >>> len(openface_columns(OPENFACE_GROUPS))
    40
    """
    groups = tuple(groups)
    bad = [g for g in groups if g not in OPENFACE_GROUPS]
    if bad or not groups:
        raise CorpusError(f"--openface-features {','.join(groups)}: choose among "
                          f"{','.join(OPENFACE_GROUPS)}")
    return [c for g in OPENFACE_GROUPS if g in groups for c in OPENFACE_FIXED[g]]


def openface_face_rule(face) -> str | int:
    """``--openface-face``: ``"most"``, ``"largest"`` or a face_id (an int).

    >>> openface_face_rule("2"), openface_face_rule("most")
    (2, 'most')
    """
    text = str(face).strip()
    if text in OPENFACE_FACE_RULES:
        return text
    if re.fullmatch(r"\d+", text):
        return int(text)
    raise CorpusError(f"--openface-face {face}: choose most, largest or a face_id (a whole "
                      "number >= 0)")


@dataclasses.dataclass
class OpenFaceClip:
    """What :func:`read_openface_csv` read from one clip's CSV.

    Args:
        columns: the feature columns (:func:`openface_columns`).
        frames: the kept frames [N, D] float64 (the chosen face, success 1,
            confidence >= the minimum).
        dropped: frames of the chosen face dropped by success/confidence.
        read: all frames of the chosen face.
        other_faces: rows of other faces left out (``face_id`` column).
        face_ids: the face ids in the file (``()`` without a face_id column).
        step_s: seconds between frames (:func:`frame_step`), None without a
            ``timestamp`` column or with fewer than two frames.
    """

    columns: list
    frames: np.ndarray
    dropped: int
    read: int
    other_faces: int = 0
    face_ids: tuple = ()
    step_s: float | None = None


def frame_step(path: str, t) -> float | None:
    """Seconds between frames of a clip's timestamps (None for fewer than two).

    The median difference (robust to frames missing in between), refined
    over the clip's whole span as OpenFace rounds timestamps to 1 ms: a
    30 frames/s clip gives 1/30 s, not 0.033 s.

    >>> round(frame_step("c.csv", [0.0, 0.033, 0.067, 0.1, 0.133, 0.2]), 6)
    0.033333
    """
    t = np.asarray(t, np.float64)
    if len(t) < 2:
        return None
    med = float(np.median(np.diff(t)))
    if med <= 0:
        raise CorpusError(f"{path}: the timestamps do not increase (median step {med:g} s)")
    return float((t[-1] - t[0]) / max(1, round((t[-1] - t[0]) / med)))


def _pick_face(path, header, rows, face, num) -> tuple:
    """(rows of the face chosen by ``face``, rows of other faces, face ids).

    A CSV without a ``face_id`` column holds one face. ``most``: the face_id
    in the most rows (frames), ties broken by the higher mean confidence,
    then the lower id. ``largest``: per frame, the face whose 2D landmarks
    (``x_0..x_67``, ``y_0..y_67``) span the largest box (ties: the lower
    id). An int: that face_id (no row of it: no frame).
    """
    if "face_id" not in header:
        return rows, [], ()
    ids = []
    for line, r in rows:
        v = num(r, "face_id", line)
        if v != int(v) or v < 0:
            raise CorpusError(f"{path}:{line}: face_id {r['face_id']!r} is not a face id")
        ids.append(int(v))
    faces = tuple(sorted(set(ids)))
    if isinstance(face, int):
        keep = [i == face for i in ids]
    elif len(faces) <= 1:
        keep = [True] * len(rows)
    elif face == "most":
        conf = {f: [num(r, "confidence", line) for (line, r), i in zip(rows, ids) if i == f]
                for f in faces}
        best = max(faces, key=lambda f: (len(conf[f]), float(np.mean(conf[f])), -f))
        keep = [i == best for i in ids]
    else:
        keep = _largest_per_frame(path, header, rows, ids, faces, num)
    return ([row for row, k in zip(rows, keep) if k], [row for row, k in zip(rows, keep) if not k],
            faces)


def _largest_per_frame(path, header, rows, ids, faces, num) -> list:
    """Per row: is it the frame's face with the largest 2D landmark box (ties: lower id)?"""
    if any(c not in header for c in OPENFACE_LANDMARKS):
        raise CorpusError(f"{path}: --openface-face largest needs the 2D landmark columns "
                          f"x_0..x_67, y_0..y_67 and this CSV has no landmark columns (it holds "
                          f"faces {list(faces)}); choose --openface-face most or a face_id")
    if "frame" not in header:
        raise CorpusError(f"{path}: --openface-face largest needs the 'frame' column")
    best = {}
    for k, ((line, r), i) in enumerate(zip(rows, ids)):
        xs = [num(r, f"x_{j}", line) for j in range(68)]
        ys = [num(r, f"y_{j}", line) for j in range(68)]
        size = ((max(xs) - min(xs)) * (max(ys) - min(ys)), -i)
        frame = num(r, "frame", line)
        if frame not in best or size > best[frame][0]:
            best[frame] = (size, k)
    chosen = {k for _, k in best.values()}
    return [k in chosen for k in range(len(rows))]


def read_openface_csv(path: str, groups=OPENFACE_GROUPS, min_confidence: float = 0.8,
                      face="most") -> OpenFaceClip:
    """One clip's OpenFace CSV: the chosen face's frames (see :class:`OpenFaceClip`).

    Header names are stripped (OpenFace writes ``frame, face_id, ...``);
    every column of ``groups`` must be present (:func:`openface_columns`),
    else a :class:`CorpusError` names the file and the missing columns.
    ``face`` picks one face of a multi-face CSV (:func:`_pick_face`); frames
    with ``success == 0`` or ``confidence < min_confidence`` are dropped.
    """
    header, rows = _read_rows(path)
    for need in ("success", "confidence"):
        if need not in header:
            raise CorpusError(f"{path}: no {need!r} column: not an OpenFace FeatureExtraction "
                              f"CSV (columns: {header[:8]}...)")
    cols = openface_columns(groups)
    missing = [c for c in cols if c not in header]
    if missing:
        lacking = [g for g in OPENFACE_GROUPS if set(OPENFACE_FIXED[g]) & set(missing)]
        raise CorpusError(f"{path}: no columns {missing} of --openface-features "
                          f"{','.join(lacking)} (OpenFace 2 FeatureExtraction writes them all; "
                          "was it run with that output, or choose other groups)")

    def num(r, c, line):
        try:
            v = float(r[c])
        except ValueError:
            raise CorpusError(f"{path}:{line}: column {c!r}: {r[c]!r} is not a number") from None
        if not np.isfinite(v):
            raise CorpusError(f"{path}:{line}: column {c!r} is NaN/inf")
        return v

    mine, others, faces = _pick_face(path, header, rows, openface_face_rule(face), num)
    kept, dropped = [], 0
    for line, r in mine:
        if num(r, "success", line) == 0 or num(r, "confidence", line) < min_confidence:
            dropped += 1
            continue
        kept.append([num(r, c, line) for c in cols])
    step = None
    if "timestamp" in header:
        step = frame_step(path, [num(r, "timestamp", line) for line, r in mine])
    x = np.array(kept, np.float64).reshape(len(kept), len(cols))
    return OpenFaceClip(cols, x, dropped, len(mine), len(others), faces, step)


def pool_frames(x: np.ndarray, pool: str) -> np.ndarray:
    """[T, D] frames -> ``frames`` [T, D], ``mean`` [1, D] or ``functionals`` [1, 2D]."""
    if pool == "frames":
        return x.astype(np.float32)
    if pool == "mean":
        return x.mean(0, keepdims=True).astype(np.float32)
    if pool == "functionals":
        return np.concatenate([x.mean(0), x.std(0)])[None].astype(np.float32)
    raise CorpusError(f"--openface-pool must be one of {OPENFACE_POOLS}, got {pool!r}")


def _read_label_table(path: str) -> dict:
    """``{clip: (label, speaker, split, where)}`` from a clip labels CSV."""
    header, rows = _read_rows(path)
    ccol = _pick(header, path, ("clip",), "clip")
    lcol = _pick(header, path, ("label", "emotion"), "label")
    scol = _pick(header, path, ("speaker", "actor"), "speaker")
    tcol = "split" if "split" in header else None
    out = {}
    for line, r in rows:
        clip = os.path.splitext(r[ccol])[0] if r[ccol].lower().endswith(".csv") else r[ccol]
        if not clip:
            raise CorpusError(f"{path}:{line}: empty clip")
        if clip in out:
            raise CorpusError(f"{path}:{line}: clip {clip!r} already labelled at "
                              f"{out[clip][3]}")
        out[clip] = (r[lcol], r[scol], _split_of(r, tcol, path, line), f"{path}:{line}")
    return out


def openface_items(openface_dir: str, labels_csv: str | None = None, groups=OPENFACE_GROUPS,
                   pool: str = "frames", min_confidence: float = 0.8,
                   channels=("speech", "song"), corpus: str | None = None,
                   face="most") -> Reading:
    """Video items from OpenFace 2 ``FeatureExtraction`` CSVs (one per clip) under a folder.

    Only ``*.csv`` files are read (OpenFace's HOG, details and aligned-face
    outputs beside them are not clips). Labels and speakers come from
    ``labels_csv`` (``clip`` = the CSV's stem, ``label``/``emotion``,
    ``speaker``/``actor``, optional ``split``) or, without it, from RAVDESS
    clip names (``channels`` filters the vocal channel). Every clip must
    have every column of ``groups`` (an error names the file otherwise).

    A CSV with several ``face_id`` values holds several tracked faces: only
    the one ``face`` chooses is read (``most``, ``largest`` or an id, see
    :func:`_pick_face`); the other faces' rows are counted per clip
    (``stats["other_face_frames"]``). With ``pool="frames"`` every clip's
    frame step is measured from its ``timestamp`` column (:func:`frame_step`):
    clips whose rates differ by more than 1% are an error naming two of
    them, else the measured step is ``Reading.frame_step_s``.

    Dropped frames are counted (``stats``); a clip without a usable frame
    (or without a frame of the chosen face_id), a clip without a label row
    and a labelled clip without a CSV are ``skipped`` rows.
    """
    if pool not in OPENFACE_POOLS:
        raise CorpusError(f"--openface-pool must be one of {OPENFACE_POOLS}, got {pool!r}")
    channels = _check_channels(channels)
    openface_columns(groups)
    face = openface_face_rule(face)
    if not os.path.isdir(openface_dir):
        raise CorpusError(f"{openface_dir}: OpenFace output folder not found")
    table = _read_label_table(labels_csv) if labels_csv else None
    skip_path = os.path.abspath(labels_csv) if labels_csv else None
    corpus = corpus or ("ravdess" if table is None else _corpus_name(openface_dir))
    paths = {}
    skipped, jobs, feats = [], [], {}
    for folder, dirs, files in os.walk(openface_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            if not name.lower().endswith(".csv") or os.path.abspath(path) == skip_path:
                continue
            stem = os.path.splitext(name)[0]
            if stem in paths:
                skipped.append(skip(path, "video", f"same clip name as {paths[stem]}",
                                    "duplicate"))
                continue
            paths[stem] = path
    columns = openface_columns(groups)
    per_clip, others, steps, total, dropped_total = {}, {}, {}, 0, 0
    for stem, path in paths.items():
        meta = ""
        if table is not None:
            if stem not in table:
                skipped.append(skip(path, "video", f"clip {stem!r} has no row in {labels_csv}",
                                    "no_label"))
                continue
            label, speaker, split, where = table[stem]
        else:
            try:
                info = parse_ravdess_name(stem)
            except ValueError as err:
                skipped.append(skip(path, "video", f"{err}; without --labels-csv the labels "
                                    "come from RAVDESS clip names", "bad_name"))
                continue
            if info["vocal_channel"] not in channels:
                skipped.append(skip(path, "video", f"vocal channel {info['vocal_channel']} not "
                                    f"selected (--ravdess-channels {','.join(channels)})",
                                    "channel_not_selected"))
                continue
            label, speaker, split, where = info["emotion"], info["actor"], "train", path
            meta = ravdess_meta(info)
        clip = read_openface_csv(path, groups, min_confidence, face)
        total += clip.read
        dropped_total += clip.dropped
        if clip.dropped:
            per_clip[stem] = clip.dropped
        if clip.other_faces:
            others[stem] = clip.other_faces
        if clip.read == 0 and isinstance(face, int) and clip.face_ids:
            skipped.append(skip(path, "video", f"no frame of face_id {face} (face ids in the "
                                f"file: {', '.join(map(str, clip.face_ids))}; --openface-face)",
                                "no_usable_frame"))
            continue
        if len(clip.frames) == 0:
            skipped.append(skip(path, "video", f"no usable frame: all {clip.read} frames have "
                                f"success 0 or confidence < {min_confidence}",
                                "no_usable_frame"))
            continue
        if pool == "frames":
            steps[path] = _clip_step(path, clip)
        key = f"video/{stem}"
        feats[key] = pool_frames(clip.frames, pool)
        jobs.append(Job(key, "video", path, split, corpus=corpus, speaker=speaker,
                        recording=stem, label=label, meta=meta, where=where))
    if table is not None:
        for clip_name, (_, _, _, where) in table.items():
            if clip_name not in paths:
                skipped.append(skip(os.path.join(openface_dir, clip_name + ".csv"), "video",
                                    f"{where}: no OpenFace CSV for clip {clip_name!r}",
                                    "missing_file"))
    if not jobs:
        raise CorpusError(f"{openface_dir}: no usable OpenFace clip ({len(skipped)} skipped"
                          + (f", e.g. {skipped[0]['reason']}" if skipped else "") + ")")
    names = columns if pool != "functionals" else ([f"{c}_mean" for c in columns]
                                                   + [f"{c}_std" for c in columns])
    stats = {"frames_read": total, "frames_dropped": dropped_total,
             "frames_dropped_per_clip": per_clip, "feature_names": names,
             "min_confidence": min_confidence, "openface_face": face,
             "other_face_frames": sum(others.values()), "other_face_frames_per_clip": others}
    groups_used = [g for g in OPENFACE_GROUPS if g in groups]
    return Reading(jobs, skipped, feats, f"OpenFace 2 {'+'.join(groups_used)} ({pool})",
                   stats=stats, frame_step_s=_common_step(steps))


def _clip_step(path: str, clip: OpenFaceClip) -> float | None:
    """A clip's frame step for ``--openface-pool frames`` (which records one for all clips)."""
    if clip.step_s is None and clip.read > 1:
        raise CorpusError(f"{path}: no 'timestamp' column, so the frame rate that "
                          "--openface-pool frames records cannot be measured; use "
                          "--openface-pool mean or functionals")
    return clip.step_s


def _common_step(steps: dict) -> float | None:
    """The clips' common frame step (the median), or an error naming two clips that differ.

    ``steps``: ``{path: seconds or None}`` (None: a one-frame clip, any rate).
    """
    known = {p: s for p, s in steps.items() if s is not None}
    if not known:
        return None
    slow, fast = max(known, key=known.get), min(known, key=known.get)
    if known[slow] - known[fast] > FRAME_RATE_TOLERANCE * known[fast]:
        raise CorpusError(f"{slow} has {1 / known[slow]:.3g} frames/s ({known[slow]:.4g} s "
                          f"step) and {fast} {1 / known[fast]:.3g} frames/s ({known[fast]:.4g} "
                          "s): --openface-pool frames records one frame step for all clips, so "
                          "their rates must agree within 1%; resample the clips, or use "
                          "--openface-pool mean or functionals")
    return float(np.median(list(known.values())))


# -- feature tables ------------------------------------------------------------------


def table_items(path: str, modality: str, id_column=None, label_column=None,
                speaker_column=None, split_column=None, corpus: str | None = None) -> Reading:
    """Items from a feature table, one row per item (features [1, D]).

    Columns: id (``id``, else ``clip``), label (``label``, else ``emotion``),
    speaker (``speaker``, else ``actor``; ``speaker_column=""`` for none),
    split (``split`` if present, else all ``train``); every other column is
    a feature, in table order, and must be numeric and finite.
    """
    if modality not in ("audio", "video"):
        raise CorpusError(f"--modality must be audio or video, got {modality!r}")
    header, rows = _read_rows(path)
    if not rows:
        raise CorpusError(f"{path}: no rows")
    icol = _pick(header, path, ("id", "clip"), "id", id_column)
    lcol = _pick(header, path, ("label", "emotion"), "label", label_column)
    if speaker_column is None and not any(c in header for c in ("speaker", "actor")):
        raise CorpusError(f"{path}: no speaker column (speaker or actor; columns: {header}); "
                          "name it with --speaker-column, or --speaker-column '' for none")
    scol = _pick(header, path, ("speaker", "actor"), "speaker", speaker_column, required=False)
    tcol = _pick(header, path, ("split",), "split", split_column, required=False)
    cols = [c for c in header if c not in (icol, lcol, scol, tcol)]
    if not cols:
        raise CorpusError(f"{path}: no feature columns besides {[icol, lcol, scol, tcol]}")
    corpus = corpus or os.path.splitext(os.path.basename(path))[0]
    jobs, feats, seen = [], {}, {}
    for line, r in rows:
        rid = r[icol]
        if not rid:
            raise CorpusError(f"{path}:{line}: empty {icol}")
        if rid in seen:
            raise CorpusError(f"{path}:{line}: {icol} {rid!r} repeats line {seen[rid]}")
        seen[rid] = line
        vals = []
        for c in cols:
            try:
                v = float(r[c])
            except ValueError:
                raise CorpusError(f"{path}:{line}: column {c!r}: {r[c]!r} is not a number "
                                  "(every column besides id, label, speaker and split is a "
                                  "feature)") from None
            if not np.isfinite(v):
                raise CorpusError(f"{path}:{line}: column {c!r} is NaN/inf")
            vals.append(v)
        key = f"{modality}/{rid}"
        feats[key] = np.asarray(vals, np.float32)[None]
        jobs.append(Job(key, modality, path, _split_of(r, tcol, path, line), corpus=corpus,
                        speaker=r[scol] if scol else "", recording=rid, label=r[lcol],
                        where=f"{path}:{line}"))
    return Reading(jobs, [], feats, f"table {os.path.basename(path)} ({len(cols)} columns)",
                   stats={"feature_names": cols})


# -- AVEC 2016 -----------------------------------------------------------------


def read_table(path: str) -> tuple:
    """(column names, numeric matrix) of an ARFF or CSV feature/label file.

    String columns (``Instance_name``) and ``frameTime`` are dropped.
    """
    if path.lower().endswith(".arff"):
        names, types, rows, in_data = [], [], [], False
        for line in read_text(path).splitlines():
            s = line.strip()
            if not s or s.startswith("%"):
                continue
            low = s.lower()
            if not in_data and low.startswith("@attribute"):
                parts = s.split(None, 2)
                names.append(parts[1].strip("'\""))
                types.append(parts[2].lower() if len(parts) > 2 else "numeric")
            elif low.startswith("@data"):
                in_data = True
            elif in_data:
                rows.append(s.split(","))
        keep = [i for i, (n, t) in enumerate(zip(names, types))
                if t.startswith(("numeric", "real", "integer")) and n.lower() != "frametime"]
    else:
        with io.StringIO(read_text(path), newline="") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            delim = ";" if sample.count(";") > sample.count(",") else ","
            reader = csv.reader(fh, delimiter=delim)
            names = next(reader)
            rows = list(reader)
        keep = [i for i, n in enumerate(names) if n.lower() not in ("frametime", "instance_name",
                                                                      "name", "time")]
    try:
        mat = np.array([[float(r[i]) for i in keep] for r in rows], np.float32)
    except (ValueError, IndexError) as err:
        raise CorpusError(f"{path}: non-numeric or short data row ({err})") from err
    if mat.size and not np.all(np.isfinite(mat)):
        raise CorpusError(f"{path}: NaN/inf values")
    return [names[i] for i in keep], mat


AVEC_PARTITIONS = {"train": "train", "dev": "dev", "devel": "dev", "test": "test"}


def avec_files(folder: str) -> dict:
    """``{(split, recording): path}`` for ``train_1.arff``-style files under ``folder``."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*.*"), recursive=True)):
        m = re.fullmatch(r"(train|dev|devel|test)_(\d+)\.(arff|csv)", os.path.basename(path),
                         re.I)
        if m:
            out.setdefault((AVEC_PARTITIONS[m.group(1).lower()], f"{m.group(1)}_{m.group(2)}"),
                           path)
    return out
