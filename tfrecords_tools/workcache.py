"""The per-item work cache of an extraction (``OUT/.work/``) and the failures table.

Both extraction engines (the local one and ``--engine beam``) store each
finished item here as soon as it is computed, so an interrupted extraction
resumes where it stopped and writes the same records as an uninterrupted
one:

* ``OUT/.work/<modality>/<item>.npy``: an item's features, saved atomically.
  The file name holds a hash of the input (path and segment) and of the
  file's size and modification time, so a file changed in place is
  extracted anew.
* ``OUT/.work/failures/<modality>-<item>.json``: an input that failed, with
  the reason; a rerun keeps it failed unless asked to retry
  (:meth:`WorkCache.forget_failures`, ``--retry-failed``).
* ``OUT/.work/notes/...json``: items written with a warning (a file shorter
  than its header says).
* ``OUT/.work/options.json``: the options fingerprint per modality
  (``options.AudioOptions.fingerprint`` ...). :meth:`WorkCache.bind_options`
  refuses a cache made with other options, so items computed with different
  options are never mixed in one data set.

>>> import tempfile
>>> from tfrecords_tools.corpora import Job
>>> cache = WorkCache(tempfile.mkdtemp())
>>> a, b = Job("audio/a", "audio", "a.wav", "train"), Job("audio/b", "audio", "b.wav", "train")
>>> cache.save(a, np.zeros((1, 88), np.float32))
>>> cache.record_failure(b, "b.wav: file not found")
>>> cache.load(a).shape, cache.pending([a, b]), cache.failure(b)["reason"]
((1, 88), [], 'b.wav: file not found')
>>> cache.forget_failures([b]), [j.key for j in cache.pending([a, b])]
(1, ['audio/b'])
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil

import numpy as np

from emobed_tf.io import read_json, save_npy, write_json, write_text
from emobed_tf import fingerprint
from tfrecords_tools.options import FLAGS
from emobed_tf.errors import EmobedError

WORK = ".work"
FAILURE_COLUMNS = ("path", "modality", "kind", "reason")


class CacheError(EmobedError, ValueError):
    """The work cache cannot be used as it is; the message says why and what to do."""


def _hash(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def _file_state(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return _hash(st.st_size, st.st_mtime_ns)[:8]


class WorkCache:
    """``OUT/.work/``: cached features, failures and notes of one extraction's items.

    Args:
        out: the extraction's output folder (``--out``).

    The object only holds paths, so it can be sent to Beam workers.
    """

    def __init__(self, out: str):
        self.out = out
        self.root = os.path.join(out, WORK)

    # -- names -------------------------------------------------------------------------

    def item_name(self, job) -> str:
        """The item's file stem: the job key made safe, and a hash of path and segment.

        >>> from tfrecords_tools.corpora import Job
        >>> WorkCache("out").item_name(Job("audio/train/2-a b", "audio", "/x/a b.wav", "train"))
        'audio_train_2-a_b.1bfe7dd8e561'
        """
        return f"{job.cache_name()}.{_hash(job.path, job.start, job.end)}"

    def path(self, job) -> str:
        """Where the item's features are (or will be) cached."""
        return os.path.join(self.root, job.modality,
                            f"{self.item_name(job)}.{_file_state(job.path)}.npy")

    def _failure_path(self, job) -> str:
        return os.path.join(self.root, "failures", f"{job.modality}-{self.item_name(job)}.json")

    def _note_path(self, job) -> str:
        stem = os.path.splitext(os.path.basename(self.path(job)))[0]
        return os.path.join(self.root, "notes", f"{job.modality}-{stem}.json")

    @property
    def staging(self) -> str:
        """Folder where the data set is written before it replaces ``out``'s."""
        return os.path.join(self.root, "staging")

    # -- items -------------------------------------------------------------------------

    def has(self, job) -> bool:
        return os.path.exists(self.path(job))

    def load(self, job) -> np.ndarray:
        return np.load(self.path(job))

    def save(self, job, features, notes=()) -> None:
        """Caches an item's features (atomically), with optional warnings about it."""
        if notes:
            write_json(self._note_path(job), {"key": job.key, "path": job.path,
                                              "modality": job.modality, "kind": "truncated",
                                              "reason": "; ".join(notes)})
        save_npy(self.path(job), np.asarray(features, np.float32))

    def note(self, job) -> dict | None:
        """The warning recorded with a cached item, if any."""
        path = self._note_path(job)
        return read_json(path) if os.path.exists(path) else None

    def record_failure(self, job, reason: str, kind: str = "failed") -> None:
        """One small file per failed input (safe from parallel workers), written atomically."""
        write_json(self._failure_path(job), {"key": job.key, "path": job.path,
                                             "modality": job.modality, "kind": kind,
                                             "reason": reason})

    def failure(self, job) -> dict | None:
        """The recorded failure of ``job`` (``{key, path, modality, kind, reason}``) or None."""
        path = self._failure_path(job)
        if not os.path.exists(path):
            return None
        try:
            rec = read_json(path)
        except ValueError:  # a failure record cut short: the input is simply retried
            return None
        rec.setdefault("kind", "failed")
        return rec

    def pending(self, jobs) -> list:
        """Jobs neither cached nor known to fail (what a resumed run still has to do)."""
        return [j for j in jobs if not self.has(j) and self.failure(j) is None]

    def forget_failures(self, jobs) -> int:
        """Removes the failure records of ``jobs`` (so they are tried again); returns how many."""
        n = 0
        for j in jobs:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._failure_path(j))
                n += 1
        return n

    # -- the options the cache was made with -------------------------------------------

    @property
    def options_path(self) -> str:
        return os.path.join(self.root, "options.json")

    def _has_items(self, modality: str) -> bool:
        folder = os.path.join(self.root, modality)
        if os.path.isdir(folder) and any(n.endswith(".npy") for n in os.listdir(folder)):
            return True
        fails = os.path.join(self.root, "failures")
        return os.path.isdir(fails) and any(n.startswith(modality + "-")
                                            for n in os.listdir(fails))

    def bind_options(self, fingerprints: dict, overwrite: bool = False) -> list:
        """Checks (and records) the options fingerprint of each modality with items.

        A modality whose cached items were made with other options (or with
        unrecorded ones) is a :class:`CacheError` naming the differing
        options, unless ``overwrite``: then its cached items are discarded.
        Returns the modalities discarded.

        >>> import tempfile
        >>> cache = WorkCache(tempfile.mkdtemp())
        >>> cache.bind_options({"audio": {"audio_mode": "utterance"}})
        []
        >>> cache.bind_options({"audio": {"audio_mode": "windowed"}})
        Traceback (most recent call last):
        ...
        tfrecords_tools.workcache.CacheError: ...: holds audio items with other settings ...
        >>> cache.bind_options({"audio": {"audio_mode": "windowed"}}, overwrite=True)
        ['audio']
        """
        stored = {}
        if os.path.exists(self.options_path):
            try:
                stored = read_json(self.options_path)
            except (ValueError, OSError) as err:
                if not overwrite:
                    raise CacheError(f"{err}; pass --overwrite to start the cache afresh, or "
                                     "choose another --out") from None
                stored = {}
            if not isinstance(stored, dict):
                stored = {}
        problems, discard = [], []
        for mod, want in fingerprints.items():
            have = stored.get(mod)
            if have is None and self._has_items(mod):
                problems.append(f"{mod} items cached without recorded options")
                discard.append(mod)
            elif have is not None and have != want:
                diffs = fingerprint.differences(have, want)
                problems.append(f"{mod} items with other settings "
                                f"({fingerprint.changes(diffs, have, want, FLAGS)})")
                discard.append(mod)
        if problems and not overwrite:
            raise CacheError(f"{self.root}: holds {'; '.join(problems)}; rerun with the same "
                             "options, pass --overwrite to extract them again with the new ones, "
                             "or choose another --out")
        for mod in discard:
            self.clear(mod)
        write_json(self.options_path, {**stored, **fingerprints})
        return discard

    def clear(self, modality: str) -> None:
        """Discards every cached item, failure and note of ``modality``."""
        shutil.rmtree(os.path.join(self.root, modality), ignore_errors=True)
        for sub in ("failures", "notes"):
            folder = os.path.join(self.root, sub)
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.startswith(modality + "-"):
                        os.remove(os.path.join(folder, name))

    def remove_temporaries(self) -> int:
        """Deletes temporary files a killed run left in the cache; returns how many."""
        n = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                if name.endswith((".tmp", ".tmp.npy")):  # emobed_tf.io.temp_path's names
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(folder, name))
                        n += 1
        return n


def write_failures_csv(path: str, rows) -> None:
    """Writes the failures table (``path, modality, kind, reason``) atomically.

    ``rows`` are dicts with those keys (``kind`` defaults to ``failed``).

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "failures.csv")
    >>> write_failures_csv(p, [{"path": "a.wav", "modality": "audio", "reason": "no audio"}])
    >>> print(open(p).read().strip())
    path,modality,kind,reason
    a.wav,audio,failed,no audio
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FAILURE_COLUMNS)
    for r in rows:
        w.writerow([r["path"], r["modality"], r.get("kind") or "failed", r["reason"]])
    write_text(path, buf.getvalue())
