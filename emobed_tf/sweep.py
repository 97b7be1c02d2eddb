"""Sweep of alpha or beta (the paper's Figs. 5-7).

``python -m emobed_tf.sweep --dataset demo --target audio --param beta --values 0,0.3,0.6,1 --out runs/sweep``

Trains one run per value into ``OUT/<param>=<value>/`` (``joint`` systems
for alpha and ``triplet`` systems for beta, as in the paper, unless
``--mode``); finished runs are reused and interrupted ones resume. Writes
``sweep.json``, ``sweep.md`` and ``sweep.png`` (dev and test score against
the weight, best dev value marked). Ctrl-C stops with one line saying how
many values finished (exit code 130); rerunning resumes.
"""

from __future__ import annotations

import argparse
import os
import sys

from emobed_tf import cli  # first: keeps framework start-up logs quiet
from emobed_tf import configs
from emobed_tf.experiments import sweep


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m emobed_tf.sweep", description=__doc__,
        usage="python -m emobed_tf.sweep --dataset NAME --param alpha|beta --values V1,V2 --out DIR [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(p)
    p.add_argument("--param", required=True, choices=("alpha", "beta"))
    p.add_argument("--values", required=True, help="comma-separated weights, e.g. 0,0.5,1")
    p.add_argument("--mode", choices=("joint", "triplet", "emobed"),
                   help="default: joint for alpha, triplet for beta")
    p.add_argument("--out", required=True)
    cli.add_jobs_arg(p)
    args = p.parse_args(argv)
    try:
        values = [float(v) for v in args.values.split(",") if v]
    except ValueError as err:
        return cli.fail(f"--values {args.values}: {err}")

    def work():
        return _sweep(args, values)

    def progress():
        done = cli.finished_runs(os.path.join(args.out, f"{args.param}={v:g}") for v in values)
        return (f"{done} of {len(values)} {args.param} values finished ({args.out}); rerun the "
                "same command to resume")

    return cli.run_main(args, work, progress)


def _sweep(args, values) -> int:
    mode = args.mode or ("joint" if args.param == "alpha" else "triplet")
    runs = [(v, configs.apply_hparams(cli.config_from_args(
        args, os.path.join(args.out, f"{args.param}={v:g}"), mode), {args.param: v}))
        for v in values]
    rows = sweep.run_sweep(args.param, mode, runs, args.overwrite, args.jobs)
    title = f"{args.dataset}, {args.target} target: {mode} systems"
    print(sweep.write_report(rows, args.param, args.out, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
