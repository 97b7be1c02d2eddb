"""Face images (:func:`image_jobs`): a labels CSV (``image``/``path``,
``emotion``/``label``, optional ``speaker``/``subject`` and ``split``) or
one sub-folder per class; one video item per image.
"""

from __future__ import annotations

import os

from tfrecords_tools.corpora.shared import (CorpusError, Job, Reading, _corpus_name, _pick,
                                            _read_rows, _split_of, skip)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")  # what media.video_frames reads as a still


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
