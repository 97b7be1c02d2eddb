"""Evaluation report of a run, the way AVEC and the OMG-Emotion challenge score.

``python -m emobed_tf.evaluate --run RUN_DIR [--compare OTHER_RUN]``

writes into ``RUN_DIR/report/``:

* ``report.json`` and ``report.md``: dev and test scores of the target
  modality alone, pooled over each partition. Classification: macro-F1
  (headline), micro-F1, UAR, accuracy, per-class F1. Regression: CCC
  (standard and AVEC 2016 variants), PCC, RMSE, before and after the AVEC
  2016 post-processing chain, which is fitted on dev, applied unchanged to
  test and saved as ``RUN_DIR/postprocess.json`` (the export applies it).
* with ``--compare``: one-tailed significance of this run against the other
  (two-proportion z-test on accuracy; Fisher r-to-z on CCC).
* figures: ``confusion_dev.png`` (classification), ``predictions_dev.png``
  (regression: prediction and gold standard over time), and
  ``tsne_dev.png``: t-SNE of the learnt embeddings of the modalities the
  model has, coloured by emotion and marked by modality (paper Figs. 3-4).
"""

from __future__ import annotations

import argparse
import os
import sys

from emobed_tf import cli  # noqa: F401  (quiet framework start-up first)
from emobed_tf.errors import EmobedError
from emobed_tf.experiments.evaluate import evaluate, format_report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m emobed_tf.evaluate", description=__doc__,
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
