"""AVEC 2016 / RECOLA: already extracted feature files (ARFF or CSV) and gold
standards (:func:`avec_files`, :func:`read_table`), imported frame by frame (no
media decoding; ``extract`` pairs features and gold standards).
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re

import numpy as np

from tfrecords_tools.corpora.shared import CorpusError, read_text

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
