"""The ``python -m emobed_tf.evaluate`` command; what it does is described in :mod:`emobed_tf.experiments.evaluate`
(its ``--help`` shows that description)."""

from __future__ import annotations

import argparse
import os
import sys

from emobed_tf import cli  # noqa: F401  (quiet framework start-up first)
from emobed_tf.errors import EmobedError
from emobed_tf.experiments.evaluate import evaluate, format_report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m emobed_tf.evaluate", description=sys.modules["emobed_tf.experiments.evaluate"].__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished emobed_tf.train run folder")
    p.add_argument("--compare", help="another run to test this one against")
    p.add_argument("--tsne-points", type=int, default=600, help="points per modality in t-SNE")
    p.add_argument("--no-figures", action="store_true")
    args = p.parse_args(argv)
    cli.quiet_frameworks()
    try:
        rep = evaluate(args.run, args.compare, args.tsne_points, not args.no_figures)
    except (EmobedError, OSError) as err:
        return cli.fail(err)
    print(format_report(rep))
    print(f"report written to {os.path.join(args.run, 'report')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
