"""Corpus readers: what to extract (jobs) and with which labels.

* OMG-Emotion: the annotation CSVs (``link,start,end,video,utterance,
  arousal,valence,EmotionMaxVote``) and the clip folder
  (``CLIPS/<video>/<utterance>``); each utterance gives an audio and a video
  job carrying the class and arousal/valence.
* Generic manifest CSV (``path,modality,label,split,speaker`` and optional
  ``corpus,recording,start,end,arousal,valence``): audio-only and video-only
  collections, possibly different corpora for the two modalities.
* AVEC 2016 / RECOLA: already extracted feature files (ARFF or CSV) and gold
  standards, imported frame by frame (no media decoding).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os
import re

import numpy as np

OMG_CLASSES = ("Anger", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
OMG_COLUMNS = ("link", "start", "end", "video", "utterance", "arousal", "valence",
               "EmotionMaxVote")
OMG_SPLITS = {"train": ("omg_TrainVideos.csv", "omg_train", "train"),
              "dev": ("omg_ValidationVideos.csv", "omg_valid", "valid", "validation", "dev"),
              "test": ("omg_TestVideos.csv", "omg_test", "test")}


class CorpusError(ValueError):
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

    def cache_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.key)


def _read_csv(path, required):
    if not os.path.isfile(path):
        raise CorpusError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:
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
                raise CorpusError(f"{path}:{line}: EmotionMaxVote={label} outside 0..6 "
                                  f"{list(OMG_CLASSES)}")
            dims = (_float(row, "arousal", path, line), _float(row, "valence", path, line))
            clip = os.path.join(clips_dir, row["video"], row["utterance"])
            rec = f"{row['video']}/{row['utterance']}"
            for mod in modalities:
                jobs.append(Job(f"{mod}/{split}/{rec}", mod, clip, split, label, dims, "omg",
                                row["video"], rec))
    if not jobs:
        raise CorpusError(f"{csv_dir}: no OMG annotation CSV (omg_TrainVideos.csv, "
                          "omg_ValidationVideos.csv, omg_TestVideos.csv)")
    return jobs


MANIFEST_COLUMNS = ("path", "modality", "label", "split", "speaker")


def manifest_jobs(csv_path: str, labels=None) -> tuple:
    """(jobs, label names) from a generic manifest CSV.

    Relative paths are taken relative to the CSV's folder. ``labels`` fixes
    the label set and order; otherwise the sorted distinct labels are used.
    """
    rows = _read_csv(csv_path, MANIFEST_COLUMNS)
    if not rows:
        raise CorpusError(f"{csv_path}: no rows")
    names = list(labels) if labels else sorted({r["label"] for r in rows})
    base = os.path.dirname(os.path.abspath(csv_path))
    jobs = []
    for line, r in enumerate(rows, start=2):
        if r["modality"] not in ("audio", "video"):
            raise CorpusError(f"{csv_path}:{line}: modality {r['modality']!r} is not audio/video")
        if r["split"] not in ("train", "dev", "test"):
            raise CorpusError(f"{csv_path}:{line}: split {r['split']!r} is not train/dev/test")
        if r["label"] not in names:
            raise CorpusError(f"{csv_path}:{line}: unknown label {r['label']!r} "
                              f"(labels: {names})")
        path = r["path"] if os.path.isabs(r["path"]) else os.path.join(base, r["path"])
        dims = ()
        if r.get("arousal") not in (None, "") and r.get("valence") not in (None, ""):
            dims = (_float(r, "arousal", csv_path, line), _float(r, "valence", csv_path, line))
        rec = r.get("recording") or os.path.splitext(os.path.basename(r["path"]))[0]
        start = _float(r, "start", csv_path, line) if r.get("start") not in (None, "") else None
        end = _float(r, "end", csv_path, line) if r.get("end") not in (None, "") else None
        jobs.append(Job(f"{r['modality']}/{r['split']}/{line}-{rec}", r["modality"], path,
                        r["split"], names.index(r["label"]), dims, r.get("corpus") or "manifest",
                        r["speaker"], rec, start, end))
    return jobs, names


# -- AVEC 2016 -----------------------------------------------------------------


def read_table(path: str) -> tuple:
    """(column names, numeric matrix) of an ARFF or CSV feature/label file.

    String columns (``Instance_name``) and ``frameTime`` are dropped.
    """
    if path.lower().endswith(".arff"):
        names, types, rows, in_data = [], [], [], False
        with open(path) as fh:
            for line in fh:
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
        with open(path, newline="") as fh:
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
