"""Monomodal SavedModel export for TF Serving.

``python -m emobed_tf.export --run RUN_DIR [--target audio] --out saved_models/NAME``

writes ``saved_models/NAME/<version>/`` (TF Serving's numbered layout; the
next free version unless ``--version``). The graph holds only what
inference needs: the modality's training-set standardisation (or, for a
run trained with ``--normalize speaker``, inputs for the speaker's), its encoder
(f_A or f_V), the shared network f, and, for regression runs that have one,
the fitted post-processing. The auxiliary branch is dropped. Loading needs
TensorFlow only, not this package.

Signatures (inputs are float32 ``features`` [batch, time, dim] and int32
``lengths`` [batch], the number of valid frames of each sequence):

* ``serving_default``: classification -> ``probabilities`` [batch, K] and
  ``class_id`` [batch]; regression -> one [batch, time] output per
  dimension (``arousal``, ``valence``), frames past ``lengths`` are 0.
* ``embedding``: ``embedding`` - the shared-space vectors ([batch, E] per
  utterance for classification, [batch, time, E] per frame otherwise).

A run trained with ``--normalize speaker`` exports signatures with two more
inputs, float32 ``speaker_mean`` and ``speaker_std`` [batch, dim]: the
mean and standard deviation over all frames of the item's speaker's
features (unlabelled speech of that speaker; what
``emobed_tf.data.speakers.speaker_moments`` computes), which replace the
training-set statistics. Training gave items without a speaker id, and
speakers with fewer than ``min_speaker_frames`` frames, the training set's
statistics; ``assets.extra/emobed_export.json`` holds them
(``fallback_mean``, ``fallback_std``) for a client to send in that case.

Both signatures check their inputs in the graph, so a TF Serving client gets
a sentence it can act on (an ``INVALID_ARGUMENT`` error), e.g. ``features
must have 88 values per frame, got 5``: rank 3 features of the model's
feature size with at least one frame, one ``lengths`` entry per item, each
between 1 and the time axis, and finite values in every valid frame (padding
past ``lengths`` is ignored, whatever it holds). Versions (``--version``) are
positive integers, as TF Serving reads only those folders.
"""

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
    p = argparse.ArgumentParser(prog="python -m emobed_tf.export", description=__doc__,
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
