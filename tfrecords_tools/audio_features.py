"""openSMILE eGeMAPSv02: functionals (88 values) per utterance or per sliding window,
or the 25 low-level descriptors (LLDs) as a sequence; and the jobs of the
pretrained speech encoders (``speech_encoders``: ct2, hf, keras-hub).

openSMILE aborts (``malloc(): invalid size``) in a process where TensorFlow
was imported first, so extraction runs in worker processes started with
the ``spawn`` method; this module and ``media`` never import TensorFlow.
The ct2 and hf encoders also run in spawned workers (one model load per
worker, batches of utterances per model call); the keras-hub encoder,
which needs TensorFlow/Keras, runs in the calling process like the face
encoders (:func:`run_encoder_jobs` ``in_process``).
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from emobed_tf.configs import EGEMAPS_DIM
from tfrecords_tools.common import pool_frames
from tfrecords_tools.media import AUDIO_RATE, MediaError, decode_audio

LLD_STEP_S = 0.01  # openSMILE's eGeMAPS LLD frame step
_SMILES = {}  # feature level -> opensmile.Smile, one per worker process


def _smile(level: str = "Functionals"):
    """The eGeMAPSv02 extractor for ``level`` (``Functionals`` or ``LowLevelDescriptors``)."""
    if level not in _SMILES:
        import opensmile

        _SMILES[level] = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                         feature_level=getattr(opensmile.FeatureLevel, level))
    return _SMILES[level]


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
                  end_s: float | None = None, notes: list | None = None,
                  noise_snr_db: float | None = None, noise_seed: int = 0) -> np.ndarray:
    """Decodes ``path``; returns [1, 88] (utterance), [T, 88] (windowed) or [T, 25] (lld).

    Warnings about the file (cut short ...) are appended to ``notes``.
    """
    signal = add_noise(_segment(path, decode_audio(path, notes=notes), start_s, end_s),
                       noise_snr_db, path, noise_seed)
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


# -- pretrained speech encoders (``speech_encoders``) ------------------------------------

_ENCODER = {}  # the encoder of this process: {"spec": ..., "encoder": SpeechEncoder}
ENCODER_SPEC_KEYS = ("encoder", "model", "layer", "batch_size", "pad_window")


def encoder_spec(kw: dict, threads: int = 0) -> dict:
    """The arguments of ``speech_encoders.load_encoder`` in an encoder job's kwargs."""
    spec = {k: kw[k] for k in ENCODER_SPEC_KEYS if k in kw}
    return {"kind": spec.pop("encoder"), "path": spec.pop("model"),
            "layers": spec.pop("layer", None), "threads": threads, **spec}


def init_encoder(spec: dict):
    """Loads (once per process) the encoder ``spec`` describes; returns it."""
    from tfrecords_tools.speech_encoders import load_encoder

    if _ENCODER.get("spec") != spec:
        _ENCODER.clear()
        _ENCODER.update(spec=spec, encoder=load_encoder(**spec))
    return _ENCODER["encoder"]


def add_noise(signal: np.ndarray, snr_db: float | None, path: str, seed: int = 0) -> np.ndarray:
    """``signal`` with white Gaussian noise at ``snr_db`` dB against its mean power (None: the
    signal unchanged). The noise is drawn from a generator seeded by (CRC-32 of the file's base
    name, ``seed``), so a file gets the same noise on every machine and every rerun.

    >>> x = np.sin(np.linspace(0, 200, 16000)).astype(np.float32)
    >>> y = add_noise(x, 10.0, "a/clip.wav")
    >>> round(float(10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))), 1)
    10.0
    >>> bool(np.array_equal(y, add_noise(x, 10.0, "b/clip.wav")))  # the name, not the folder
    True
    """
    if snr_db is None:
        return signal
    import os
    import zlib

    rng = np.random.default_rng([zlib.crc32(os.path.basename(path).encode()), int(seed)])
    noise = rng.standard_normal(len(signal))
    power = float(np.mean(np.square(signal, dtype=np.float64)))
    noise *= np.sqrt(power / 10 ** (snr_db / 10) / np.mean(noise ** 2))  # the exact ratio
    return (signal + noise).astype(signal.dtype)


def _segment(path, signal, start_s, end_s):
    if start_s is not None or end_s is not None:
        a = int((start_s or 0) * AUDIO_RATE)
        b = int(end_s * AUDIO_RATE) if end_s is not None else len(signal)
        signal = signal[a:b]
        if len(signal) == 0:
            raise MediaError(f"{path}: the segment {start_s}-{end_s} s holds no audio")
    if len(signal) < AUDIO_RATE // 20:
        raise MediaError(f"{path}: audio too short ({len(signal) / AUDIO_RATE:.3f} s)")
    return signal


def encoder_batch(batch, encoder=None):
    """Encoder jobs ``(key, path, kwargs)`` of one batch, encoded together.

    Returns ``[(key, features or None, error or None, seconds, notes)]`` in
    the batch's order; ``seconds`` is the batch's time shared evenly. A
    batch whose model call fails is retried item by item, so one bad input
    fails alone.
    """
    from tfrecords_tools.speech_encoders import pool

    t0 = time.perf_counter()
    results, ready = {}, []
    for key, path, kw in batch:
        notes = []
        try:
            signal = add_noise(_segment(path, decode_audio(path, notes=notes),
                                        kw.get("start_s"), kw.get("end_s")),
                               kw.get("noise_snr_db"), path, kw.get("noise_seed", 0))
            ready.append((key, path, kw, signal, notes))
        except MediaError as err:
            results[key] = (key, None, str(err), 0.0, notes)
        except Exception as err:  # noqa: BLE001 - reported per file, the run goes on
            results[key] = (key, None, f"{path}: {type(err).__name__}: {err}", 0.0, notes)
    if ready:
        enc = encoder or _ENCODER.get("encoder") or init_encoder(encoder_spec(ready[0][2]))
        try:
            frames = enc.frames([r[3] for r in ready])
        except Exception:  # noqa: BLE001 - find the input that fails
            if len(ready) == 1:
                key, path, _, _, notes = ready[0]
                import traceback

                err = traceback.format_exc(limit=1).strip().splitlines()[-1]
                results[key] = (key, None, f"{path}: encoder failed: {err}", 0.0, notes)
                frames = None
            else:
                for one in batch:
                    if one[0] in results:
                        continue
                    results.update({r[0]: r for r in encoder_batch([one], enc)})
                return [results[b[0]] for b in batch]
        secs = (time.perf_counter() - t0) / max(1, len(ready))
        for i, (key, path, kw, _, notes) in enumerate(ready if frames is not None else []):
            feats = pool(frames[i], kw["pool"], kw.get("hop_s"), enc.frame_rate)
            if len(feats) == 0 or not np.all(np.isfinite(feats)):
                results[key] = (key, None, f"{path}: the encoder returned no or non-finite "
                                           "features", secs, notes)
            else:
                results[key] = (key, feats, None, secs, notes)
    return [results[b[0]] for b in batch]


def _encoder_worker_init(spec):
    init_encoder(spec)


def run_encoder_jobs(jobs, workers: int = 1, in_process: bool = False):
    """Runs encoder jobs ``(key, path, kwargs)`` in batches of ``kwargs["batch_size"]``.

    ``in_process`` (keras-hub: TensorFlow/Keras, like the face encoders)
    encodes here; otherwise ``workers`` spawned processes each load the
    encoder once (Torch and CTranslate2 stay out of the TensorFlow process)
    and split the machine's cores between them. Yields ``(key, features or
    None, error or None, seconds, notes)`` per job as batches finish.
    """
    import os

    jobs = list(jobs)
    if not jobs:
        return
    bs = int(jobs[0][2].get("batch_size", 8))
    batches = [jobs[i:i + bs] for i in range(0, len(jobs), bs)]
    workers = max(1, min(int(workers), len(batches)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    spec = encoder_spec(jobs[0][2], threads)
    if in_process:
        enc = init_encoder(spec)
        for b in batches:
            yield from encoder_batch(b, enc)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_encoder_worker_init, initargs=(spec,)) as p:
        for res in p.imap_unordered(encoder_batch, batches):
            yield from res
