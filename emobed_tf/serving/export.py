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

import os
import re
import shutil

import numpy as np

from emobed_tf import io
from emobed_tf.data.speakers import MIN_SPEAKER_FRAMES
from emobed_tf.errors import EmobedError
from emobed_tf.experiments.rundir import RunDir
from emobed_tf.records.schema import DataError


class ExportError(EmobedError, ValueError):
    """The run cannot be exported as asked."""


def next_version(base: str) -> int:
    """1 + the largest numbered version folder under ``base`` (1 if none).

    >>> import tempfile
    >>> base = tempfile.mkdtemp()
    >>> next_version(base)
    1
    >>> for name in ("1", "3", "notes", "4.tmp"):
    ...     os.makedirs(os.path.join(base, name))
    >>> next_version(base)
    4
    """
    if not os.path.isdir(base):
        return 1
    nums = [int(n) for n in os.listdir(base) if re.fullmatch(r"\d+", n)]
    return max(nums, default=0) + 1


def check_version(value) -> int:
    """``value`` as a TF Serving version number (a positive integer), or ``ValueError``.

    TF Serving loads only folders named by a positive integer: ``-3`` or
    ``0`` would be written and then silently never served.

    >>> check_version("7")
    7
    >>> check_version("-3")
    Traceback (most recent call last):
    ...
    ValueError: versions are positive integers (TF Serving serves only those folders), got '-3'
    """
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\+?\d+", text) or int(text) < 1:
        raise ValueError("versions are positive integers (TF Serving serves only those "
                         f"folders), got {str(value)!r}")
    return int(text)


def load_run(run_dir: str, modality: str):
    """(model, mean, std, postprocess or None) of a finished run (mean/std: the training set's)."""
    from emobed_tf.model.emobed import load_model

    run = RunDir(run_dir)
    path = run.model_path
    if not os.path.isfile(path):
        raise ExportError(f"{path}: no trained model here; is {run_dir} a finished "
                          "emobed_tf.train run?")
    try:
        model = load_model(path, compile=False)  # inference only: any backend trained it
    except Exception as err:  # noqa: BLE001 (a truncated or foreign file: Keras' errors vary)
        raise ExportError(f"{path}: cannot load the model ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else 'no detail'}); the file "
                          "is truncated or not an emobed_tf model; retrain the run") from None
    if modality not in model.encoders:
        raise ExportError(f"{run_dir}: the model has no {modality} branch (it was trained with "
                          f"{sorted(model.encoders)}); a classic run only has its target's")
    mpath = run.manifest_path(modality)
    if not os.path.isfile(mpath):
        raise ExportError(f"{mpath}: missing; the standardisation statistics of {modality} "
                          "are needed for export")
    try:
        info = io.read_json(mpath)["modalities"][modality]
    except (KeyError, TypeError):
        raise ExportError(f"{mpath}: has no statistics of {modality}") from None
    except ValueError as err:
        raise ExportError(str(err)) from None
    mean = np.asarray(info["mean"], np.float32)
    std = np.asarray(info["std"], np.float32)
    if mean.shape != (model.input_dims[modality],):
        raise DataError(f"{mpath}: statistics have {mean.shape[0]} dims, the model expects "
                        f"{model.input_dims[modality]}")
    post = None
    ppath = run.postprocess_path
    if model.task == "regression" and os.path.isfile(ppath):
        try:
            post = io.read_json(ppath)
        except ValueError as err:
            raise ExportError(str(err)) from None
    return model, mean, std, post


def check_inputs(features, lengths, dim: int):
    """``(features, lengths)`` after in-graph checks that a serving client can act on.

    A bad input raises ``tf.errors.InvalidArgumentError`` (TF Serving answers
    ``INVALID_ARGUMENT``) with one sentence naming the value, e.g.
    ``features must have 88 values per frame, got 5``; where several checks
    fail, the first of this order is reported: rank of ``features`` (3) and
    of ``lengths`` (1), feature size, a non-empty time axis, one length per
    item, lengths of at least 1 and at most the time axis, finite values in
    every valid frame (padding past ``lengths`` is not checked).

    Every check is computed with operations that cannot fail on a bad input
    (Grappler may run them in any order) and a single ``Assert`` reports the
    first failure. The returned tensors have the static shapes
    ``[None, None, dim]`` and ``[None]``.

    >>> import tensorflow as tf
    >>> f, n = check_inputs(tf.zeros((2, 3, 4)), tf.constant([3, 1]), 4)
    >>> f.shape, n.shape
    (TensorShape([2, 3, 4]), TensorShape([2]))
    >>> check_inputs(tf.zeros((2, 3, 5)), tf.constant([3, 1]), 4)
    Traceback (most recent call last):
    ...
    tensorflow.python.framework.errors_impl.InvalidArgumentError: ... values per frame, got 5...
    """
    import tensorflow as tf

    frank, lrank = tf.rank(features), tf.rank(lengths)
    shape = tf.concat([tf.shape(features), tf.zeros([3], tf.int32)], 0)  # padded: never fails
    batch, time, size = shape[0], shape[1], shape[2]
    flat = tf.reshape(lengths, [-1])
    low = tf.concat([flat, [1]], 0)  # sentinels: an empty batch passes
    high = tf.concat([flat, [0]], 0)
    fmt = lambda template, *values: tf.strings.format(template, values)
    checks = [
        (tf.equal(frank, 3), fmt("features must be a 3-d array [batch, time, " + str(dim)
                                 + "], got {} dimensions", frank)),
        (tf.equal(lrank, 1), fmt("lengths must be a 1-d array [batch] (the number of valid "
                                 "frames of each item), got {} dimensions", lrank)),
        (tf.equal(size, dim), fmt("features must have " + str(dim) + " values per frame, "
                                  "got {}", size)),
        (time > 0, tf.constant("features has a time axis of length 0; send at least one frame "
                               "per item")),
        (tf.equal(tf.size(lengths), batch),
         fmt("lengths has {} entries but features has {} items; give one length per item",
             tf.size(lengths), batch)),
        (tf.reduce_min(low) >= 1,
         fmt("lengths must be at least 1 (every item needs a valid frame), got lengths[{}] = {}",
             tf.argmin(low), tf.reduce_min(low))),
        (tf.reduce_max(high) <= time,
         fmt("lengths[{}] = {} is longer than the time axis of features ({} frames)",
             tf.argmax(high), tf.reduce_max(high), time)),
    ]
    shapes_ok = tf.reduce_all(tf.stack([ok for ok, _ in checks]))

    def first_non_finite():  # [item, frame] of the first bad valid frame, or [-1, -1]
        x = tf.reshape(features, [batch, time, size])
        bad = tf.logical_and(tf.reduce_any(tf.logical_not(tf.math.is_finite(x)), -1),
                             tf.sequence_mask(flat, time))
        return tf.concat([tf.where(bad), tf.constant([[-1, -1]], tf.int64)], 0)[0]

    where = tf.cond(shapes_ok, first_non_finite, lambda: tf.constant([-1, -1], tf.int64))
    checks.append((where[0] < 0, fmt("features[{}] has a NaN or infinite value at frame {}; "
                                     "features must be finite", where[0], where[1])))
    message = tf.constant("")
    for ok, text in reversed(checks):  # the first failing check's sentence
        message = tf.where(ok, message, text)
    all_ok = tf.reduce_all(tf.stack([ok for ok, _ in checks]))
    assertion = tf.debugging.Assert(all_ok, [message])
    # a bad input reaches the model as an empty batch (never its own shape errors), and
    # the assertion fails the call. Static shapes come from reshapes: Grappler would take
    # an ensure_shape as a promise about the input and fold the rank checks above away.
    features, lengths = tf.cond(
        all_ok, lambda: (tf.reshape(features, [-1, time, dim]), tf.reshape(lengths, [-1])),
        lambda: (tf.zeros([0, 1, dim], features.dtype), tf.zeros([0], lengths.dtype)))
    with tf.control_dependencies([assertion]):
        return tf.identity(features), tf.identity(lengths)


def check_speaker_stats(speaker_mean, speaker_std, batch, dim: int):
    """``(speaker_mean, speaker_std)`` [batch, dim] after in-graph checks (see check_inputs).

    >>> import tensorflow as tf
    >>> m, s = check_speaker_stats(tf.zeros((2, 3)), tf.ones((2, 3)), 2, 3)
    >>> m.shape
    TensorShape([2, 3])
    >>> check_speaker_stats(tf.zeros((2, 3)), tf.zeros((2, 3)), 2, 3)
    Traceback (most recent call last):
    ...
    tensorflow.python.framework.errors_impl.InvalidArgumentError: ...speaker_std must be finite...
    """
    import tensorflow as tf

    def shape_ok(x):
        shape = tf.concat([tf.shape(x), tf.zeros([2], tf.int32)], 0)
        return tf.logical_and(tf.equal(tf.rank(x), 2),
                              tf.logical_and(tf.equal(shape[0], batch), tf.equal(shape[1], dim)))

    shapes = tf.logical_and(shape_ok(speaker_mean), shape_ok(speaker_std))
    values = tf.cond(shapes, lambda: tf.logical_and(
        tf.reduce_all(tf.math.is_finite(speaker_mean)),
        tf.reduce_all(tf.logical_and(tf.math.is_finite(speaker_std), speaker_std > 0))),
        lambda: tf.constant(False))
    message = tf.where(shapes, tf.constant("speaker_mean must be finite and speaker_std must be "
                                           "finite and > 0 (each item's speaker's mean and "
                                           "standard deviation of the raw features)"),
                       tf.strings.format("speaker_mean and speaker_std must be [batch, {}] "
                                         "arrays with one row per item of features ({} items)",
                                         (dim, batch)))
    ok = tf.logical_and(shapes, values)
    assertion = tf.debugging.Assert(ok, [message])
    mean, std = tf.cond(ok, lambda: (tf.reshape(speaker_mean, [-1, dim]),
                                     tf.reshape(speaker_std, [-1, dim])),
                        lambda: (tf.zeros([batch, dim]), tf.ones([batch, dim])))
    with tf.control_dependencies([assertion]):
        return tf.identity(mean), tf.identity(std)


def build_serving_functions(model, modality: str, mean, std, postprocess=None):
    """``(serve, embed, input_signature)`` tf.functions of the monomodal graph.

    ``mean``/``std`` None: per-speaker normalisation, the functions take
    ``speaker_mean`` and ``speaker_std`` [batch, dim] as well.

    The signature leaves the shapes open (any rank, any size) so that every
    bad input reaches :func:`check_inputs` and its readable messages instead
    of a bare shape mismatch; the expected feature size is in those messages
    and in ``assets.extra/emobed_export.json``.
    """
    import tensorflow as tf

    dim = int(model.input_dims[modality])
    sig = [tf.TensorSpec(None, tf.float32, name="features"),
           tf.TensorSpec(None, tf.int32, name="lengths")]
    per_speaker = mean is None
    if per_speaker:
        sig += [tf.TensorSpec(None, tf.float32, name="speaker_mean"),
                tf.TensorSpec(None, tf.float32, name="speaker_std")]
    else:
        mean = tf.constant(mean)
        std = tf.constant(std)
    names = list(model.output_names_) or [f"y{i}" for i in range(model.num_outputs)]
    classification = model.task == "classification"

    def _forward(features, lengths, *speaker):
        features, lengths = check_inputs(features, lengths, dim)
        mask = tf.sequence_mask(lengths, tf.shape(features)[1])
        if per_speaker:
            m, s = check_speaker_stats(*speaker, tf.shape(features)[0], dim)
            m, s = m[:, None, :], s[:, None, :]
        else:
            m, s = mean, std
        # padded frames become 0 whatever they held (even NaN): where, not a product
        x = tf.where(mask[..., None], (features - m) / s, 0.0)
        out = model.forward(modality, {"features": x, "mask": mask}, training=False)
        return out, mask

    def serve(features, lengths, *speaker):
        out, mask = _forward(features, lengths, *speaker)
        y = tf.cast(out["prediction"], tf.float32)
        if classification:  # the model's logits -> probabilities, as scoring reports them
            y = tf.cast(model.probabilities(y), tf.float32)
            return {"probabilities": y, "class_id": tf.argmax(y, -1, output_type=tf.int32)}
        if postprocess:
            from emobed_tf.experiments.postprocess import apply_chain_tf

            y = apply_chain_tf(y, mask, postprocess, names)
        y = y * tf.cast(mask, y.dtype)[..., None]
        return {n: y[..., i] for i, n in enumerate(names)}

    def embed(features, lengths, *speaker):
        out, mask = _forward(features, lengths, *speaker)
        e = tf.cast(out["embedding"], tf.float32)
        if not classification:
            e = e * tf.cast(mask, e.dtype)[..., None]
        return {"embedding": e}

    return serve, embed, sig


def export_monomodal(run_dir: str, modality: str, out: str, version: int | None = None) -> str:
    """Writes ``out/<version>/`` and returns that path.

    ``version`` must be a positive integer (default: the next free one); an
    existing version is never overwritten. Raises :class:`ExportError` for a
    run that cannot be exported as asked; nothing is written then.
    """
    import keras

    if version is not None:
        try:
            version = check_version(version)
        except ValueError as err:
            raise ExportError(f"--version: {err}") from None
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExportError(f"{out}: is a file; --out must be a model folder (it receives "
                          "numbered version folders)")
    model, mean, std, post = load_run(run_dir, modality)
    version = version or next_version(out)
    path = os.path.join(out, str(version))
    if os.path.exists(path):
        raise ExportError(f"{path} already exists; versions are never overwritten (omit "
                          "--version to write the next one)")
    per_speaker = RunDir(run_dir).config().data.normalize == "speaker"
    serve, embed, sig = build_serving_functions(model, modality, None if per_speaker else mean,
                                                None if per_speaker else std, post)
    archive = keras.export.ExportArchive()
    # only the served branch: the other modality's encoder is left out
    for layer in (model.encoders[modality], model.shared, model.head):
        archive.track(layer)
    archive.add_endpoint("serving_default", serve, input_signature=sig)
    archive.add_endpoint("embedding", embed, input_signature=sig)
    meta = {"run": os.path.abspath(run_dir), "modality": modality, "task": model.task,
            "outputs": list(model.output_names_), "input_dim": int(model.input_dims[modality]),
            "postprocess": post, "normalize": "speaker" if per_speaker else "corpus"}
    from emobed_tf.serving import recipe

    # the feature recipe: what emobed_tf.predict extracts from a new recording
    meta.update(recipe.from_run(run_dir, modality, meta["normalize"]))
    if per_speaker:  # what training used for items without a speaker or with few frames
        meta.update(fallback_mean=mean.tolist(), fallback_std=std.tolist(),
                    min_speaker_frames=MIN_SPEAKER_FRAMES)
    stale = io.temp_path(path)
    if os.path.isdir(stale):  # left by an export that was killed
        shutil.rmtree(stale)
    # the version folder appears whole or not at all: TF Serving never sees half of it
    with io.atomic_path(path) as tmp:
        archive.write_out(tmp, verbose=False)
        io.write_json(os.path.join(tmp, "assets.extra", "emobed_export.json"), meta)
    return path
