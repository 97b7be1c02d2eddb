"""KerasTuner search over EmoBed's alpha, beta and layer sizes.

``python -m tuning.search --dataset demo --target audio --tuner bayesian --max-trials 20 --out searches/demo``

Rerunning the same command continues the search (finished trials are kept);
``--overwrite`` starts afresh. Writes ``SEARCH_DIR/summary.md``,
``SEARCH_DIR/trials.json``, ``SEARCH_DIR/alpha_beta.png`` (score against
alpha and beta) and ``SEARCH_DIR/best_hyperparameters.json``, which
``python -m emobed_tf.train --hparams FILE`` accepts.

The search folder records what it searches in ``SEARCH_DIR/search.json``
(data set, absolute data folders, target, mode, objective, tuner, seed, the
search space and the fixed training settings). A rerun with another search
into the same folder is refused (exit code 2, the differing fields named)
before anything is trained, as are a truncated ``search.json``,
``oracle.json`` or ``trial.json`` and a ``--out`` that is a file.
The data are checked before the tuner starts: a missing data set, modality
or split a trial reads (the target's ``dev`` split, the objective) is one
``error:`` line (exit code 2). Ctrl-C stops with one line saying how many
trials finished (exit code 130); they are kept and a rerun continues.
``--precision`` applies to every trial; ``--strategy mirrored`` trains each
trial on the devices of the machine (``multiworker`` is refused: use the
chief/worker mode below to spread trials over machines).

Distributed search uses KerasTuner's own chief/worker mode: start the same
command on every machine with ``KERASTUNER_TUNER_ID`` (``chief`` on one,
``tuner0``, ``tuner1`` ... on the others), ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` (the chief's address) set, and a ``--out`` that
all of them can write (a shared folder). The chief hands out trials and
writes the summary when the workers are done; it holds the folder's lock
(``SEARCH_DIR/.lock``), so a second search into the same folder is refused
while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import sys

from emobed_tf import cli, fingerprint, io
from emobed_tf.experiments import figures
from emobed_tf import configs
from emobed_tf.data import source
from emobed_tf.experiments import experiment
from emobed_tf.records.schema import DataError
from emobed_tf.errors import EmobedError

TUNERS = ("random", "bayesian", "hyperband")
RECORD = "search.json"
# recorded but not compared: raising --max-trials continues a search
NOT_COMPARED = ("max_trials",)
# TrainConfig settings that do not change a trial's score (or are recorded elsewhere)
NOT_RECORDED = ("out", "verbose", "strategy", "dataset", "data_dir", "audio_dir", "video_dir",
                "target", "mode", "seed", "effective_alpha", "effective_beta", "data.cache",
                "data.cache_limit_mb", "data.eval_batch_size")
OVERWRITE_HINT = ("pass --overwrite to start the search afresh (its trials are deleted) or "
                  "choose another --out")


def dev_monitors() -> set:
    """The objectives a trial may log (imported here: emobed_tf.model.metrics imports Keras, which
    must wait for ``--backend``)."""
    from emobed_tf.model.metrics import SCORES

    return {s.monitor for s in SCORES.values()}


class SearchError(EmobedError, RuntimeError):
    """The search cannot run as asked: one line naming the folder or file and the way out."""


def make_tuner(kind: str, hypermodel, directory: str, max_trials: int, epochs: int, seed: int,
               overwrite: bool, strategy=None):
    import keras_tuner as kt

    common = {"objective": hypermodel.objective,
              "directory": os.path.dirname(os.path.abspath(directory)),
              "project_name": os.path.basename(os.path.abspath(directory)),
              "overwrite": overwrite, "seed": seed, "distribution_strategy": strategy}
    if kind == "random":
        return kt.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if kind == "bayesian":
        return kt.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    return kt.Hyperband(hypermodel, max_epochs=epochs, **common)


# --------------------------------------------------------------------------
# the search folder: what it searches, whether a rerun may continue it


def _flatten(obj, prefix=""):
    if isinstance(obj, dict) and obj:
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def search_record(base: configs.TrainConfig, sources: dict, hypermodel, tuner: str,
                  max_trials: int) -> dict:
    """What ``search.json`` records: everything that a trial's score depends on."""
    training = {k: v for k, v in _flatten(json.loads(json.dumps(base.to_json()))).items()
                if k not in NOT_RECORDED}
    record = {
        "dataset": base.dataset,
        "data_dirs": {m: os.path.abspath(src.data_dir) for m, src in sorted(sources.items())},
        "target": base.target, "mode": base.mode,
        "objective": {"name": hypermodel.objective.name,
                      "direction": hypermodel.objective.direction},
        "tuner": tuner, "seed": base.seed, "max_trials": max_trials,
        "search_space": hypermodel.search_space(), "training": training}
    return json.loads(json.dumps(record))  # tuples as lists, as read back


ORDER = ("dataset", "data_dirs", "target", "mode", "objective", "tuner", "seed", "max_trials",
         "search_space", "training")


def _fields(record: dict) -> dict:
    """The compared fields: top-level values, one per data folder, per searched
    hyperparameter (its whole range) and per training setting."""
    out = {}
    for k, v in record.items():
        if k in ("data_dirs", "search_space", "training") and isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def _order(key: str):
    top = key.split(".")[0]
    return (ORDER.index(top) if top in ORDER else len(ORDER), key)


def differing_fields(old: dict, new: dict) -> list:
    """Names of the recorded fields whose values differ (``max_trials`` aside), in ``ORDER``.

    >>> differing_fields({"target": "audio", "mode": "emobed", "max_trials": 5},
    ...                  {"target": "video", "mode": "emobed", "max_trials": 9})
    ['target']
    >>> differing_fields({"search_space": {"alpha": {"max_value": 2.0}}, "tuner": "random"},
    ...                  {"search_space": {"alpha": {"max_value": 1.0}}, "tuner": "bayesian"})
    ['tuner', 'search_space.alpha']
    """
    return sorted(fingerprint.differences(_fields(old), _fields(new), NOT_COMPARED), key=_order)


def describe_differences(directory: str, old: dict, new: dict) -> str:
    """The folder holds another search: the message, in :mod:`emobed_tf.fingerprint`'s words.

    >>> print(describe_differences(
    ...     "s", {"target": "audio", "search_space": {"beta": {}}, "training": {"epochs": 1}},
    ...     {"target": "video", "search_space": {}, "training": {"epochs": 2}}))
    s: holds another search with other settings (target 'audio' -> 'video',
    search_space.beta {} -> (unset), training.epochs 1 -> 2); rerun it with its own arguments
    to continue it, or pass --overwrite to start the search afresh (its trials are deleted)
    or choose another --out
    """
    return fingerprint.describe(directory, "another search", differing_fields(old, new),
                                _fields(old), _fields(new),
                                hint="rerun it with its own arguments to continue it, or "
                                + OVERWRITE_HINT)


def _kerastuner_files(directory: str) -> list:
    names = ["oracle.json", "chief.json"] + sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(directory, "tuner*.json")))
    paths = [os.path.join(directory, n) for n in names]
    paths += sorted(glob.glob(os.path.join(directory, "trial_*", "trial.json")))
    return [p for p in paths if os.path.isfile(p)]


def check_folder(directory: str, record: dict, chief: bool = True) -> None:
    """Refuses a folder that holds another search or unreadable search files.

    A worker checks the record (when the chief has written it; data folders
    aside, as they are paths on the chief's machine) and its own tuner file
    only: the chief may be writing the trial files meanwhile.
    """
    path = os.path.join(directory, RECORD)
    if os.path.isfile(path):
        try:
            old = io.read_json(path)
        except ValueError as err:
            raise SearchError(f"{err}; {OVERWRITE_HINT}") from None
        old = old if isinstance(old, dict) else {}
        if not chief:  # data folders are paths on the chief's machine, maybe not a worker's
            old = {k: v for k, v in old.items() if k != "data_dirs"}
            record = {k: v for k, v in record.items() if k != "data_dirs"}
        if differing_fields(old, record):
            raise SearchError(describe_differences(directory, old, record))
    if not chief:
        own = os.path.join(directory, os.environ.get("KERASTUNER_TUNER_ID", "tuner0") + ".json")
        files = [own] if os.path.isfile(own) else []
    else:
        files = _kerastuner_files(directory)
        if files and not os.path.isfile(path):
            raise SearchError(f"{directory}: holds a KerasTuner search without {RECORD} (written "
                              "by an older tuning.search?), so what it searched is unknown; "
                              + OVERWRITE_HINT)
    for p in files:
        try:
            io.read_json(p)
        except ValueError as err:
            raise SearchError(f"{err}; {OVERWRITE_HINT}") from None


def clear_folder(directory: str) -> None:
    """Deletes the folder's content except its lock file (``--overwrite``)."""
    for name in os.listdir(directory):
        if name == io.FolderLock.NAME:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


# --------------------------------------------------------------------------
# results


def completed_trials(directory: str) -> list:
    """Every trial recorded in the search folder (read from disk: works on the chief only,
    or after the search)."""
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name, "trial.json")
        if name.startswith("trial_") and os.path.isfile(path):
            try:
                t = io.read_json(path)
            except ValueError as err:
                raise SearchError(f"{err}; {OVERWRITE_HINT}") from None
            metric = None
            obj = t.get("metrics", {}).get("metrics", {})
            for k, v in obj.items():
                if k in dev_monitors():
                    hist = v.get("observations", [])
                    if hist:
                        metric = max(o["value"][0] for o in hist)
            out.append({"trial_id": t["trial_id"], "status": t["status"],
                        "score": t.get("score"), "objective": metric,
                        "values": t["hyperparameters"]["values"]})
    return out


def summary_markdown(directory: str, done: list, mode: str) -> str:
    """``summary.md``: one row per completed trial, best first.

    >>> print(summary_markdown("s", [{"trial_id": "01", "score": 0.5,
    ...                               "values": {"alpha": 0.25, "encoder_units": 64}}], "joint"))
    # KerasTuner search: 1 completed trials (mode joint)
    <BLANKLINE>
    | trial | dev score | alpha | encoder_units |
    |---|---|---|---|
    | 01 | 0.5000 | 0.25 | 64 |
    <BLANKLINE>
    best: trial 01, dev score 0.5000; train with
    `python -m emobed_tf.train ... --hparams s/best_hyperparameters.json`
    <BLANKLINE>
    ![score against alpha and beta](alpha_beta.png)
    """
    keys = sorted({k for t in done for k in t["values"]})
    rows = [[t["trial_id"], f"{t['score']:.4f}"] + [
        f"{t['values'][k]:.4g}" if isinstance(t["values"].get(k), float)
        else str(t["values"].get(k, "-")) for k in keys] for t in done]
    best = done[0]
    lines = [f"# KerasTuner search: {len(done)} completed trials (mode {mode})", "",
             io.markdown_table(["trial", "dev score", *keys], rows), "",
             (f"best: trial {best['trial_id']}, dev score {best['score']:.4f}; "
              "train with `python -m emobed_tf.train ... --hparams "
              f"{os.path.join(directory, 'best_hyperparameters.json')}`"), "",
             "![score against alpha and beta](alpha_beta.png)"]
    return "\n".join(lines) + "\n"


def write_summary(directory: str, trials: list, mode: str) -> dict:
    done = [t for t in trials if t["status"] == "COMPLETED" and t["score"] is not None]
    if not done:
        raise SearchError(f"{directory}: no completed trial (every trial failed: see the "
                          "messages above)")
    done.sort(key=lambda t: t["score"], reverse=True)
    best = done[0]
    io.write_json(os.path.join(directory, "best_hyperparameters.json"),
                  {"values": best["values"], "score": best["score"], "mode": mode,
                   "trial_id": best["trial_id"]})
    io.write_json(os.path.join(directory, "trials.json"), trials)
    io.write_text(os.path.join(directory, "summary.md"), summary_markdown(directory, done, mode))
    plot_alpha_beta(done, os.path.join(directory, "alpha_beta.png"))
    return best


def plot_alpha_beta(trials, path):
    plt = figures.pyplot()
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
    figures.save(fig, path, dpi=110)


# --------------------------------------------------------------------------
# CLI


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m tuning.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(p)
    p.add_argument("--mode", default="emobed", choices=configs.MODES)
    p.add_argument("--tuner", default="bayesian", choices=TUNERS)
    p.add_argument("--max-trials", type=_positive_int, default=20)
    p.add_argument("--out", required=True, help="search folder (shared by chief and workers)")
    return p.parse_args(argv)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


@contextlib.contextmanager
def precision_policy(name: str):
    """Keras' global dtype policy ``name`` inside the block (restored after)."""
    import keras

    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(old)


def check_strategy(name: str) -> None:
    """Refuses ``--strategy multiworker``: trials are spread over machines by KerasTuner."""
    if name == "multiworker":
        raise SearchError("--strategy multiworker does not apply to tuning.search: spread "
                          "trials over machines with KerasTuner's chief/worker mode "
                          "(KERASTUNER_TUNER_ID, see --help); --strategy mirrored trains each "
                          "trial on the devices of its machine")


def _strategy(name: str):
    check_strategy(name)
    if name == "mirrored":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy()
    return None


def check_splits(base: configs.TrainConfig, sources: dict) -> None:
    """Every split a trial reads is there (DataError naming the manifest, as ``train`` says):
    the training split of each modality and the target's dev split (the objective)."""
    for mod, src in sources.items():
        source.shard_paths(src, mod, "train")
    source.shard_paths(sources[base.target], base.target, "dev")


def search(args) -> dict | None:
    directory = args.out
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise SearchError(f"{directory}: is a file; --out must be a search folder (a new one, "
                          "or one this search wrote before)")
    base = cli.config_from_args(args, os.path.join(directory, "_unused"), args.mode)
    check_strategy(base.strategy)
    sources = experiment.resolve_sources(base)
    check_splits(base, sources)  # before the tuner: a trial would fail on it

    import keras  # after --backend (cli.run_main) and the data checks

    from tuning.hypermodel import EmoBedHyperModel

    hm = EmoBedHyperModel(base, sources)
    record = search_record(base, sources, hm, args.tuner, args.max_trials)
    chief = os.environ.get("KERASTUNER_TUNER_ID", "chief") == "chief"
    lock = io.FolderLock(directory, "tuning.search (chief)")
    try:
        with lock if chief else contextlib.nullcontext():
            if chief and args.overwrite:
                clear_folder(directory)
            check_folder(directory, record, chief)
            if chief:
                io.write_json(os.path.join(directory, RECORD), record)
            with precision_policy(base.precision):
                try:
                    tuner = make_tuner(args.tuner, hm, directory, args.max_trials, base.epochs,
                                       base.seed, overwrite=False,
                                       strategy=_strategy(base.strategy))
                    stop = keras.callbacks.EarlyStopping(hm.objective.name, mode="max",
                                                         patience=base.patience)
                    tuner.search(epochs=base.epochs, callbacks=[stop], verbose=base.verbose)
                except RuntimeError as err:  # KerasTuner: reload failed, too many failed trials
                    if isinstance(err, SearchError):
                        raise
                    first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                    raise SearchError(f"{directory}: the search stopped: {first}") from None
            if not chief:  # a worker: the chief holds the results
                return None
            return write_summary(directory, completed_trials(directory), args.mode)
    except io.LockedError:
        raise
    except OSError as err:
        if isinstance(err, io.OutputError):
            raise
        raise SearchError(io.describe_os_error(getattr(err, "filename", None) or directory,
                                               err)) from None


def main(argv=None) -> int:
    args = parse_args(argv)

    def work():
        try:
            best = search(args)
        except (SearchError, DataError) as err:
            return cli.fail(err)
        if best is not None:
            with open(os.path.join(args.out, "summary.md"), encoding="utf-8") as fh:
                print(fh.read())
        return 0

    def progress():
        done = [t for t in completed_trials(args.out) if t["status"] == "COMPLETED"] \
            if os.path.isdir(args.out) else []
        kept = "1 finished trial is" if len(done) == 1 else f"{len(done)} finished trials are"
        return f"{kept} kept in {args.out}; rerun the same command to continue the search"

    return cli.run_main(args, work, progress)


if __name__ == "__main__":
    sys.exit(main())
