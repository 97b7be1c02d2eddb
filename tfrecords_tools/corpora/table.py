"""Feature table (:func:`table_items`): one row per item with an id, label,
speaker, optional split and numeric feature columns.
"""

from __future__ import annotations

import os

import numpy as np

from tfrecords_tools.corpora.shared import CorpusError, Job, Reading, _pick, _read_rows, _split_of

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
