"""The dense form's crossmodal weight beta, chosen on dev speakers only, with the bounded term.

::

    python -m benchmarks.beta_screen --audio $WORK/ravdess_whisper_ct2 --video $WORK/faces \
        --work $WORK/beta_screen --jobs 2

The dense form's triplet term is measured between unit-norm embeddings since
``--triplet-space auto`` (``emobed_tf.configs.triplet_space_for``): in [-2, 2]
instead of unbounded. beta = 0.5 was the paper's weight for a bounded (GRU)
term; this screen re-derives it for the dense form. The speech model (Whisper
tiny.en features) is trained as EmoBed with the faces as the auxiliary, for
each beta of :data:`BETAS`, on the nested folds of ``dense_screen.py``: per
crossval fold (8 speaker folds) the fold's **test speakers are left out of
everything**, the training speakers train, and the fold's dev speakers are the
held-out score (the dense recipe keeps its last epoch, so they choose nothing
inside a run). Seeds 0 and 1. The beta with the best mean held-out dev
macro-F1 is the candidate; the default changes only when it beats beta = 0.5
paired over the fold x seed runs (Wilcoxon p < .05) -- else beta stays, stated.
``beta 0.5, raw`` is the unbounded term of before, for reference; ``joint``
(beta = 0) the same system without the term. Finished runs are reused.
Results: ``benchmarks/results/beta_screen.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from benchmarks.common import machine, write
from benchmarks.dense_screen import nested_folds

BETAS = (0.1, 0.25, 0.5, 1.0, 2.0)
SEEDS = (0, 1)
DEFAULT = "beta 0.5"


def candidates() -> dict:
    """``{name: (mode, beta, triplet_space)}``: the screen's systems, the default first."""
    out = {DEFAULT: ("emobed", 0.5, "auto")}
    out.update({f"beta {b:g}": ("emobed", b, "auto") for b in BETAS if b != 0.5})
    out["beta 0.5, raw (unbounded, before)"] = ("emobed", 0.5, "raw")
    out["joint (beta 0)"] = ("joint", 0.5, "auto")
    out["classic"] = ("classic", 0.5, "auto")
    return out


def run_configs(audio: str, video: str, work: str) -> tuple:
    """(``[TrainConfig]``, ``[(name, fold, seed)]``) of every run of the screen."""
    from emobed_tf import configs

    folds = nested_folds(audio, "audio")
    cfgs, where = [], []
    for name, (mode, beta, space) in candidates().items():
        tag = name.split(" (")[0].replace(" ", "_").replace(",", "").replace(".", "p")
        for f in folds:
            for seed in SEEDS:
                out = os.path.join(work, tag, f"fold{f['index']}-seed{seed}")
                cfg = configs.default_config("custom", out, target="audio", mode=mode, seed=seed,
                                             verbose=0, audio_dir=audio, video_dir=video)
                cfg = dataclasses.replace(
                    cfg, loss=dataclasses.replace(cfg.loss, beta=beta, triplet_space=space),
                    data=dataclasses.replace(cfg.data, train_speakers=tuple(f["train"]),
                                             dev_speakers=tuple(f["dev"]),
                                             test_speakers=tuple(f["test"])))
                cfgs.append(cfg)
                where.append((name, f["index"], seed))
    return cfgs, where, folds


def screen(audio: str, video: str, work: str, jobs: int) -> dict:
    from emobed_tf.experiments import runner
    from emobed_tf.experiments.significance import by_fold_seed, paired_analysis

    cfgs, where, folds = run_configs(audio, video, work)
    metrics = runner.run_many(cfgs, jobs=jobs, labels=[f"{n} fold {f} seed {s}"
                                                      for n, f, s in where],
                              describe=lambda m: f"held-out dev f1_macro {m['test']['f1_macro']:.4f}")
    per_run = {}
    for (name, f, s), m in zip(where, metrics):
        # the nested fold's "test" partition is the outer fold's dev speakers
        per_run.setdefault(name, {})[f"fold{f}-seed{s}"] = m["test"]["f1_macro"]
    rows = {}
    for name, runs in per_run.items():
        rows[name] = {"runs": len(runs), "held_out_dev_f1_macro": sum(runs.values()) / len(runs),
                      "per_run": runs}
        if name != DEFAULT:
            rows[name]["vs_default"] = paired_analysis(
                by_fold_seed(runs), by_fold_seed(per_run[DEFAULT]))
    emobed = [n for n, (mode, _, space) in candidates().items()
              if mode == "emobed" and space == "auto"]
    best = max(emobed, key=lambda n: rows[n]["held_out_dev_f1_macro"])
    t = rows[best].get("vs_default")
    changes = t is not None and t["mean_diff"] > 0 and t["p_wilcoxon"] < 0.05
    return {"candidates": rows, "best_on_dev": best, "default_changes": changes,
            "folds": folds, "seeds": list(SEEDS), "machine": machine()}


def write_results(result: dict) -> None:
    rows = sorted(result["candidates"].items(), key=lambda kv: -kv[1]["held_out_dev_f1_macro"])
    lines = ["# The dense form's beta, chosen on dev speakers, with the bounded crossmodal term",
             "", "Whisper tiny.en speech (the target) with the faces of other people as the "
             "auxiliary; EmoBed under the package's dense defaults (whole-set batches, 300 "
             "epochs, the last kept), the triplet distances between unit-norm embeddings "
             "(`--triplet-space auto`) unless marked raw. Nested folds of `dense_screen.py`: per "
             "speaker fold (8) the test speakers are left out of everything and the fold's dev "
             f"speakers are scored; seeds {', '.join(map(str, result['seeds']))}. Paired over the "
             "8 fold means (seeds averaged within a fold) against beta 0.5: mean gain, 95 % t "
             "interval over the folds, two-sided Wilcoxon p.", "",
             "| candidate | held-out dev macro-F1 | vs beta 0.5 | 95 % CI | folds won/lost | p |",
             "|---|---|---|---|---|---|"]
    for name, r in rows:
        t = r.get("vs_default")
        paired = (f"{100 * t['mean_diff']:+.2f} pt | [{100 * t['ci_low']:+.2f}, "
                  f"{100 * t['ci_high']:+.2f}] | {t['wins']}/{t['losses']} | "
                  f"{t['p_wilcoxon']:.3f}" if t else " | | | ")
        lines.append(f"| {name} | {r['held_out_dev_f1_macro']:.4f} | {paired} |")
    best = result["best_on_dev"]
    lines += ["", f"Best beta on dev speakers: **{best}**. " + (
        "It beats beta 0.5 with p < .05: the dense form's default follows it."
        if result["default_changes"] else
        "No beta beats 0.5 with p < .05 on dev speakers: the default stays 0.5, now with the "
        "bounded term."), "", "No test speaker trains or is scored here."]
    write("beta_screen", result, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", required=True, help="Whisper speech features (a data folder)")
    p.add_argument("--video", required=True, help="the auxiliary faces (a data folder)")
    p.add_argument("--work", required=True, help="where the runs go (resumable)")
    p.add_argument("--jobs", type=int, default=0, help="worker processes (0: the default)")
    args = p.parse_args(argv)
    result = screen(args.audio, args.video, args.work, args.jobs)
    result["data"] = {"audio": os.path.basename(args.audio.rstrip("/")),
                      "video": os.path.basename(args.video.rstrip("/"))}
    write_results(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
