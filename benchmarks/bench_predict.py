"""Prediction speed: files per second of ``emobed_tf.predict`` on new recordings.

Audio (openSMILE eGeMAPS utterance functionals, one extraction worker per core):
N tones of 3 s are extracted, a tiny classic run is trained and exported, then the
same N files are predicted locally and through the loopback server (REST and gRPC).
Reported: files/s end to end (model load included) and after the load, and the share
of the time spent in extraction vs the model calls.

Faces (``--encoder keras``, a tiny CNN on 32x32 faces, ``--layer-pool avg --no-detect``,
5 frames/s averaged): N PNG photographs and M short videos (the test's fixtures,
``tests/test_predict.make_face_model``), a tiny classic video run, predicted locally and
through the loopback server; photographs and videos measured apart.

``python -m benchmarks.bench_predict [--files 40] [--images 40] [--videos 8]``
-> results/predict.{json,md}
"""

import argparse
import contextlib
import csv
import io
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from tests.tools.media_fixtures import tone, write_wav  # noqa: E402


def _setup(root, n):
    from emobed_tf import train
    from emobed_tf.export import main as export_main
    from tfrecords_tools import extract

    media = os.path.join(root, "media")
    os.makedirs(media)
    rows = []
    for i in range(n):
        path = os.path.join(media, f"t{i:03d}.wav")
        write_wav(path, tone(3.0, freq=120 + 7 * i, seed=i))
        rows.append((path, "audio", ("a", "b")[i % 2], ("train", "dev", "test")[i % 3],
                     f"s{i % 4}"))
    with open(os.path.join(root, "m.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "modality", "label", "split", "speaker"])
        w.writerows(rows)
    data, run, sm = (os.path.join(root, x) for x in ("data", "run", "sm/bench"))
    with contextlib.redirect_stdout(io.StringIO()):
        assert extract.main(["--corpus", "manifest", "--csv", os.path.join(root, "m.csv"),
                             "--out", data, "--workers", "2"]) == 0
        assert train.main(["--dataset", "custom", "--data-dir", data, "--out", run, "--mode",
                           "classic", "--epochs", "1", "--encoder-units", "8",
                           "--shared-units", "8", "--verbose", "0"]) == 0
        assert export_main(["--run", run, "--out", sm]) == 0
    return media, sm


def _measure(summary, n):
    after = summary["seconds"] - summary["load_seconds"]
    return {"files": n, "seconds": round(summary["seconds"], 2),
            "load_seconds": round(summary["load_seconds"], 2),
            "files_per_s": round(n / summary["seconds"], 2),
            "files_per_s_after_load": round(n / after, 2),
            "extraction_share": round((after - summary["model_seconds"]) / after, 3),
            "model_share": round(summary["model_seconds"] / after, 3)}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=40)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--images", type=int, default=40, help="face photographs")
    p.add_argument("--videos", type=int, default=8, help="face videos")
    p.add_argument("--video-seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    from emobed_tf import cli
    from emobed_tf.serving import predict as lib
    from emobed_tf.serving.loopback import LoopbackServer

    cli.quiet_frameworks()
    results = {}
    with tempfile.TemporaryDirectory() as root:
        media, sm = _setup(root, args.files)
        s = lib.predict([media], out=os.path.join(root, "local.csv"), model=sm,
                        workers=args.workers, progress=False)
        results["audio_local"] = _measure(s, args.files)
        with LoopbackServer(sm, "bench") as server:
            for kind, url in (("rest", server.rest_url), ("grpc", "grpc://" + server.grpc_target)):
                s = lib.predict([media], out=os.path.join(root, f"{kind}.csv"), server=url,
                                name="bench", workers=args.workers, progress=False)
                results[f"audio_loopback_{kind}"] = _measure(s, args.files)
        # again, now that openSMILE, the worker start-up and the model's files are warm
        s = lib.predict([media], out=os.path.join(root, "local2.csv"), model=sm,
                        workers=args.workers, progress=False)
        results["audio_local_warm"] = _measure(s, args.files)
        results.update(_faces(os.path.join(root, "faces"), args))
    lines = ["# Prediction speed (emobed_tf.predict)", "",
             f"{args.files} WAV files of 3 s, eGeMAPS utterance functionals, {args.workers} "
             "extraction workers, tiny classic model; machine: "
             f"{os.cpu_count()} CPUs visible (shared).", "",
             "| setting | files/s | files/s after model load | extraction share | model share |",
             "|---|---|---|---|---|"]
    audio_rows = [k for k in results if k.startswith("audio")]
    face_rows = [k for k in results if k.startswith("face")]
    for k in audio_rows:
        lines.append(_row(k, results[k]))
    lines += ["", f"Faces: {args.images} PNG photographs (48x48) and {args.videos} silent mp4 "
              f"videos of {args.video_seconds:g} s (128x128, 25 fps), --encoder keras (a tiny "
              "CNN on 32x32, layer feat, --layer-pool avg), --no-detect, 5 frames/s averaged "
              "(mean pool), tiny classic video model; extraction in the predicting process "
              "(the face path has no worker processes).", "",
              "| setting | files/s | files/s after model load | extraction share | "
              "model share |", "|---|---|---|---|---|"]
    for k in face_rows:
        lines.append(_row(k, results[k]))
    lines += ["", "Each audio run starts its own openSMILE workers (spawned processes); the "
              "machine is shared with other jobs, so the numbers vary by tens of percent "
              "between runs. The model share of the loopback runs is the time of the requests. "
              "Model load is the SavedModel's (or the server's metadata); each face run loads "
              "the face CNN again at its first input, counted in extraction. The runs follow "
              "one another (photographs first), so the first also pays TensorFlow's warm-up.",
              ""]
    common.write("predict", {"files": args.files, "workers": args.workers,
                             "images": args.images, "videos": args.videos,
                             "video_seconds": args.video_seconds, "results": results},
                 "\n".join(lines))


def _row(k, r):
    return (f"| {k} | {r['files_per_s']} | {r['files_per_s_after_load']} | "
            f"{r['extraction_share']:.0%} | {r['model_share']:.0%} |")


def _faces(root, args):
    """Face photographs and videos: local and loopback (REST, gRPC) predictions."""
    import glob
    import shutil

    from emobed_tf.serving import predict as lib
    from emobed_tf.serving.loopback import LoopbackServer
    from tests.test_predict import make_face_model

    os.makedirs(root)
    with contextlib.redirect_stdout(io.StringIO()):  # 128x128 videos at 25 fps
        fm = make_face_model(root, n_images=args.images, videos=(args.video_seconds,) *
                             args.videos, video_size=(128, 128), video_fps=25)
    images = sorted(glob.glob(os.path.join(fm["media"], "*", "*.png")))
    videos = sorted(glob.glob(os.path.join(fm["media"], "*", "*.mp4")))
    out = {}
    for kind, files in (("images", images), ("videos", videos)):
        s = lib.predict(files, out=os.path.join(root, f"{kind}.csv"), model=fm["model"],
                        encoder_model=fm["encoder"], progress=False)
        assert s["predicted"] == len(files), s
        out[f"face_{kind}_local"] = _measure(s, len(files))
    with LoopbackServer(fm["model"], "face") as server:
        for proto, url in (("rest", server.rest_url), ("grpc", "grpc://" + server.grpc_target)):
            for kind, files in (("images", images), ("videos", videos)):
                s = lib.predict(files, out=os.path.join(root, f"{kind}_{proto}.csv"),
                                server=url, name="face", encoder_model=fm["encoder"],
                                progress=False)
                assert s["predicted"] == len(files), s
                out[f"face_{kind}_loopback_{proto}"] = _measure(s, len(files))
    shutil.rmtree(fm["media"], ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
