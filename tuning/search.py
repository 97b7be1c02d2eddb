"""KerasTuner search over EmoBed's alpha, beta and layer sizes.

``python -m tuning.search --dataset demo --target audio --tuner bayesian --max-trials 20 --dir searches/demo``

Rerunning the same command continues the search (finished trials are kept);
``--overwrite`` starts afresh. Writes ``SEARCH_DIR/summary.md``,
``SEARCH_DIR/trials.json``, ``SEARCH_DIR/alpha_beta.png`` (score against
alpha and beta) and ``SEARCH_DIR/best_hyperparameters.json``, which
``python -m emobed_tf.train --hparams FILE`` accepts.

Distributed search uses KerasTuner's own chief/worker mode: start the same
command on every machine with ``KERASTUNER_TUNER_ID`` (``chief`` on one,
``tuner0``, ``tuner1`` ... on the others), ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` (the chief's address) set, and a ``--dir`` that
all of them can write (a shared folder). The chief hands out trials and
writes the summary when the workers are done.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from emobed_tf import configs as C
from emobed_tf import train as T
from emobed_tf.schema import DataError

TUNERS = ("random", "bayesian", "hyperband")


def make_tuner(kind: str, hypermodel, directory: str, max_trials: int, epochs: int, seed: int,
               overwrite: bool):
    import keras_tuner as kt

    common = dict(objective=hypermodel.objective, directory=os.path.dirname(
        os.path.abspath(directory)), project_name=os.path.basename(os.path.abspath(directory)),
        overwrite=overwrite, seed=seed)
    if kind == "random":
        return kt.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if kind == "bayesian":
        return kt.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    return kt.Hyperband(hypermodel, max_epochs=epochs, **common)


def completed_trials(directory: str) -> list:
    """Every trial recorded in the search folder (read from disk: works on the chief only,
    or after the search)."""
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name, "trial.json")
        if name.startswith("trial_") and os.path.isfile(path):
            with open(path) as fh:
                t = json.load(fh)
            metric = None
            obj = t.get("metrics", {}).get("metrics", {})
            for k, v in obj.items():
                if k.startswith("val_") and (k.endswith("f1_macro") or k.endswith("ccc")):
                    hist = v.get("observations", [])
                    if hist:
                        metric = max(o["value"][0] for o in hist)
            out.append({"trial_id": t["trial_id"], "status": t["status"],
                        "score": t.get("score"), "objective": metric,
                        "values": t["hyperparameters"]["values"]})
    return out


def write_summary(directory: str, trials: list, mode: str) -> dict:
    done = [t for t in trials if t["status"] == "COMPLETED" and t["score"] is not None]
    if not done:
        raise RuntimeError(f"{directory}: no completed trial")
    done.sort(key=lambda t: t["score"], reverse=True)
    best = done[0]
    with open(os.path.join(directory, "best_hyperparameters.json"), "w") as fh:
        json.dump({"values": best["values"], "score": best["score"], "mode": mode,
                   "trial_id": best["trial_id"]}, fh, indent=1)
    with open(os.path.join(directory, "trials.json"), "w") as fh:
        json.dump(trials, fh, indent=1)
    keys = sorted({k for t in done for k in t["values"]})
    lines = [f"# KerasTuner search: {len(done)} completed trials (mode {mode})", "",
             "| trial | dev score | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for t in done:
        vals = [f"{t['values'].get(k):.4g}" if isinstance(t["values"].get(k), float)
                else str(t["values"].get(k, "-")) for k in keys]
        lines.append(f"| {t['trial_id']} | {t['score']:.4f} | " + " | ".join(vals) + " |")
    lines += ["", f"best: trial {best['trial_id']}, dev score {best['score']:.4f}; "
              "train with `python -m emobed_tf.train ... --hparams "
              f"{os.path.join(directory, 'best_hyperparameters.json')}`", "",
              "![score against alpha and beta](alpha_beta.png)"]
    with open(os.path.join(directory, "summary.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    plot_alpha_beta(done, os.path.join(directory, "alpha_beta.png"))
    return best


def plot_alpha_beta(trials, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = [p for p in ("alpha", "beta") if any(p in t["values"] for t in trials)]
    fig, axes = plt.subplots(1, max(1, len(params)), figsize=(5 * max(1, len(params)), 4),
                             squeeze=False)
    for ax, p in zip(axes[0], params or ["alpha"]):
        xs = [t["values"].get(p, 0.0) for t in trials]
        ys = [t["score"] for t in trials]
        ax.scatter(xs, ys, c=ys, cmap="viridis")
        b = max(trials, key=lambda t: t["score"])
        ax.scatter([b["values"].get(p, 0.0)], [b["score"]], marker="*", s=200, color="red",
                   label="best")
        ax.set_xlabel(p)
        ax.set_ylabel("dev score")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tuning.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    T.add_common_args(p)
    p.add_argument("--mode", default="emobed", choices=C.MODES)
    p.add_argument("--tuner", default="bayesian", choices=TUNERS)
    p.add_argument("--max-trials", type=int, default=20)
    p.add_argument("--dir", required=True, help="search folder (shared by chief and workers)")
    return p.parse_args(argv)


def search(args) -> dict | None:
    import keras

    from tuning.hypermodel import EmoBedHyperModel

    base = T.config_from_args(args, os.path.join(args.dir, "_unused"), args.mode)
    sources = T.resolve_sources(base)
    hm = EmoBedHyperModel(base, sources)
    tuner = make_tuner(args.tuner, hm, args.dir, args.max_trials, base.epochs, args.seed,
                       args.overwrite)
    stop = keras.callbacks.EarlyStopping(hm.objective.name, mode="max", patience=base.patience)
    tuner.search(epochs=base.epochs, callbacks=[stop], verbose=args.verbose)
    role = os.environ.get("KERASTUNER_TUNER_ID", "chief")
    if role != "chief":  # a worker: the chief holds the results
        return None
    best = write_summary(args.dir, completed_trials(args.dir), args.mode)
    return best


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        best = search(args)
    except (DataError, T.RunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if best is not None:
        print(open(os.path.join(args.dir, "summary.md")).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
