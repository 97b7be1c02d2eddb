"""OpenFace 2 (:func:`openface_items`): ``FeatureExtraction`` per-frame CSVs,
one per clip, read as features (no media decoding); labels from a CSV or
from RAVDESS file names.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from tfrecords_tools.corpora.ravdess import _check_channels, parse_ravdess_name, ravdess_meta
from tfrecords_tools.corpora.shared import (CorpusError, Job, Reading, _corpus_name, _pick,
                                            _read_rows, _split_of, skip)

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
