"""Dense-head defaults for pooled pretrained features, chosen on dev speakers only.

::

    python -m benchmarks.dense_screen --data $WORK/whisper_table --work $WORK/dense_screen

Each candidate recipe trains the classic speech model with
``python -m emobed_tf.crossval`` over the 8 speaker folds (seed 0) and is
ranked by its mean **dev** macro-F1 (the fold's dev speakers, which early
stopping already uses); the test scores are written beside, never used to
choose. Results: ``benchmarks/results/dense_screen.{json,md}``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from benchmarks.common import RESULTS, machine

CANDIDATES = {
    "gru (the paper's form)": ["--encoder-type", "gru"],
    "no dropout": ["--dense-dropout", "0"],
    "dropout .3": ["--dense-dropout", "0.3"],
    "dropout .5": ["--dense-dropout", "0.5"],
    "dropout .5, 64 units": ["--dense-dropout", "0.5", "--encoder-units", "64",
                             "--shared-units", "64"],
    "dropout .5, 256 units": ["--dense-dropout", "0.5", "--encoder-units", "256",
                              "--shared-units", "256"],
    "dropout .5, l2 1e-3": ["--dense-dropout", "0.5", "--l2", "1e-3"],
    "dropout .5, l2 1e-2": ["--dense-dropout", "0.5", "--l2", "1e-2"],
    "dropout .5, linear": ["--dense-dropout", "0.5", "--dense-activation", "linear"],
    "dropout .5, lr 3e-4, patience 20": ["--dense-dropout", "0.5", "--learning-rate", "3e-4",
                                         "--patience", "20", "--epochs", "100"],
    "dropout .5, 2+2 layers": ["--dense-dropout", "0.5", "--encoder-layers", "2",
                               "--shared-layers", "2"],
}


def scores(out: str) -> dict:
    runs = [json.load(open(p)) for p in sorted(glob.glob(f"{out}/runs/classic/*/metrics.json"))]
    mean = lambda split: sum(r[split]["f1_macro"] for r in runs) / max(len(runs), 1)
    return {"runs": len(runs), "dev_f1_macro": mean("dev"), "test_f1_macro": mean("test"),
            "encoder_type": runs[0].get("encoder_type") if runs else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dense_screen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="an extracted pooled-feature data set")
    p.add_argument("--work", required=True)
    p.add_argument("--target", default="audio")
    args = p.parse_args(argv)
    from emobed_tf import crossval

    rows = {}
    for name, extra in CANDIDATES.items():
        out = os.path.join(args.work, name.replace(" ", "_").replace(",", "").replace(".", ""))
        argv = ["--dataset", "custom", f"--{args.target}-dir", args.data, "--target",
                args.target, "--modes", "classic", "--folds", "speaker:8", "--seeds", "0",
                *(() if "--encoder-type" in extra else ("--encoder-type", "dense")), *extra,
                "--out", out]
        if crossval.main(argv) != 0:
            return 1
        rows[name] = {"flags": " ".join(extra), **scores(out)}
    best = max(rows, key=lambda k: rows[k]["dev_f1_macro"])
    result = {"chosen_on_dev": best, "candidates": rows, "machine": machine(),
              "data": os.path.basename(os.path.normpath(args.data))}
    lines = ["# Dense heads on pooled pretrained features: a dev-speaker screen", "",
             f"Data: `{result['data']}`; classic {args.target} model, `--encoder-type dense`, "
             "8 speaker folds, seed 0. Ranked by the mean **dev** macro-F1; the test column is "
             "shown, not used.", "", "| recipe | flags | dev macro-F1 | test macro-F1 |",
             "|---|---|---|---|"]
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["dev_f1_macro"]):
        lines.append(f"| {name}{' (chosen)' if name == best else ''} | `{r['flags']}` | "
                     f"{r['dev_f1_macro']:.4f} | {r['test_f1_macro']:.4f} |")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "dense_screen.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    with open(os.path.join(RESULTS, "dense_screen.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
