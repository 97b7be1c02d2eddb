"""Decoding audio and video with PyAV (FFmpeg in its wheel).

PyAV replaces tensorflow-io, which does not load with TensorFlow 2.21.
This module never imports TensorFlow, so it is safe in openSMILE workers.
"""

from __future__ import annotations

import os

import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
AUDIO_RATE = 16000


class MediaError(ValueError):
    """A media file that cannot be used; the message names it and the problem."""


def _open(path):
    import av

    if not os.path.isfile(path):
        raise MediaError(f"{path}: file not found")
    try:
        return av.open(path)
    except Exception as err:  # av.error.InvalidDataError and friends
        raise MediaError(f"{path}: cannot be decoded ({type(err).__name__}: {err})") from err


def decode_audio(path: str, rate: int = AUDIO_RATE) -> np.ndarray:
    """The first audio stream as mono float32 in [-1, 1] at ``rate`` Hz."""
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
            # a truncated file: keep what decoded, as FFmpeg does
    finally:
        container.close()
    if not chunks:
        raise MediaError(f"{path}: the audio stream holds no samples")
    signal = np.concatenate(chunks).astype(np.float32)
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


def video_frames(path: str, fps: float | None = None, max_frames: int | None = None):
    """Yields ``(time_s, RGB uint8 frame)``; still images give one frame at 0 s.

    ``fps`` samples frames at that rate (nearest decoded frame); None keeps all.
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
        if count == 0:
            raise MediaError(f"{path}: the video stream holds no frames")
    finally:
        container.close()
