"""Trains several of the paper's systems and compares them (Tables 1-3 style).

``python -m emobed_tf.compare --dataset demo --target audio --modes classic,emobed --out runs/demo``

Each mode is trained into ``OUT/<mode>/`` with ``emobed_tf.train`` (a
finished run is reused, an interrupted one resumes), then
``OUT/comparison.md`` and ``OUT/comparison.json`` hold the dev/test scores
of the target modality and each system against ``classic`` on the same
items (paired, two-sided: exact McNemar on accuracy, paired bootstrap of
the macro-F1 difference with its 95 % interval; regression has no paired
test on one test set, and the report says so: use ``emobed_tf.crossval``). Ctrl-C stops with one line
saying how many systems finished (exit code 130); rerunning resumes.
"""

from __future__ import annotations

import argparse
import os
import sys

from emobed_tf import cli  # first: keeps framework start-up logs quiet
from emobed_tf import configs
from emobed_tf.experiments import compare
from emobed_tf.io import write_json_and_markdown


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m emobed_tf.compare", description=__doc__,
        usage="python -m emobed_tf.compare --dataset NAME --out DIR [--modes M1,M2] [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(p)
    p.add_argument("--modes", default="classic,joint,triplet,emobed",
                   help="comma-separated systems among " + ", ".join(configs.MODES))
    p.add_argument("--out", required=True, help="folder for the runs and the comparison")
    cli.add_jobs_arg(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in configs.MODES]
    if bad:
        return cli.fail(f"unknown modes {bad}; choose among {configs.MODES}")

    def work():
        runs = {m: cli.config_from_args(args, os.path.join(args.out, m), m) for m in modes}
        table = compare.comparison(compare.run_modes(runs, args.overwrite, args.jobs))
        md = compare.format_markdown(table)
        write_json_and_markdown(args.out, "comparison", table, md)
        print(md)
        return 0

    def progress():
        done = cli.finished_runs(os.path.join(args.out, m) for m in modes)
        return (f"{done} of {len(modes)} systems finished ({args.out}); rerun the same command "
                "to resume")

    return cli.run_main(args, work, progress)


if __name__ == "__main__":
    sys.exit(main())
