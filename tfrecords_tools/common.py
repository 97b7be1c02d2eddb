"""The ground floor of ``tfrecords_tools``: what the options and the feature modules share.

It imports nothing of the package, so ``options`` (above the encoders) and
the encoders (``speech_encoders``, ``image_encoders``, ``audio_features``)
can all take from it without an import circle:

* :class:`OptionsError`, the error of an extraction option out of range;
* :func:`file_sha256` and :func:`files_sha256`, the content hashes that
  bind the per-item cache to an encoder's files (``options``' fingerprints);
* the eGeMAPS constants of ``--audio-mode`` (:data:`AUDIO_MODES`,
  :data:`EGEMAPS_LLD_DIM`) and :func:`pool_frames`, the frame averaging of
  both the eGeMAPS LLDs and the speech encoders' ``frames`` pooling.
"""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np

from emobed_tf.errors import EmobedError

EGEMAPS_LLD_DIM = 25  # eGeMAPSv02 low-level descriptors per 10 ms frame
AUDIO_MODES = ("utterance", "windowed", "lld")


class OptionsError(EmobedError, ValueError):
    """An extraction option out of range; the message names the flag."""


def file_sha256(path: str) -> str:
    """SHA-256 of a file's content (hex).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(delete=False) as fh:
    ...     _ = fh.write(b"abc")
    >>> file_sha256(fh.name)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _sha_cached(path, size, mtime_ns):
    return file_sha256(path)


def files_sha256(files) -> str:
    """SHA-256 of one file, or of the ``name sha`` lines of several."""
    shas = []
    for f in files:
        st = os.stat(f)
        shas.append((os.path.basename(f), _sha_cached(os.path.abspath(f), st.st_size,
                                                      st.st_mtime_ns)))
    if len(shas) == 1:
        return shas[0][1]
    return hashlib.sha256("\n".join(f"{n} {s}" for n, s in shas).encode()).hexdigest()


def pool_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """Means of consecutive groups of ``n`` frames (the last, shorter group kept).

    Example:
    >>> pool_frames(np.arange(10, dtype="float32")[:, None], 4)[:, 0].tolist()
    [1.5, 5.5, 8.5]
    """
    if n <= 1:
        return frames
    t = len(frames)
    idx = np.arange(t) // n
    sums = np.zeros((idx[-1] + 1, frames.shape[1]), np.float64)
    np.add.at(sums, idx, frames)
    return (sums / np.bincount(idx)[:, None]).astype(np.float32)
