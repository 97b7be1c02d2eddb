"""openSMILE eGeMAPSv02: functionals (88 values) per utterance or per sliding window,
or the 25 low-level descriptors (LLDs) as a sequence.

openSMILE aborts (``malloc(): invalid size``) in a process where TensorFlow
was imported first, so extraction runs in worker processes started with
the ``spawn`` method; this module and ``media`` never import TensorFlow.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from emobed_tf.configs import EGEMAPS_DIM
from tfrecords_tools.media import AUDIO_RATE, MediaError, decode_audio

EGEMAPS_LLD_DIM = 25  # eGeMAPSv02 low-level descriptors per 10 ms frame
LLD_STEP_S = 0.01  # openSMILE's eGeMAPS LLD frame step
_SMILES = {}  # feature level -> opensmile.Smile, one per worker process
AUDIO_MODES = ("utterance", "windowed", "lld")


def _smile(level: str = "Functionals"):
    """The eGeMAPSv02 extractor for ``level`` (``Functionals`` or ``LowLevelDescriptors``)."""
    if level not in _SMILES:
        import opensmile

        _SMILES[level] = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                         feature_level=getattr(opensmile.FeatureLevel, level))
    return _SMILES[level]


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


def lld_sequence(signal: np.ndarray, rate: int = AUDIO_RATE, hop_s: float = 0.1) -> np.ndarray:
    """eGeMAPSv02 LLDs (25 per 10 ms frame) averaged over ``hop_s`` steps: [T, 25].

    The paper's sequence input (Sec. 4.2 feeds frame-level features to the
    GRUs); averaging 10 ms frames into ``hop_s`` steps keeps the recurrent
    nets short (100 ms: about 10 steps per second).
    """
    lld = _smile("LowLevelDescriptors").process_signal(signal, rate).to_numpy().astype(np.float32)
    if len(lld) == 0:
        raise MediaError("audio too short for one openSMILE LLD frame")
    return pool_frames(lld, max(1, int(round(hop_s / LLD_STEP_S))))


def functionals(signal: np.ndarray, rate: int = AUDIO_RATE) -> np.ndarray:
    """eGeMAPSv02 functionals of a whole signal: [88]."""
    out = _smile().process_signal(signal, rate).to_numpy().reshape(-1)
    return out.astype(np.float32)


def windowed_functionals(signal: np.ndarray, rate: int = AUDIO_RATE, window_s: float = 4.0,
                         hop_s: float = 0.04) -> np.ndarray:
    """Functionals over windows centred on every ``hop_s`` frame: [T, 88].

    Frame t covers ``[t*hop - window/2, t*hop + window/2]`` clipped to the
    signal, so T = ceil(duration / hop) frames align with 40 ms labels.
    """
    n = len(signal)
    hop = int(round(hop_s * rate))
    half = int(round(window_s * rate / 2))
    frames = max(1, -(-n // hop))
    out = np.empty((frames, EGEMAPS_DIM), np.float32)
    for t in range(frames):
        c = t * hop
        seg = signal[max(0, c - half): min(n, c + half)]
        if len(seg) < rate // 10:  # openSMILE needs some context
            lo = max(0, min(c, n) - rate // 10)
            seg = signal[lo: lo + rate // 10]
        out[t] = functionals(seg, rate)
    return out


def extract_audio(path: str, mode: str = "utterance", window_s: float = 4.0,
                  hop_s: float = 0.04, start_s: float | None = None,
                  end_s: float | None = None, notes: list | None = None) -> np.ndarray:
    """Decodes ``path``; returns [1, 88] (utterance), [T, 88] (windowed) or [T, 25] (lld).

    Warnings about the file (cut short ...) are appended to ``notes``.
    """
    signal = decode_audio(path, notes=notes)
    if start_s is not None or end_s is not None:
        a = int((start_s or 0) * AUDIO_RATE)
        b = int(end_s * AUDIO_RATE) if end_s is not None else len(signal)
        signal = signal[a:b]
        if len(signal) == 0:
            raise MediaError(f"{path}: the segment {start_s}-{end_s} s holds no audio")
    if len(signal) < AUDIO_RATE // 20:
        raise MediaError(f"{path}: audio too short ({len(signal) / AUDIO_RATE:.3f} s)")
    if mode == "utterance":
        feats = functionals(signal)[None, :]
    elif mode == "windowed":
        feats = windowed_functionals(signal, window_s=window_s, hop_s=hop_s)
    elif mode == "lld":
        try:
            feats = lld_sequence(signal, hop_s=hop_s)
        except MediaError as err:
            raise MediaError(f"{path}: {err}") from err
    else:
        raise ValueError(f"mode must be utterance, windowed or lld, got {mode!r}")
    if not np.all(np.isfinite(feats)):
        raise MediaError(f"{path}: openSMILE returned NaN/inf features")
    return feats


def _job(args):
    """One audio job: ``(key, features or None, error or None, seconds, notes)``."""
    key, path, kw = args
    t0 = time.perf_counter()
    notes = []
    try:
        return key, extract_audio(path, **kw, notes=notes), None, time.perf_counter() - t0, notes
    except MediaError as err:
        return key, None, str(err), time.perf_counter() - t0, notes
    except Exception as err:  # noqa: BLE001 - reported per file, the run goes on
        return (key, None, f"{path}: {type(err).__name__}: {err}", time.perf_counter() - t0,
                notes)


def run_audio_jobs(jobs, workers: int = 1):
    """Runs ``(key, path, kwargs)`` jobs in spawned worker processes.

    Yields ``(key, features or None, error or None, seconds, notes)`` as jobs
    finish (in completion order); ``notes`` lists warnings about a file that
    was still used (a WAV cut short ...).
    """
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, workers)) as pool:
        yield from pool.imap_unordered(_job, list(jobs))


def functionals_of_file(path: str) -> np.ndarray:
    """openSMILE's own reading of an audio file (``Smile.process_file``): [88].

    The reference the tests compare :func:`extract_audio` (PyAV decoding)
    against; like everything here, call it in a process without TensorFlow.
    """
    return _smile().process_file(path).to_numpy().reshape(-1).astype(np.float32)


def lld_of_file(path: str) -> np.ndarray:
    """openSMILE's own reading of the eGeMAPS LLDs of a file: [T, 25] at 10 ms."""
    return _smile("LowLevelDescriptors").process_file(path).to_numpy().astype(np.float32)


def _reference_job(args):
    path, level = args
    return lld_of_file(path) if level == "lld" else functionals_of_file(path)


def run_reference(paths, level: str = "functionals"):
    """``functionals_of_file`` (or ``lld_of_file``) for each path, in a spawned worker."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.map(_reference_job, [(p, level) for p in paths])
