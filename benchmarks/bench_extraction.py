"""Extraction speed: openSMILE real-time factor per worker and 2-worker speed-up;
video frames per second per stage (decode, MTCNN detect + align, VGG-Face encode).

``python -m benchmarks.bench_extraction`` writes ``benchmarks/results/extraction.{json,md}``.
The VGG-Face network is the full 224x224 VGG16 with random weights: speed does not
depend on the weight values, and no weight file can be downloaded here.
"""

import os
import tempfile
import time

import numpy as np

from benchmarks.common import write


def audio_benchmark(tmp, files=16, seconds=20.0):
    from tests.tools.media_fixtures import tone, write_wav
    from tfrecords_tools.audio_features import run_audio_jobs

    paths = []
    for i in range(files):
        p = os.path.join(tmp, f"a{i}.wav")
        write_wav(p, tone(seconds, freq=150 + 20 * i, seed=i))
        paths.append(p)
    res = {}
    for workers in (1, 2):
        # warm the pool's imports on a first short pass, then time
        list(run_audio_jobs([(p, p, {}) for p in paths[:workers]], workers))
        t0 = time.perf_counter()
        out = list(run_audio_jobs([(p, p, {}) for p in paths], workers))
        wall = time.perf_counter() - t0
        cpu = sum(o[3] for o in out)
        res[workers] = {"wall_s": wall, "audio_s": files * seconds,
                        "rtf_per_worker": cpu / (files * seconds),
                        "throughput_x_realtime": files * seconds / wall}
    res["speedup_2_workers"] = res[1]["wall_s"] / res[2]["wall_s"]
    return res


def video_benchmark(tmp, seconds=3.0, fps=10):
    from tests.tools.media_fixtures import write_video
    from tfrecords_tools import face, media

    path = write_video(os.path.join(tmp, "v.mp4"), seconds, fps=fps, size=(360, 360))
    t0 = time.perf_counter()
    frames = [f for _, f in media.video_frames(path)]
    decode = time.perf_counter() - t0
    det = face.FaceDetector()
    t0 = time.perf_counter()
    faces = []
    for f in frames:
        found = det.detect(f)
        if found is not None:
            faces.append(face.align(f, found[1], 224))
    detect = time.perf_counter() - t0
    import keras

    net = face.build_vggface()
    enc = keras.Model(net.input, net.get_layer("fc7_relu").output)
    batch = np.stack(faces).astype(np.float32)
    enc(batch[:2])  # build / trace
    t0 = time.perf_counter()
    for i in range(0, len(batch), 16):
        enc(batch[i:i + 16])
    encode = time.perf_counter() - t0
    n = len(frames)
    return {"frames": n, "faces": len(faces), "decode_fps": n / decode,
            "detect_align_fps": n / detect, "encode_fps": len(faces) / encode,
            "end_to_end_fps": n / (decode + detect + encode * n / max(1, len(faces)))}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        audio = audio_benchmark(tmp)
        video = video_benchmark(tmp)
    md = ["# Extraction speed", "",
          "| audio (openSMILE eGeMAPSv02 functionals, 16 files x 20 s) | 1 worker | 2 workers |",
          "|---|---|---|",
          f"| real-time factor per worker (CPU s / audio s) | {audio[1]['rtf_per_worker']:.4f} | "
          f"{audio[2]['rtf_per_worker']:.4f} |",
          f"| throughput (x real time) | {audio[1]['throughput_x_realtime']:.1f} | "
          f"{audio[2]['throughput_x_realtime']:.1f} |",
          f"| wall time (s) | {audio[1]['wall_s']:.2f} | {audio[2]['wall_s']:.2f} |", "",
          f"Speed-up with 2 workers: **{audio['speedup_2_workers']:.2f}x**.", "",
          "| video stage (360x360 frames, one face) | frames/s |", "|---|---|",
          f"| decode (PyAV) | {video['decode_fps']:.1f} |",
          f"| detect + align (MTCNN, 5-point similarity) | {video['detect_align_fps']:.2f} |",
          f"| encode (VGG-Face fc7, 224x224, batch 16) | {video['encode_fps']:.2f} |",
          f"| end to end | {video['end_to_end_fps']:.2f} |", ""]
    write("extraction", {"audio": audio, "video": video}, "\n".join(md))


if __name__ == "__main__":
    main()
