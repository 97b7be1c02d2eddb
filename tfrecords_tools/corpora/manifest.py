"""Generic manifest CSV (``path,modality,label,split,speaker`` and optional
``corpus,recording,start,end,arousal,valence``): audio-only and video-only
collections, possibly different corpora for the two modalities.
"""

from __future__ import annotations

import os

from tfrecords_tools.corpora.shared import (CorpusError, Job, Reading, _float, _read_csv,
                                            apply_labels, skip)

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
