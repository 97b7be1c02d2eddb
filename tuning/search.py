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

``--jobs N`` (N > 1) does that on this machine: the command starts a local
chief and N workers (the same command, on a free port of 127.0.0.1, each
worker with ``cores // N`` threads; their logs in ``SEARCH_DIR/logs/``),
waits for them and prints the chief's summary. The default, 1, runs the
trials one after the other in this process.
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
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="trials trained side by side: N > 1 starts a local KerasTuner chief "
                        "and N workers (see above); 1 (default): one after the other here")
    return p.parse_args(argv)


def _without_jobs(argv) -> list:
    """``argv`` without its ``--jobs`` option (the workers' command line).

    >>> _without_jobs(["--dataset", "demo", "--jobs", "2", "--out", "s"])
    ['--dataset', 'demo', '--out', 's']
    >>> _without_jobs(["--jobs=3", "--out", "s"])
    ['--out', 's']
    """
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--jobs":
            skip = True
        elif not a.startswith("--jobs="):
            out.append(a)
    return out


def local_workers(argv, jobs: int, directory: str) -> int:
    """Runs the search as a local chief and ``jobs`` workers (KerasTuner's distributed mode
    on 127.0.0.1); returns the chief's exit code, or 2 naming a worker that failed (the
    others are then stopped: the chief would wait for its trial forever)."""
    import socket
    import subprocess
    import time

    from emobed_tf.experiments.runner import usable_cores

    if os.path.exists(directory) and not os.path.isdir(directory):
        return cli.fail(f"{directory}: is a file; --out must be a search folder")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "tuning.search", *_without_jobs(argv)]
    threads = str(max(1, usable_cores() // jobs))
    logs = os.path.join(directory, "logs")
    procs, files = {}, []

    def env(role):
        return {**os.environ, "KERASTUNER_TUNER_ID": role, "KERASTUNER_ORACLE_IP": "127.0.0.1",
                "KERASTUNER_ORACLE_PORT": port, "TF_NUM_INTRAOP_THREADS": threads,
                "TF_NUM_INTEROP_THREADS": "1"}

    try:
        procs["chief"] = subprocess.Popen(cmd, env=env("chief"))
        while procs["chief"].poll() is None:  # the workers connect once the oracle listens
            try:
                socket.create_connection(("127.0.0.1", int(port)), 0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        if procs["chief"].poll() is not None:
            return procs["chief"].returncode
        os.makedirs(logs, exist_ok=True)  # after the chief cleared the folder (--overwrite)
        for i in range(jobs):
            files.append(open(os.path.join(logs, f"tuner{i}.log"), "w"))
            procs[f"tuner{i}"] = subprocess.Popen(cmd, env=env(f"tuner{i}"), stdout=files[-1],
                                                  stderr=subprocess.STDOUT)
        while True:
            codes = {role: p.poll() for role, p in procs.items()}
            failed = [r for r, c in codes.items() if r != "chief" and c not in (None, 0)]
            if failed:
                print(f"error: worker {failed[0]} ended with exit code {codes[failed[0]]} "
                      f"(log: {os.path.join(logs, failed[0] + '.log')}); the search stopped, "
                      "rerun the same command to continue it", file=sys.stderr)
                return 2
            if codes["chief"] is not None:
                return codes["chief"]
            time.sleep(0.5)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
        for fh in files:
            fh.close()


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
    if args.jobs < 1:
        return cli.fail(f"--jobs {args.jobs}: give 1 or more trials side by side")
    if args.jobs > 1:
        if "KERASTUNER_TUNER_ID" in os.environ:
            return cli.fail(f"--jobs {args.jobs} starts its own chief and workers, but "
                            "KERASTUNER_TUNER_ID is set (a distributed search): unset it, or "
                            "leave --jobs out")
        raw = sys.argv[1:] if argv is None else list(argv)
        return cli.run_interruptible(
            lambda: local_workers(raw, args.jobs, args.out),
            lambda: f"the search's finished trials are kept in {args.out}; rerun the same "
                    "command to continue it")

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
