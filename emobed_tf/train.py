"""Training CLI: ``python -m emobed_tf.train --dataset NAME --target audio --mode emobed --out RUN``.

Trains one run into the run folder ``--out`` (layout: :mod:`emobed_tf.experiments.rundir`)
through :func:`emobed_tf.experiments.experiment.run`. Every setting of
:mod:`emobed_tf.configs` is a flag; flags left out keep the ``--dataset``
preset's value.

Rerunning the same command after an interruption resumes from the last
finished epoch; a finished run is left untouched unless ``--overwrite``,
which replaces it only once the new run has finished. A run whose loss
becomes NaN or infinite stops with an error (exit code 2) and is never
marked finished. Ctrl-C stops with one line naming the last finished epoch
(exit code 130); a rerun of the same command resumes after it.
"""

from __future__ import annotations

import argparse
import sys

from emobed_tf import cli  # first: keeps framework start-up logs quiet
from emobed_tf import configs
from emobed_tf.experiments import experiment


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m emobed_tf.train", description=__doc__,
        usage="python -m emobed_tf.train --dataset NAME --out RUN [--mode MODE] [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(p)
    p.add_argument("--mode", default="emobed", choices=configs.MODES,
                   help="classic (alpha=beta=0), joint (beta=0), triplet (alpha=0), emobed")
    p.add_argument("--out", required=True, help="run folder")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def work():
        cfg = cli.config_from_args(args, args.out, args.mode)
        result = experiment.run(cfg, overwrite=args.overwrite)
        print(experiment.format_summary(result))
        return 0

    return cli.run_main(args, work, lambda: cli.run_state(args.out))


if __name__ == "__main__":
    sys.exit(main())
