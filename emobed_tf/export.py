"""Monomodal SavedModel export for TF Serving.

``python -m emobed_tf.export --run RUN_DIR --modality audio --out saved_models/NAME``

writes ``saved_models/NAME/<version>/`` (TF Serving's numbered layout; the
next free version unless ``--version``). The graph holds only what
inference needs: the modality's training-set standardisation, its encoder
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
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

from emobed_tf.schema import DataError


class ExportError(ValueError):
    """The run cannot be exported as asked."""


def next_version(base: str) -> int:
    """1 + the largest numbered version folder under ``base`` (1 if none)."""
    if not os.path.isdir(base):
        return 1
    nums = [int(n) for n in os.listdir(base) if re.fullmatch(r"\d+", n)]
    return max(nums, default=0) + 1


def load_run(run_dir: str, modality: str):
    """(model, mean, std, postprocess or None) of a finished run."""
    from emobed_tf.model import load_model

    path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(path):
        raise ExportError(f"{path}: no trained model here; is {run_dir} a finished "
                          "emobed_tf.train run?")
    model = load_model(path)
    if modality not in model.encoders:
        raise ExportError(f"{run_dir}: the model has no {modality} branch (it was trained with "
                          f"{sorted(model.encoders)}); a classic run only has its target's")
    mpath = os.path.join(run_dir, "manifests", f"{modality}.json")
    if not os.path.isfile(mpath):
        raise ExportError(f"{mpath}: missing; the standardisation statistics of {modality} "
                          "are needed for export")
    with open(mpath) as fh:
        info = json.load(fh)["modalities"][modality]
    mean = np.asarray(info["mean"], np.float32)
    std = np.asarray(info["std"], np.float32)
    if mean.shape != (model.input_dims[modality],):
        raise DataError(f"{mpath}: statistics have {mean.shape[0]} dims, the model expects "
                        f"{model.input_dims[modality]}")
    post = None
    ppath = os.path.join(run_dir, "postprocess.json")
    if model.task == "regression" and os.path.isfile(ppath):
        with open(ppath) as fh:
            post = json.load(fh)
    return model, mean, std, post


def build_serving_functions(model, modality: str, mean, std, postprocess=None):
    """``(serve, embed, input_signature)`` tf.functions of the monomodal graph."""
    import tensorflow as tf

    dim = int(model.input_dims[modality])
    sig = [tf.TensorSpec([None, None, dim], tf.float32, name="features"),
           tf.TensorSpec([None], tf.int32, name="lengths")]
    mean = tf.constant(mean)
    std = tf.constant(std)
    names = list(model.output_names_) or [f"y{i}" for i in range(model.num_outputs)]
    classification = model.task == "classification"

    def _forward(features, lengths):
        mask = tf.sequence_mask(lengths, tf.shape(features)[1])
        x = (features - mean) / std
        x = x * tf.cast(mask, x.dtype)[..., None]
        out = model.forward(modality, {"features": x, "mask": mask}, training=False)
        return out, mask

    def serve(features, lengths):
        out, mask = _forward(features, lengths)
        y = tf.cast(out["prediction"], tf.float32)
        if classification:
            return {"probabilities": y, "class_id": tf.argmax(y, -1, output_type=tf.int32)}
        if postprocess:
            from emobed_tf.postprocess import apply_chain_tf

            y = apply_chain_tf(y, mask, postprocess, names)
        y = y * tf.cast(mask, y.dtype)[..., None]
        return {n: y[..., i] for i, n in enumerate(names)}

    def embed(features, lengths):
        out, mask = _forward(features, lengths)
        e = tf.cast(out["embedding"], tf.float32)
        if not classification:
            e = e * tf.cast(mask, e.dtype)[..., None]
        return {"embedding": e}

    return serve, embed, sig


def export_monomodal(run_dir: str, modality: str, out: str, version: int | None = None) -> str:
    """Writes ``out/<version>/`` and returns that path."""
    import keras

    model, mean, std, post = load_run(run_dir, modality)
    version = version or next_version(out)
    path = os.path.join(out, str(version))
    if os.path.exists(path):
        raise ExportError(f"{path} already exists; versions are never overwritten (omit "
                          "--version to write the next one)")
    serve, embed, sig = build_serving_functions(model, modality, mean, std, post)
    archive = keras.export.ExportArchive()
    # only the served branch: the other modality's encoder is left out
    for layer in (model.encoders[modality], model.shared, model.head):
        archive.track(layer)
    archive.add_endpoint("serving_default", serve, input_signature=sig)
    archive.add_endpoint("embedding", embed, input_signature=sig)
    tmp = path + ".tmp"
    archive.write_out(tmp, verbose=False)
    meta = {"run": os.path.abspath(run_dir), "modality": modality, "task": model.task,
            "outputs": list(model.output_names_), "input_dim": int(model.input_dims[modality]),
            "postprocess": post}
    os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
    with open(os.path.join(tmp, "assets.extra", "emobed_export.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    os.replace(tmp, path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m emobed_tf.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished emobed_tf.train run folder")
    p.add_argument("--modality", required=True, choices=("audio", "video"))
    p.add_argument("--out", required=True, help="model folder, e.g. saved_models/omg-audio")
    p.add_argument("--version", type=int, help="version number (default: next free)")
    args = p.parse_args(argv)
    try:
        path = export_monomodal(args.run, args.modality, args.out, args.version)
    except (ExportError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {args.modality} model of {args.run} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
