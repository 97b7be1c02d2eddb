"""The ``python -m emobed_tf.export`` command; what it does is described in :mod:`emobed_tf.serving.export`
(its ``--help`` shows that description)."""

from __future__ import annotations

import argparse
import sys

from emobed_tf import cli
from emobed_tf.errors import EmobedError
from emobed_tf.experiments.rundir import RunDir
from emobed_tf.serving.export import check_version, export_monomodal


def _version_arg(text: str) -> int:
    try:
        return check_version(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m emobed_tf.export", description=sys.modules["emobed_tf.serving.export"].__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished emobed_tf.train run folder")
    p.add_argument("--target", choices=("audio", "video"),
                   help="the modality the served model is for (default: the run's target; an "
                        "EmoBed run can also serve its auxiliary modality)")
    p.add_argument("--out", required=True, help="model folder, e.g. saved_models/omg-audio")
    p.add_argument("--version", type=_version_arg,
                   help="version number, a positive integer (default: next free)")
    args = p.parse_args(argv)
    cli.quiet_frameworks()
    try:
        target = args.target or RunDir(args.run).config().target
        path = export_monomodal(args.run, target, args.out, args.version)
    except EmobedError as err:
        return cli.fail(err)
    print(f"exported {target} model of {args.run} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
