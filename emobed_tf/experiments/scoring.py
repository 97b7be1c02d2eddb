"""Monomodal prediction over a partition and its scores.

Only the target modality's branch runs here: this is how every score in
``metrics.json`` is measured, whatever the training mode.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np

from emobed_tf.data import pipeline
from emobed_tf.data.source import Source
from emobed_tf.model import metrics
from emobed_tf.records import schema


@dataclasses.dataclass
class Predictions:
    """Predictions of one modality on one split.

    For classification ``gold`` is [N] class ids and ``pred`` [N, K]
    probabilities; for regression both are lists of per-recording [T, K]
    arrays (padding removed). ``embeddings`` are per item ([N, E]) or per
    recording ([T, E]) when requested.
    """

    task: str
    recordings: list
    gold: object
    pred: object
    speakers: list = dataclasses.field(default_factory=list)
    embeddings: object = None

    def pooled(self):
        """(gold, pred) with all frames of the partition concatenated."""
        if self.task == "classification":
            return np.asarray(self.gold), np.asarray(self.pred)
        return np.concatenate(self.gold, 0), np.concatenate(self.pred, 0)


_FORWARD_FNS = weakref.WeakKeyDictionary()


def _forward_fn(model, modality: str):
    """One traced forward function per model and modality, reused by every call.

    A new ``tf.function`` per call would retrace each time (and TensorFlow
    warns about it after five); the data pipeline pads batches to a few
    bucketed lengths, so each function traces a few shapes at most. Under
    the JAX backend the forward pass is a ``jax.jit`` of the stateless call
    (compiled once per bucketed shape). The function returns numpy arrays.
    """
    import keras

    fns = _FORWARD_FNS.setdefault(model, {})
    if modality in fns:
        return fns[modality]
    backend = keras.backend.backend()
    model_ref = weakref.ref(model)  # the cached functions must not keep the model alive
    del model
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def traced(features, mask):
            model = model_ref()
            out = model.forward(modality, {"features": features, "mask": mask}, training=False)
            return model.probabilities(out["prediction"]), out["embedding"]

        def run(features, mask):
            pred, emb = traced(features, mask)
            return pred.numpy(), emb.numpy()
    elif backend == "jax":
        import jax

        def pure(trainable, non_trainable, features, mask):
            model = model_ref()
            mapping = (list(zip(model.trainable_variables, trainable))
                       + list(zip(model.non_trainable_variables, non_trainable)))
            with keras.StatelessScope(state_mapping=mapping):
                out = model.forward(modality, {"features": features, "mask": mask},
                                    training=False)
            return model.probabilities(out["prediction"]), out["embedding"]

        jitted = jax.jit(pure)

        def run(features, mask):
            model = model_ref()
            pred, emb = jitted([v.value for v in model.trainable_variables],
                               [v.value for v in model.non_trainable_variables],
                               np.asarray(features), np.asarray(mask))
            return np.asarray(pred), np.asarray(emb)
    else:  # torch
        import torch

        def run(features, mask):
            model = model_ref()
            with torch.no_grad():
                out = model.forward(modality, {"features": np.asarray(features),
                                               "mask": np.asarray(mask)}, training=False)
            return (keras.ops.convert_to_numpy(model.probabilities(out["prediction"])),
                    keras.ops.convert_to_numpy(out["embedding"]))
    fns[modality] = run
    return run


def predict_split(model, source: Source, modality: str, split: str, batch_size: int = 64,
                  options: pipeline.PipelineOptions = pipeline.PipelineOptions(),
                  with_embeddings: bool = False) -> Predictions:
    """Runs ``model`` on every item of ``split`` (whole sequences, no windows); classification
    predictions are probabilities (the softmax of the model's logits)."""

    # one pass: streaming is cheaper than filling a cache that is read once
    ds = pipeline.make_modality_dataset(source, modality, split, batch_size, training=False,
                                 with_ids=True,
                                 options=dataclasses.replace(options, window=0, cache="none"))

    batches = ((b["features"], b["mask"], b["label"].numpy(),
                [r.decode() for r in b[schema.KEY_RECORDING].numpy()],
                [x.decode() for x in b[schema.KEY_SPEAKER].numpy()]) for b in ds)
    return _collect(model, modality, source.manifest.task, batches, with_embeddings)


def predict_arrays(model, split, modality: str, task: str, batch_size: int = 64,
                   with_embeddings: bool = False) -> Predictions:
    """:func:`predict_split` of a split held in memory
    (:class:`emobed_tf.data.memory.InMemorySplit`, the fast path's dev and test scoring)."""
    def batches():
        for i, (f, m, lab) in enumerate(split.batches(batch_size)):
            sl = slice(i * batch_size, i * batch_size + len(f))
            if f.shape[1] > 1:  # padded to the bucketed length, as the pipeline pads
                t = int(pipeline.bucket_length(f.shape[1]))
                f = np.pad(f, [(0, 0), (0, t - f.shape[1]), (0, 0)])
                m = np.pad(m, [(0, 0), (0, t - m.shape[1])])
            yield f, m, lab, split.recordings[sl], split.speakers[sl]

    return _collect(model, modality, task, batches(), with_embeddings)


def _collect(model, modality: str, task: str, batches, with_embeddings: bool) -> Predictions:
    """Runs the model's traced forward pass over ``(features, mask, label, recordings,
    speakers)`` batches; per item the gold label, the prediction (cut to the item's frames
    for regression) and the embedding when asked."""
    run = _forward_fn(model, modality)
    recs, spks, golds, preds, embs = [], [], [], [], []
    for features, mask, label, batch_recs, batch_spks in batches:
        pred, emb = run(features, mask)
        mask = np.asarray(mask)
        recs += batch_recs
        spks += batch_spks
        for i in range(len(batch_recs)):
            if task == "classification":
                golds.append(int(label[i]))
                preds.append(pred[i])
                if with_embeddings:
                    embs.append(emb[i])
            else:
                n = int(mask[i].sum())
                golds.append(label[i, :n])
                preds.append(pred[i, :n])
                if with_embeddings:
                    embs.append(emb[i, :n])
    if task == "classification":
        golds = np.asarray(golds, np.int64)
        preds = np.asarray(preds, np.float32)
        embs = np.asarray(embs) if with_embeddings else None
    return Predictions(task, recs, golds, preds, spks, embs if with_embeddings else None)


def prediction_loss(p: Predictions, regression_loss: str = "ccc") -> float:
    """The target's loss over a whole partition, from its predictions (the multi-worker
    loop's ``val_target_loss``): classification, the mean cross-entropy of the gold class
    (``-log p``, as ``from_logits`` on the logits gives); regression, ``1 - CCC`` averaged
    over the dimensions (``regression_loss="ccc"``, the paper's) or the mean squared error.

    >>> p = Predictions("classification", ["a", "b"], np.array([0, 1]),
    ...                 np.array([[0.5, 0.5], [0.2, 0.8]]), ["s", "s"])
    >>> round(prediction_loss(p), 6), round(float(-(np.log(0.5) + np.log(0.8)) / 2), 6)
    (0.458145, 0.458145)
    """
    gold, pred = p.pooled()
    if p.task == "classification":
        picked = np.asarray(pred, np.float64)[np.arange(len(gold)), gold]
        return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
    if regression_loss == "mse":
        return float(np.mean((np.asarray(pred, np.float64) - gold) ** 2))
    return float(np.mean([1.0 - metrics.ccc(gold[:, k], pred[:, k])
                          for k in range(gold.shape[1])]))


def score_predictions(p: Predictions, names, detail: bool = False) -> dict:
    """The one scorer: scores pooled over the partition (see ``emobed_tf.model.metrics``).

    Classification: macro-F1, micro-F1, UAR, accuracy (with ``detail``: F1
    per class and the confusion matrix). Regression: per dimension the CCC
    (``ccc_<dim>``, and ``ccc_avec2016_<dim>``, the AVEC 2016 script's
    variant), PCC and RMSE, and ``ccc_mean``.
    """
    gold, pred = p.pooled()
    if p.task == "classification":
        cm = metrics.confusion_matrix(gold, pred.argmax(-1), len(names))
        out = metrics.scores_from_confusion(cm)
        if detail:
            out.update(f1_per_class=metrics.per_class_f1(cm, names), confusion=cm.tolist())
        return out
    out = metrics.regression_scores(gold, pred, names)
    out.update({f"ccc_avec2016_{n}": metrics.ccc(gold[:, k], pred[:, k], "avec2016")
                for k, n in enumerate(names)})
    return out
