"""From a recording to an emotion: predict new recordings with an exported model.

::

    python -m emobed_tf.predict --model saved_models/omg-audio clip.wav --out predictions.csv
    python -m emobed_tf.predict --model saved_models/omg-audio recordings/ --segment 5
    python -m emobed_tf.predict --server http://localhost:8501 --name omg-audio recordings/

Inputs: files (wav, flac, mp3, mp4, flv, mov, jpg, png ...), folders (recursive) or an
input list CSV (a ``path`` column, optionally ``speaker``); a model trained on OpenFace
or table features takes OpenFace CSVs or a table. Each input is extracted with the
export's feature recipe (``assets.extra/emobed_export.json``) through the same code as
``tfrecords_tools.extract``, then the model runs locally (``--model``) or on a TF
Serving server (``--server``, the recipe from its metadata or from ``--model``).

A recipe naming an encoder file by its SHA-256 needs that file (``--encoder-model``,
``--vggface-weights``, ``--audio-model``); a file with another SHA-256 is refused.

Output: ``--out`` CSV (one row per input: path, label, one probability column per
class; regression: one row per frame with its time and arousal/valence), the same as
JSON beside it, and ``failures.csv`` (inputs that could not be used, with the reason).
Rows are written as inputs finish; rerunning the same command skips finished inputs.
A refusal is one ``error:`` line (exit code 2); Ctrl-C one ``interrupted:`` line (130).
"""

from __future__ import annotations

import argparse
import os
import sys

from emobed_tf import cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m emobed_tf.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="files, folders (recursive) or input list CSVs")
    p.add_argument("--model", help="an export: saved_models/NAME[/VERSION] (latest version "
                                   "by default); with --server, a local copy for the recipe")
    p.add_argument("--server", help="http://HOST:8501 (REST) or grpc://HOST:8500 (gRPC)")
    p.add_argument("--name", help="the served model's name (default: --model's folder name)")
    p.add_argument("--version", type=int, help="model version (default: the latest)")
    p.add_argument("--signature", default="serving_default", help="signature name")
    p.add_argument("--out", default="predictions.csv", help="predictions CSV (and .json)")
    p.add_argument("--segment", type=float, help="predict per segment of this many seconds")
    p.add_argument("--speaker-from", default="folder", choices=("folder", "column", "file"),
                   help="--normalize speaker models: who the speaker of an input is (its "
                        "folder, the input list's speaker column, or each file alone)")
    p.add_argument("--encoder-model", help="the face encoder file the recipe names")
    p.add_argument("--vggface-weights", help="the VGG-Face weight file the recipe names")
    p.add_argument("--audio-model", help="the speech model folder the recipe names")
    p.add_argument("--workers", type=int, default=1, help="audio extraction processes")
    p.add_argument("--batch-size", type=int, default=32, help="inputs per model call")
    p.add_argument("--plot", help="regression: a folder for each recording's curves (PNG)")
    p.add_argument("--timeout", type=float, default=30.0, help="server: seconds per request")
    p.add_argument("--retries", type=int, default=2, help="server: tries again after a "
                                                          "connection failure")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def work() -> int:
        from emobed_tf.serving import predict as lib

        summary = lib.predict(args.inputs, out=args.out, model=args.model, server=args.server,
                              name=args.name, version=args.version, signature=args.signature,
                              segment=args.segment, speaker_from=args.speaker_from,
                              encoder_model=args.encoder_model,
                              vggface_weights=args.vggface_weights,
                              audio_model=args.audio_model, workers=args.workers,
                              batch_size=args.batch_size, plot=args.plot,
                              timeout=args.timeout, retries=args.retries)
        print(lib.summary_line(summary))
        return 0

    def progress() -> str:
        out = args.out if args.out.lower().endswith(".csv") else os.path.splitext(args.out)[0] + ".csv"
        n = 0
        if os.path.isfile(out):
            import csv

            with open(out, newline="") as fh:
                n = len({r[0] for r in list(csv.reader(fh))[1:] if r})
        return (f"{n} inputs predicted are kept in {out}; rerun the same command to predict "
                "the rest")

    return cli.run_main(args, work, progress)


if __name__ == "__main__":
    sys.exit(main())
