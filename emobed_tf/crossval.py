"""Speaker-independent cross-validation of the paper's systems, without re-extraction.

::

    python -m emobed_tf.crossval --dataset custom --audio-dir data/ravdess \\
        --video-dir data/faces --target audio --folds speaker:8 \\
        --modes classic,emobed --seeds 0,1,2 --out runs/cv

Folds are assigned at read time from the speaker ids in the records (the
data layer filters by speaker; no shards are written): ``--folds loso``
holds out one speaker per fold, ``speaker:K`` splits the sorted speakers
into K folds (fold i = speakers[i::K]). Inside the remaining speakers a dev
group (the next fold's speakers; for LOSO the next ``--n-dev-speakers``
speakers) serves early stopping; the rest train. The auxiliary modality
trains on everything except the target's dev and test speakers, so a
corpus that shares speakers with the target (audio-visual recordings)
never brings a held-out speaker's face into training.

Every system x fold x seed is trained into ``OUT/runs/<mode>/fold<i>-seed<s>``
(finished runs are reused, interrupted ones resume; ``--jobs N`` trains N
side by side, by default one per core), then ``OUT/crossval.md``,
``OUT/crossval.json`` and ``OUT/crossval.png`` report per fold and mean +- sd
macro-F1, UAR and accuracy (classification; CCC for regression) and paired
tests of each system against ``classic`` over the fold x seed pairs
(Wilcoxon signed-rank and sign test, two-sided, scipy). A classification
task also gets the **linear probe** as a reference row (``probe``: a
standardised logistic regression on the same features, fitted on each
fold's training speakers only, its C chosen among 0.001 ... 10 by 4 inner
speaker folds over them; ``OUT/runs/probe/fold<i>``) and each system is
tested against it over the folds (its mean over the seeds in a fold minus
the probe's score); ``--no-probe`` leaves it out. Ctrl-C stops with
one line saying how many runs finished (exit code 130); rerunning the same
command resumes. ``--backend jax|torch`` trains every run on that backend.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from emobed_tf import cli  # first: keeps framework start-up logs quiet
from emobed_tf import configs
from emobed_tf.data import speakers
from emobed_tf.errors import EmobedError
from emobed_tf.experiments import crossval, experiment
from emobed_tf.experiments.capacity import CapacityGrid
from emobed_tf.io import write_json_and_markdown


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m emobed_tf.crossval", description=__doc__,
        usage="python -m emobed_tf.crossval --dataset NAME --out DIR [--folds loso|speaker:K] "
              "[options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(p, exclude=("train_speakers", "dev_speakers", "test_speakers"))
    p.add_argument("--modes", default="classic,emobed",
                   help="comma-separated systems: " + ", ".join(configs.MODES) + ", each optionally "
                        "with another crossmodal loss, e.g. emobed+prototype")
    p.add_argument("--folds", default="speaker:8", help="loso or speaker:K")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--n-dev-speakers", type=int, default=0,
                   help="dev speakers per fold (default: the next fold's; LOSO: n/10)")
    p.add_argument("--n-train-speakers", type=int, default=0,
                   help="train on only this many of each fold's training speakers "
                        "(learning curves; default all)")
    p.add_argument("--out", required=True, help="folder for the runs and the report")
    p.add_argument("--no-probe", action="store_true",
                   help="leave out the linear probe (classification: a standardised logistic "
                        "regression on the same features and folds, C chosen by inner speaker "
                        "folds on the training speakers) and the tests against it")
    p.add_argument("--capacity", default="fixed", choices=("fixed", "inner"),
                   help="fixed: every system trains with the given settings; inner: each "
                        "system's dense L2 (0.1, 0.01, 0.001) and epochs (100, 300) are chosen "
                        "per fold by 3 inner speaker folds over the fold's training speakers "
                        "(18 more runs per system and fold; see docs/training.md)")
    cli.add_jobs_arg(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    runs = []  # the run folders, once the folds are known (for the line after Ctrl-C)

    def work():
        try:
            for m in modes:
                crossval.parse_system(m)
            seeds = [int(s) for s in args.seeds.split(",") if s]
            repeated = sorted({s for s in seeds if seeds.count(s) > 1})
            if repeated or not seeds:
                raise configs.ConfigError(f"--seeds {args.seeds}: " + (
                    f"seed {repeated[0]} is given twice (the paired tests need one run per "
                    "fold and seed)" if repeated else "give at least one seed"))
            base = cli.config_from_args(  # as a system that reads the auxiliary when one does
                args, args.out, crossval.parse_system(next((m for m in modes if not m.startswith(
                    "classic")), modes[0]))[0])
            base = dataclasses.replace(base, verbose=args.verbose or 0)  # one line per run
            src = experiment.resolve_sources(crossval.system_config(base, "classic"))[base.target]
            stats = speakers.cached_speaker_statistics(src, base.target)
            speakers.require_speaker_ids(src, base.target, stats)
            speaker_ids = sorted(stats)
            folds = speakers.make_folds(speaker_ids, args.folds, args.n_dev_speakers,
                               args.n_train_speakers)
            excluded = crossval.check_before_training(base, folds, modes, args.out)
            runs[:] = [crossval.fold_config(base, m, f, s, args.out).out
                       for s in seeds for f in folds for m in modes]
            print(f"{len(speaker_ids)} {base.target} speakers, {len(folds)} folds x {len(seeds)} "
                  f"seeds x {len(modes)} systems = {len(runs)} runs -> {args.out}", flush=True)
            summary = crossval.run_crossval(base, folds, modes, seeds, args.out, args.overwrite,
                                            log=lambda s: print(s, flush=True), jobs=args.jobs,
                                            with_probe=not args.no_probe,
                                            capacity=(CapacityGrid() if args.capacity == "inner"
                                                      else None))
        except EmobedError as err:
            return cli.fail(err)
        summary["auxiliary_excluded"] = excluded
        title = f"{base.dataset}: target {base.target}, {args.folds}"
        md = crossval.format_markdown(summary, title, folds)
        write_json_and_markdown(args.out, "crossval", summary, md)
        crossval.plot(summary, folds, os.path.join(args.out, "crossval.png"))
        print(md)
        return 0

    def progress():
        where = os.path.join(args.out, "runs")
        if not runs:
            return f"no run had started ({where}); rerun the same command to start"
        return (f"{cli.finished_runs(runs)} of {len(runs)} runs finished ({where}); rerun the "
                "same command to resume")

    return cli.run_main(args, work, progress)


if __name__ == "__main__":
    sys.exit(main())
