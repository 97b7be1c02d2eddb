"""Decoding audio and video with PyAV (FFmpeg in its wheel).

PyAV replaces tensorflow-io, which does not load with TensorFlow 2.21.
This module never imports TensorFlow, so it is safe in openSMILE workers.
"""

from __future__ import annotations

import os

import numpy as np

from emobed_tf.errors import EmobedError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
AUDIO_RATE = 16000


class MediaError(EmobedError, ValueError):
    """A media file that cannot be used; the message names it and the problem."""


def _open(path):
    import av

    if not os.path.isfile(path):
        raise MediaError(f"{path}: file not found")
    try:
        return av.open(path)
    except Exception as err:  # av.error.InvalidDataError and friends
        raise MediaError(f"{path}: cannot be decoded ({type(err).__name__}: {err})") from err


def wav_shortfall(path: str):
    """``(seconds announced, seconds present)`` of a WAV file cut short, else None.

    A WAV header states the size of its sample data; a file cut short (a
    copy or download that stopped) still decodes, but holds less than the
    header says. Files that are not WAV, and streamed WAVs whose header
    gives no size, return None.

    >>> import os, tempfile, wave
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> with wave.open(path, "wb") as w:
    ...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
    ...     w.writeframes(bytes(32000))
    >>> wav_shortfall(path) is None
    True
    >>> with open(path, "r+b") as fh:
    ...     _ = fh.truncate(16044)
    >>> wav_shortfall(path)
    (1.0, 0.5)
    """
    import struct

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos, rate, align = 12, 0, 0
            while pos + 8 <= size:
                fh.seek(pos)
                cid, clen = struct.unpack("<4sI", fh.read(8))
                if cid == b"fmt ":
                    fmt = fh.read(16)
                    if len(fmt) == 16:
                        _, _, rate, _, align, _ = struct.unpack("<HHIIHH", fmt)
                elif cid == b"data":
                    have = size - pos - 8
                    if clen in (0, 0xFFFFFFFF) or have >= clen or not rate or not align:
                        return None
                    return (round(clen / align / rate, 3), round(have // align / rate, 3))
                pos += 8 + clen + (clen & 1)
    except (OSError, struct.error):
        return None
    return None


def decode_audio(path: str, rate: int = AUDIO_RATE, notes: list | None = None) -> np.ndarray:
    """The first audio stream as mono float32 in [-1, 1] at ``rate`` Hz.

    A file cut short decodes as far as it goes; when ``notes`` is a list, a
    warning naming the file and how much is missing is appended to it.
    """
    import av

    if path.lower().endswith(IMAGE_EXTS):
        raise MediaError(f"{path}: an image has no audio stream")
    container = _open(path)
    try:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as err:
            if not chunks:
                raise MediaError(f"{path}: audio cannot be decoded ({err})") from err
            # a truncated file: keep what decoded, as FFmpeg does, and say so
            if notes is not None:
                got = sum(len(c) for c in chunks) / rate
                notes.append(f"{path}: truncated: decoding stopped after {got:.2f} s ({err}); "
                             "written with what decoded")
    finally:
        container.close()
    if not chunks:
        raise MediaError(f"{path}: the audio stream holds no samples")
    signal = np.concatenate(chunks).astype(np.float32)
    short = wav_shortfall(path) if notes is not None else None
    if short:
        notes.append(f"{path}: truncated: the WAV header announces {short[0]:.2f} s of audio, "
                     f"the file holds {short[1]:.2f} s; written with what decoded")
    if not np.all(np.isfinite(signal)):
        raise MediaError(f"{path}: audio contains NaN/inf samples")
    return signal


def load_image(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as err:
        raise MediaError(f"{path}: file not found") from err
    except Exception as err:
        raise MediaError(f"{path}: cannot be decoded as an image ({err})") from err


def video_frames(path: str, fps: float | None = None, max_frames: int | None = None,
                 notes: list | None = None):
    """Yields ``(time_s, RGB uint8 frame)``; still images give one frame at 0 s.

    ``fps`` samples frames at that rate (nearest decoded frame); None keeps all.
    A video cut short yields the frames that decode; when ``notes`` is a
    list, a warning naming the file is appended to it.
    """
    import av

    if path.lower().endswith(IMAGE_EXTS):
        yield 0.0, load_image(path)
        return
    container = _open(path)
    try:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = container.streams.video[0]
        next_t, count = 0.0, 0
        try:
            for frame in container.decode(video=0):
                t = float(frame.time) if frame.time is not None else count / float(
                    stream.average_rate or 25)
                if fps is not None and t + 1e-6 < next_t:
                    continue
                yield t, frame.to_ndarray(format="rgb24")
                count += 1
                next_t = t + 1.0 / fps if fps else 0.0
                if max_frames and count >= max_frames:
                    break
        except av.error.FFmpegError as err:
            if count == 0:
                raise MediaError(f"{path}: video cannot be decoded ({err})") from err
            if notes is not None:
                notes.append(f"{path}: truncated: decoding stopped after {count} sampled "
                             f"frames ({err}); written with what decoded")
        if count == 0:
            raise MediaError(f"{path}: the video stream holds no frames")
    finally:
        container.close()
