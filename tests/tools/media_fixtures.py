"""Real media the tests write: scikit-image's astronaut photo as video, with sound."""

import av
import numpy as np
from skimage import data


def tone(seconds, rate=16000, freq=220.0, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    # a voiced-like harmonic signal with some noise and a loudness contour
    sig = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    sig = sig * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t)) + 0.05 * rng.normal(size=t.shape)
    return (0.3 * sig / np.abs(sig).max()).astype(np.float32)


def write_wav(path, signal, rate=16000):
    import soundfile as sf

    sf.write(path, signal, rate, subtype="PCM_16")


def write_audio(path, signal, codec, rate=16000):
    """An audio-only file (flac, mp3 ...) written with PyAV."""
    out = av.open(path, "w")
    a = out.add_stream(codec, rate=rate)
    a.layout = "mono"
    _encode_audio(out, a, signal, rate)
    out.close()
    return path


def _encode_audio(out, stream, sig, rate):
    chunk = 1024
    fmt = "s16p" if stream.codec_context.codec.name in ("flac",) else "fltp"
    for i in range(0, len(sig), chunk):
        piece = sig[None, i:i + chunk]
        if fmt == "s16p":
            piece = (piece * 32767).astype(np.int16)
        af = av.AudioFrame.from_ndarray(piece, format=fmt, layout="mono")
        af.sample_rate = rate
        for p in stream.encode(af):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)


def write_video(path, seconds=1.0, fps=10, audio=True, face=True, size=(256, 256), seed=0,
                vcodec="mpeg4", acodec="aac", arate=16000):
    """A video (mpeg4 + aac by default) of the astronaut's face (or a blank frame) and a tone."""
    from skimage.transform import resize

    img = data.astronaut()[:300, 100:400]  # the face and shoulders
    frame = (resize(img, size, preserve_range=True).astype(np.uint8) if face
             else np.full((*size, 3), 40, np.uint8))
    out = av.open(path, "w")
    vs = out.add_stream(vcodec, rate=fps)
    vs.width, vs.height, vs.pix_fmt = size[1], size[0], "yuv420p"
    if audio:
        a = out.add_stream(acodec, rate=arate)
        a.layout = "mono"
    n = int(seconds * fps)
    for i in range(n):
        f = np.roll(frame, i, axis=1) if face else frame
        for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if audio:
        _encode_audio(out, a, tone(seconds, rate=arate, seed=seed), arate)
    out.close()
    return path
