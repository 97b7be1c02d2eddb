"""What every corpus reader shares: the item to extract (:class:`Job`), a reader's result
(:class:`Reading`, with ``skipped`` rows from :func:`skip`), :class:`CorpusError`, text and
CSV reading (:func:`read_text`, ``_read_csv``, ``_read_rows``, ``_pick``, ``_split_of``), the
label map (:func:`parse_label_map`, :func:`apply_labels`) and the speaker splits
(:func:`assign_speaker_splits`).

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
import io
import json
import os
import re

import numpy as np

from emobed_tf.errors import EmobedError

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
    tfrecords_tools.corpora.shared.CorpusError: .../m.csv:2: not UTF-8 text (byte 0xe9 at offset 20); ...
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


def _corpus_name(folder: str) -> str:
    """A folder's name, or its parent's when it is a generic ``images`` folder."""
    folder = os.path.abspath(folder)
    name = os.path.basename(folder)
    if name.lower() in ("images", "imgs", "img"):
        name = os.path.basename(os.path.dirname(folder)) or name
    return name
