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
import os
import sys

from emobed_tf import cli, io
from emobed_tf import configs
from emobed_tf.data import source
from emobed_tf.experiments import experiment
from emobed_tf.records.schema import DataError
from tuning.folder import (RECORD, SearchError, check_folder, clear_folder, completed_trials,
                           search_record)
from tuning.report import write_summary

TUNERS = ("random", "bayesian", "hyperband")


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
    from tuning.hypermodel import resolved_base

    base = resolved_base(base, sources)  # auto batch size and epochs for this data

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
