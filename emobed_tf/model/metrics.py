"""Evaluation metrics: numpy functions (the reference) and streaming Keras metrics.

Regression (RECOLA, AVEC 2016): CCC in two variants, PCC, RMSE, pooled over
all frames of a partition. Classification (OMG-Emotion): macro-F1 (the
headline score of this package), micro-F1 (what the OMG challenge script
computes; equal to accuracy for single-label data), UAR and accuracy.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

CCC_VARIANTS = ("standard", "avec2016")


def ccc(gold, pred, variant: str = "standard") -> float:
    """Concordance correlation coefficient of two 1-D series.

    ``standard``: ``2 cov / (var_g + var_p + (mean_g - mean_p)^2)`` with
    biased 1/N moments. ``avec2016``: the AVEC 2016 MATLAB baseline
    (``CCC_calc.m``): variances with 1/(N-1), covariance with 1/N.

    Example:

    >>> round(ccc([1, 2, 3], [2, 3, 4]), 4)  # 2 cov / (var + var + mean gap^2) = (4/3) / (7/3)
    0.5714
    """
    g = np.asarray(gold, np.float64).ravel()
    p = np.asarray(pred, np.float64).ravel()
    if g.shape != p.shape or g.size < 2:
        raise ValueError(f"ccc needs two series of equal length >= 2, got {g.shape} and {p.shape}")
    if variant not in CCC_VARIANTS:
        raise ValueError(f"variant must be one of {CCC_VARIANTS}, got {variant!r}")
    mg, mp = g.mean(), p.mean()
    cov = np.mean((g - mg) * (p - mp))
    ddof = 1 if variant == "avec2016" else 0
    vg, vp = g.var(ddof=ddof), p.var(ddof=ddof)
    denom = vg + vp + (mg - mp) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def pcc(gold, pred) -> float:
    """Pearson correlation coefficient (0 for a constant series).

    Example:

    >>> pcc([1, 2, 3], [2, 4, 6])
    1.0
    """
    g = np.asarray(gold, np.float64).ravel()
    p = np.asarray(pred, np.float64).ravel()
    sg, sp = g.std(), p.std()
    if sg == 0 or sp == 0:
        return 0.0
    return float(np.mean((g - g.mean()) * (p - p.mean())) / (sg * sp))


def rmse(gold, pred) -> float:
    g = np.asarray(gold, np.float64).ravel()
    p = np.asarray(pred, np.float64).ravel()
    return float(np.sqrt(np.mean((g - p) ** 2)))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts [num_classes, num_classes], rows = gold, columns = prediction.

    Example:

    >>> round(rmse([0, 0], [3, 4]), 4)  # sqrt((9 + 16) / 2)
    3.5355
    """
    t = np.asarray(y_true, np.int64).ravel()
    p = np.asarray(y_pred, np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in length")
    for name, arr in (("gold", t), ("predicted", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} labels outside 0..{num_classes - 1}")
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def scores_from_confusion(cm: np.ndarray) -> dict:
    """Macro-F1, micro-F1, UAR and accuracy from a confusion matrix.

    Classes absent from both gold and prediction are left out of the macro
    averages (scikit-learn's ``labels=`` behaviour when those labels are
    not passed); a class with gold examples but no correct prediction
    counts as F1 0.

    Example:

    >>> s = scores_from_confusion([[1, 0], [1, 1]])
    >>> round(s["f1_macro"], 4), s["uar"], round(s["accuracy"], 4)  # F1 2/3 each; recall 1, .5
    (0.6667, 0.75, 0.6667)
    """
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    support = cm.sum(1)
    predicted = cm.sum(0)
    present = (support + predicted) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = support + predicted
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), 0.0)
    total = cm.sum()
    acc = float(tp.sum() / total) if total else 0.0
    return {
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "f1_micro": acc,  # single-label: micro precision = micro recall = accuracy
        "uar": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
        "accuracy": acc,
    }


def classification_scores(y_true, y_pred, num_classes: int) -> dict:
    """All classification scores of this package for integer labels."""
    return scores_from_confusion(confusion_matrix(y_true, y_pred, num_classes))


CLASSIFICATION_SCORES = ("f1_macro", "f1_micro", "uar", "accuracy")


@dataclasses.dataclass(frozen=True)
class TaskScore:
    """What a task is selected and summarised on: the one table of dev and headline scores.

    ``score_name``: the model's streaming dev metric, logged as ``val_<score_name>``
    (the monitor of early stopping, checkpoints and tuning); ``dev_key``: the key of
    :func:`~emobed_tf.experiments.scoring.score_predictions`' scores that measures the
    same quantity (the multi-worker loop's dev score, the summary's first score);
    ``headline``: the scores a summary shows (``None``: the CCC of each dimension).
    """

    score_name: str
    dev_key: str
    headline: tuple | None

    @property
    def monitor(self) -> str:
        return f"val_{self.score_name}"

    def headline_keys(self, names) -> list:
        return list(self.headline) if self.headline is not None else [f"ccc_{n}" for n in names]


# regression: the streaming CCC is the mean over the dimensions, as ccc_mean
SCORES = {"classification": TaskScore("f1_macro", "f1_macro", CLASSIFICATION_SCORES),
          "regression": TaskScore("ccc", "ccc_mean", None)}


def task_score(task: str) -> TaskScore:
    if task not in SCORES:
        raise ValueError(f"task must be one of {sorted(SCORES)}, got {task!r}")
    return SCORES[task]


def dev_monitor(task: str) -> str:
    """The logged dev score early stopping, checkpoints and tuning select on.

    >>> dev_monitor("classification"), dev_monitor("regression")
    ('val_f1_macro', 'val_ccc')
    """
    return task_score(task).monitor


def selection(task: str, select_on: str) -> tuple:
    """``(logged key, higher_is_better)`` that early stopping and the kept epoch select on:
    the dev score (``select_on="score"``, :func:`dev_monitor`, maximised), the target's
    dev loss (``"loss"``, ``val_target_loss``, minimised; the cross-entropy of the logits,
    or the regression loss, without the L2 term), or nothing (``"last"``: key ``None``,
    every epoch is kept in turn and none stops early).

    >>> selection("classification", "score"), selection("classification", "loss")
    (('val_f1_macro', True), ('val_target_loss', False))
    >>> selection("regression", "last")
    (None, True)
    """
    if select_on == "score":
        return dev_monitor(task), True
    if select_on == "loss":
        return "val_target_loss", False
    if select_on == "last":
        return None, True
    raise ValueError(f"select_on must be 'score', 'loss' or 'last', got {select_on!r}")


def dev_key(task: str) -> str:
    """The score (of the one scorer's dict) equal to the monitored dev score.

    >>> dev_key("classification"), dev_key("regression")
    ('f1_macro', 'ccc_mean')
    """
    return task_score(task).dev_key


def headline_keys(task: str, names) -> list:
    """The scores a summary shows: all four for classification, the CCC per dimension.

    >>> headline_keys("regression", ["arousal", "valence"])
    ['ccc_arousal', 'ccc_valence']
    """
    return task_score(task).headline_keys(names)


def per_class_f1(cm: np.ndarray, names) -> dict:
    """``{class name: F1}`` from a confusion matrix (None for a class never seen nor predicted).

    >>> per_class_f1(np.array([[2, 0], [1, 1]]), ["a", "b"])
    {'a': 0.8, 'b': 0.6666666666666666}
    """
    cm = np.asarray(cm)
    tp, sup, pr = np.diag(cm), cm.sum(1), cm.sum(0)
    return {n: float(2 * tp[i] / (sup[i] + pr[i])) if sup[i] + pr[i] else None
            for i, n in enumerate(names)}


def regression_scores(gold, pred, dim_names, variant: str = "standard") -> dict:
    """Per-dimension ``ccc_<dim>``, ``pcc_<dim>``, ``rmse_<dim>`` and ``ccc_mean``.

    ``gold``/``pred``: [N, K] with all frames of a partition pooled.

    Example:

    >>> import numpy as np
    >>> s = regression_scores(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [3.0], [4.0]]),
    ...                       ["arousal"])
    >>> round(s["ccc_arousal"], 4), s["pcc_arousal"], s["rmse_arousal"]
    (0.5714, 1.0, 1.0)
    """
    g = np.asarray(gold, np.float64).reshape(len(gold), -1)
    p = np.asarray(pred, np.float64).reshape(len(pred), -1)
    out = {}
    for k, name in enumerate(dim_names):
        out[f"ccc_{name}"] = ccc(g[:, k], p[:, k], variant)
        out[f"pcc_{name}"] = pcc(g[:, k], p[:, k])
        out[f"rmse_{name}"] = rmse(g[:, k], p[:, k])
    out["ccc_mean"] = float(np.mean([out[f"ccc_{n}"] for n in dim_names]))
    return out


# --------------------------------------------------------------------------
# streaming Keras metrics (used for the dev score during training)


@keras.saving.register_keras_serializable(package="emobed_tf")
class ConcordanceCC(keras.metrics.Metric):
    """Streaming CCC pooled over every frame seen, averaged over dimensions.

    Each batch's count, means, centred sums of squares and co-moment are
    merged into the running ones with Chan et al.'s parallel update
    (Welford's algorithm for batches), so the result equals :func:`ccc` on
    the concatenation of all batches (standard variant) and stays accurate in
    float32, whatever the backend: raw sums of squares over ~70k frames would
    cancel catastrophically. ``sample_weight`` is the frame mask.

    Args:
        num_dims: number of label dimensions K.
        dim_index: report only this dimension (default: mean over all).

    Example:

    >>> import numpy as np
    >>> m = ConcordanceCC()
    >>> m.update_state(np.array([[1.0], [2.0]]), np.array([[2.0], [3.0]]))
    >>> m.update_state(np.array([[3.0]]), np.array([[4.0]]))
    >>> round(float(m.result()), 4)  # ccc([1, 2, 3], [2, 3, 4])
    0.5714
    """

    def __init__(self, num_dims: int = 1, dim_index: int | None = None, name="ccc", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_dims = num_dims
        self.dim_index = dim_index
        # rows: count, mean gold, mean pred, M2 gold, M2 pred, co-moment
        self.moments = self.add_variable(shape=(6, num_dims), initializer="zeros",
                                         name="moments", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        k = self.num_dims
        yt = ops.cast(ops.reshape(y_true, (-1, k)), "float32")
        yp = ops.cast(ops.reshape(y_pred, (-1, k)), "float32")
        if sample_weight is None:
            w = ops.ones_like(yt)
        else:
            w = ops.expand_dims(ops.cast(ops.reshape(sample_weight, (-1,)), "float32"), -1)
            w = w * ops.ones_like(yt)
        nb = ops.sum(w, 0)
        safe_nb = ops.maximum(nb, 1.0)
        mtb = ops.sum(w * yt, 0) / safe_nb
        mpb = ops.sum(w * yp, 0) / safe_nb
        dt, dp = yt - mtb, yp - mpb
        m2tb, m2pb, cb = ops.sum(w * dt * dt, 0), ops.sum(w * dp * dp, 0), ops.sum(w * dt * dp, 0)
        state = ops.convert_to_tensor(self.moments)
        na, mta, mpa, m2ta, m2pa, ca = [state[i] for i in range(6)]
        n = na + nb
        safe_n = ops.maximum(n, 1.0)
        delta_t, delta_p = mtb - mta, mpb - mpa
        frac = nb / safe_n
        cross = na * nb / safe_n
        self.moments.assign(ops.stack([
            n, mta + delta_t * frac, mpa + delta_p * frac,
            m2ta + m2tb + delta_t * delta_t * cross, m2pa + m2pb + delta_p * delta_p * cross,
            ca + cb + delta_t * delta_p * cross]))

    def result(self):
        state = ops.convert_to_tensor(self.moments)
        n, mt, mp, m2t, m2p, c = [state[i] for i in range(6)]
        n = ops.maximum(n, 1.0)
        ccc_k = 2 * (c / n) / ops.maximum(m2t / n + m2p / n + (mt - mp) ** 2, 1e-12)
        return ccc_k[self.dim_index] if self.dim_index is not None else ops.mean(ccc_k)

    def reset_state(self):
        self.moments.assign(ops.zeros(self.moments.shape, self.moments.dtype))

    def get_config(self):
        return {**super().get_config(), "num_dims": self.num_dims, "dim_index": self.dim_index}


@keras.saving.register_keras_serializable(package="emobed_tf")
class ConfusionScore(keras.metrics.Metric):
    """Streaming classification score from an accumulated confusion matrix.

    Args:
        num_classes: K.
        score: ``"f1_macro"``, ``"f1_micro"``, ``"uar"`` or ``"accuracy"``,
            with the same definitions as :func:`scores_from_confusion`.
    """

    SCORES = CLASSIFICATION_SCORES

    def __init__(self, num_classes: int = 7, score: str = "f1_macro", name=None, **kwargs):
        if score not in self.SCORES:
            raise ValueError(f"score must be one of {self.SCORES}, got {score!r}")
        super().__init__(name=name or score, **kwargs)
        self.num_classes = num_classes
        self.score = score
        self.cm = self.add_variable(shape=(num_classes, num_classes), initializer="zeros",
                                    name="confusion", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        p = ops.argmax(ops.reshape(y_pred, (-1, self.num_classes)), axis=-1)
        oh_t = ops.one_hot(t, self.num_classes)
        oh_p = ops.one_hot(p, self.num_classes)
        self.cm.assign_add(ops.matmul(ops.transpose(oh_t), oh_p))

    def result(self):
        cm = ops.convert_to_tensor(self.cm)
        tp = ops.diagonal(cm)
        support = ops.sum(cm, 1)
        predicted = ops.sum(cm, 0)
        total = ops.maximum(ops.sum(cm), 1.0)
        if self.score in ("accuracy", "f1_micro"):
            return ops.sum(tp) / total
        if self.score == "uar":
            has = ops.cast(support > 0, "float32")
            rec = tp / ops.maximum(support, 1.0)
            return ops.sum(rec * has) / ops.maximum(ops.sum(has), 1.0)
        present = ops.cast(support + predicted > 0, "float32")
        f1 = 2 * tp / ops.maximum(support + predicted, 1.0)
        return ops.sum(f1 * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        self.cm.assign(ops.zeros(self.cm.shape, self.cm.dtype))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "score": self.score}
