"""Prediction speed: files per second of ``emobed_tf.predict`` on new recordings.

Audio (openSMILE eGeMAPS utterance functionals, one extraction worker per core):
N tones of 3 s are extracted, a tiny classic run is trained and exported, then the
same N files are predicted locally and through the loopback server (REST and gRPC).
Reported: files/s end to end (model load included) and after the load, and the share
of the time spent in extraction vs the model calls.

``python -m benchmarks.bench_predict [--files 40]`` -> results/predict.{json,md}
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
        rows.append((path, "audio", ("a", "b")[i % 2], ("train", "dev", "test")[i % 3], f"s{i % 4}"))
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
    lines = ["# Prediction speed (emobed_tf.predict)", "",
             f"{args.files} WAV files of 3 s, eGeMAPS utterance functionals, {args.workers} "
             "extraction workers, tiny classic model; machine: "
             f"{os.cpu_count()} CPUs visible (shared).", "",
             "| setting | files/s | files/s after model load | extraction share | model share |",
             "|---|---|---|---|---|"]
    for k, r in results.items():
        lines.append(f"| {k} | {r['files_per_s']} | {r['files_per_s_after_load']} | "
                     f"{r['extraction_share']:.0%} | {r['model_share']:.0%} |")
    lines += ["", "Each run starts its own openSMILE workers (spawned processes); the machine is "
              "shared with other jobs, so the numbers vary by tens of percent between runs. The model share of the loopback runs is the "
              "time of the requests. Video (face pipeline) is not measured here yet.", ""]
    common.write("predict", {"files": args.files, "workers": args.workers, "results": results},
                 "\n".join(lines))


if __name__ == "__main__":
    main()
