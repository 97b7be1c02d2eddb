"""Losses of EmoBed (Eqs. 3-8) as pure functions, with thin Keras wrappers.

The pure functions take tensors and return a scalar tensor; they use
``keras.ops`` only, so they run on any Keras backend and inside the
model's ``train_step``.

Crossmodal batch-hard triplet loss (Eqs. 5-7), as implemented here:

* the audio and video embeddings of a batch are concatenated into one
  batch ``{e_A; e_V}`` and all pairwise Euclidean distances are computed;
* for every anchor, the hardest positive is the *farthest* other embedding
  with the same label (either modality) and the hardest negative the
  *nearest* embedding with a different label;
* ``form="paper"`` uses ``d+ - d-`` as written in Eq. (6) (no margin, no
  hinge; bounded below only because GRU outputs are bounded),
  ``form="hinge"`` uses ``max(d+ - d- + margin, 0)`` and ``form="soft"``
  uses ``log1p(exp(d+ - d-))``;
* anchors with no positive or no negative in the batch are **dropped**
  (they contribute nothing and do not count in the mean); when no anchor
  is usable the loss is 0. The mixed-batch sampler makes this rare;
* ``space="unit"`` measures the distances between embeddings scaled to unit
  L2 norm (in [0, 2], so every form is bounded whatever the encoder outputs);
  ``space="raw"`` between the embeddings as they are (Eq. 6 as written, the
  GRU form's); which one a model uses is decided by
  :func:`emobed_tf.configs.triplet_space_for`;
* ``reduction="mean"`` (default) averages over usable anchors so that β
  does not depend on the batch size; ``reduction="sum"`` is Eq. (6)
  literally;
* the square root is taken with zero distances masked, so no NaN/inf
  gradient appears for identical embeddings;
* mining costs one matrix product and a few passes over the N x N scores,
  without gradient; only the 2N chosen distances are measured with one
  (see ``_mine_hardest``).
"""

from __future__ import annotations

import keras
from keras import ops

from emobed_tf.configs import CROSSMODAL_LOSSES, TRIPLET_FORMS  # noqa: E402,F401
from emobed_tf.configs import TRIPLET_REDUCTIONS as REDUCTIONS  # noqa: E402
from emobed_tf.configs import TRIPLET_SPACES  # noqa: E402


def pairwise_distances(embeddings, squared: bool = False):
    """Euclidean distance matrix [N, N] of ``embeddings`` [N, E].

    The diagonal is exactly zero. The square root is evaluated as
    ``sqrt(d2 + eps) * (1 - is_zero)`` on zero entries so that gradients
    stay finite.

    Example:

    >>> import numpy as np
    >>> np.asarray(pairwise_distances(np.array([[0.0, 0.0], [3.0, 4.0]]))).tolist()
    [[0.0, 5.0], [5.0, 0.0]]
    """
    e = ops.convert_to_tensor(embeddings)
    dot = ops.matmul(e, ops.transpose(e))
    sq = ops.diagonal(dot)
    d2 = ops.expand_dims(sq, 0) - 2.0 * dot + ops.expand_dims(sq, 1)
    d2 = ops.maximum(d2, 0.0)
    n = ops.shape(e)[0]
    d2 = d2 * (1.0 - ops.eye(n, dtype=d2.dtype))
    if squared:
        return d2
    zero = ops.cast(ops.equal(d2, 0.0), d2.dtype)
    d = ops.sqrt(d2 + zero * 1e-16)
    return d * (1.0 - zero)


def _pair_distance(emb, idx, squared):
    """``||emb[i] - emb[idx[i]]||`` for every row i, with a finite gradient at 0."""
    d2 = ops.sum(ops.square(emb - ops.take(emb, idx, axis=0)), axis=1)
    if squared:
        return d2
    zero = ops.cast(ops.equal(d2, 0.0), d2.dtype)
    return ops.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


def _mine_hardest(labels, emb, valid):
    """``(pos_idx, neg_idx)``: each anchor's farthest positive and nearest negative.

    Mining needs no gradient and only the order of the distances in each
    row: ``||e_i - e_j||^2 = |e_i|^2 + |e_j|^2 - 2 e_i.e_j`` and ``|e_i|^2`` is
    constant along row i, so one matrix product of ``[e, 1]`` and
    ``[-2 e, |e|^2]`` gives a score with the same order. The anchor itself
    is among its positives: its score is the row's least possible (distance
    0), so it is chosen only when no other positive is farther than 0, and
    its distance is then the 0 of the other's. Anchors without another
    positive or without a negative are dropped by :func:`_usable_anchors`.
    """
    e = ops.stop_gradient(emb)
    sq = ops.sum(ops.square(e), axis=1, keepdims=True)
    score = ops.matmul(ops.concatenate([e, ops.ones_like(sq)], axis=1),
                       ops.transpose(ops.concatenate([-2.0 * e, sq], axis=1)))
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    pos, neg = same, ops.logical_not(same)
    if valid is not None:
        row = ops.expand_dims(valid, 0)
        pos, neg = ops.logical_and(pos, row), ops.logical_and(neg, row)
    inf = float("inf")

    def first_max(x):  # top_k: argmax (the first of ties) without ops.argmax's extra passes
        return ops.top_k(x, 1)[1][:, 0]

    return (first_max(ops.where(pos, score, -inf)),
            first_max(ops.where(neg, ops.negative(score), -inf)))


def _usable_anchors(labels, valid):
    """1.0 for a valid anchor with another valid item of its label and a valid item of
    another label, else 0.0 (counted on the sorted labels, no pairwise matrix)."""
    labels = ops.cast(labels, "int32")
    if valid is None:
        kept = labels
        valid_f = ops.ones(ops.shape(labels), "float32")
    else:
        kept = ops.where(valid, labels, -1)  # labels are >= 0: -1 is no class
        valid_f = ops.cast(valid, "float32")
    ordered = ops.sort(kept)
    own = ops.cast(ops.searchsorted(ordered, labels, side="right")
                   - ops.searchsorted(ordered, labels, side="left"), "float32")
    total = ops.sum(valid_f)
    return valid_f * ops.cast(own >= 2, "float32") * ops.cast(total - own > 0, "float32")


def batch_hard_triplet_loss(labels, embeddings, valid=None, form: str = "paper",
                            margin: float = 0.0, reduction: str = "mean",
                            squared: bool = False, space: str = "raw"):
    """Batch-hard triplet loss over one (crossmodal) batch of embeddings.

    Args:
        labels: int tensor [N]: the class (or binned label) of each embedding.
        embeddings: float tensor [N, E], e.g. ``concat([e_A, e_V])``.
        valid: optional bool/float tensor [N]; invalid rows (padding) are
            neither anchors, positives nor negatives.
        form: ``"paper"``, ``"hinge"`` or ``"soft"`` (see module docstring).
        margin: margin of the hinge form (added inside ``max(., 0)``); also
            added to ``d+ - d-`` for the paper form.
        reduction: ``"mean"`` over usable anchors or ``"sum"``.
        squared: use squared Euclidean distances.
        space: ``"raw"`` (the embeddings as given) or ``"unit"`` (each row scaled
            to unit L2 norm first; zero rows stay zero).

    Returns:
        Scalar loss tensor.

    Example:

    >>> import numpy as np
    >>> # anchor 0: farthest positive 1, nearest negative 3 -> -2; anchor 1: 1 - 2 = -1;
    >>> # anchor 2 has no positive and is dropped: mean -1.5
    >>> float(batch_hard_triplet_loss(np.array([0, 0, 1]), np.array([[0.0], [1.0], [3.0]])))
    -1.5
    """
    if form not in TRIPLET_FORMS:
        raise ValueError(f"form must be one of {TRIPLET_FORMS}, got {form!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if space not in TRIPLET_SPACES[1:]:
        raise ValueError(f"space must be one of {TRIPLET_SPACES[1:]}, got {space!r}")
    emb = ops.cast(embeddings, "float32")
    if space == "unit":
        emb = _unit(emb)
    labels = ops.reshape(labels, (-1,))
    v = None if valid is None else ops.cast(ops.reshape(valid, (-1,)), "bool")
    pos_idx, neg_idx = _mine_hardest(labels, emb, v)
    hardest_pos = _pair_distance(emb, pos_idx, squared)
    hardest_neg = _pair_distance(emb, neg_idx, squared)
    usable = _usable_anchors(labels, v)
    diff = hardest_pos - hardest_neg
    if form == "paper":
        per_anchor = diff + margin
    elif form == "hinge":
        per_anchor = ops.maximum(diff + margin, 0.0)
    else:
        per_anchor = ops.softplus(diff)
    per_anchor = per_anchor * usable
    total = ops.sum(per_anchor)
    if reduction == "sum":
        return total
    return total / ops.maximum(ops.sum(usable), 1.0)


def crossmodal_prototype_loss(labels_a, emb_a, labels_b, emb_b, num_classes: int,
                              valid_a=None, valid_b=None, temperature: float = 0.1):
    """Crossmodal prototype loss: each modality classified by the other's class centroids.

    Beyond the paper (this package's ``--crossmodal-loss prototype``). In
    one mixed batch, the class centroids of modality B's embeddings
    (L2-normalised, then averaged and normalised again) act as the weights
    of a cosine classifier for modality A's embeddings, and vice versa::

        L = 1/2 [ CE(y_a, softmax(cos(e_a, c_b) / T)) + CE(y_b, softmax(cos(e_b, c_a) / T)) ]

    Unlike the batch-hard triplet, every embedding is pulled towards the
    other modality's whole class (not one hardest example) and pushed from
    every other class centroid at once, which is less noisy on small,
    imbalanced batches. Classes absent from the other modality's half of the
    batch are left out of the softmax; anchors whose class is absent there
    are dropped.

    Args:
        labels_a, labels_b: int [N_a], [N_b] class ids (or binned labels).
        emb_a, emb_b: float [N_a, E], [N_b, E] embeddings.
        num_classes: number of class ids.
        valid_a, valid_b: optional [N] masks (padding frames are ignored).
        temperature: softmax temperature T of the cosine logits.

    Returns:
        Scalar loss tensor (0 when no anchor is usable).

    Example:
    >>> import numpy as np
    >>> e = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    >>> y = np.array([0, 1])
    >>> round(float(crossmodal_prototype_loss(y, e, y, e, 2, temperature=1.0)), 4)
    0.3133
    """

    def one_way(y1, e1, v1, y2, e2, v2):
        onehot = ops.one_hot(ops.cast(y2, "int32"), num_classes) * ops.expand_dims(v2, 1)
        count = ops.sum(onehot, axis=0)
        centroids = ops.matmul(ops.transpose(onehot), e2) / ops.expand_dims(
            ops.maximum(count, 1.0), 1)
        centroids = _unit(centroids)
        logits = ops.matmul(e1, ops.transpose(centroids)) / temperature
        present = count > 0
        logits = ops.where(ops.expand_dims(present, 0), logits, -1e9)
        y1 = ops.cast(y1, "int32")
        usable = v1 * ops.cast(ops.take(present, y1), "float32")
        ce = keras.losses.sparse_categorical_crossentropy(y1, logits, from_logits=True)
        return ops.sum(ce * usable) / ops.maximum(ops.sum(usable), 1.0)

    def prepared(labels, emb, valid):
        labels = ops.reshape(labels, (-1,))
        emb = _unit(ops.cast(emb, "float32"))
        n = ops.shape(emb)[0]
        v = ops.ones((n,), "float32") if valid is None else ops.cast(
            ops.reshape(valid, (-1,)), "float32")
        return labels, emb, v

    a = prepared(labels_a, emb_a, valid_a)
    b = prepared(labels_b, emb_b, valid_b)
    return 0.5 * (one_way(*a, *b) + one_way(*b, *a))


def _unit(x):
    """Rows scaled to unit L2 norm (zero rows stay zero, with finite gradients)."""
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))




def bin_labels(values, thresholds=(0.0,)):
    """Bins continuous labels [..., K] into one class id per row.

    Each dimension k is cut at ``thresholds`` (shared by all dimensions)
    into ``len(thresholds) + 1`` bins; the per-dimension bins are combined
    into one id ``sum_k bin_k * B**k``. With the default single threshold
    at 0 and (arousal, valence) this gives the four quadrants
    low/high arousal x low/high valence.

    Example:

    >>> import numpy as np
    >>> np.asarray(bin_labels(np.array([[-0.5, 0.2], [0.3, -0.1], [0.4, 0.6]]))).tolist()
    [2, 1, 3]
    """
    v = ops.convert_to_tensor(values)
    nb = len(thresholds) + 1
    bins = ops.zeros(ops.shape(v), "int32")
    for t in thresholds:
        bins = bins + ops.cast(v > t, "int32")
    k = ops.shape(v)[-1]
    weights = ops.cast(ops.power(nb, ops.arange(k)), "int32")
    return ops.sum(bins * weights, axis=-1)


def concordance_cc(y_true, y_pred, mask=None):
    """Concordance correlation coefficient (Eq. 9) with biased (1/N) moments.

    ``y_true``/``y_pred``: [N, K] (rows pooled) or [N]; ``mask``: [N]
    weights rows, padded frames get weight 0. Returns [K] (or a scalar).
    """
    yt = ops.cast(y_true, "float32")
    yp = ops.cast(y_pred, "float32")
    w = ops.ones_like(yt) if mask is None else ops.cast(mask, "float32")
    if len(yt.shape) == 2 and mask is not None:
        w = ops.expand_dims(w, -1) * ops.ones_like(yt)
    n = ops.maximum(ops.sum(w, axis=0), 1.0)
    mt = ops.sum(w * yt, axis=0) / n
    mp = ops.sum(w * yp, axis=0) / n
    dt = yt - mt
    dp = yp - mp
    vt = ops.sum(w * dt * dt, axis=0) / n
    vp = ops.sum(w * dp * dp, axis=0) / n
    cov = ops.sum(w * dt * dp, axis=0) / n
    return 2.0 * cov / (vt + vp + ops.square(mt - mp) + 1e-8)


def ccc_loss(y_true, y_pred, mask=None):
    """``1 - CCC`` averaged over label dimensions; frames pooled over the batch.

    ``y_true``/``y_pred``: [B, T, K] (or [N, K]); ``mask``: [B, T] (or [N]).

    Example:

    >>> import numpy as np
    >>> y = np.array([[1.0], [2.0], [3.0]], "float32")
    >>> round(float(ccc_loss(y, y + 1)), 4)  # 1 - 4/7
    0.4286
    """
    k = ops.shape(y_true)[-1]
    yt = ops.reshape(y_true, (-1, k))
    yp = ops.reshape(y_pred, (-1, k))
    m = None if mask is None else ops.reshape(mask, (-1,))
    return 1.0 - ops.mean(concordance_cc(yt, yp, m))


def masked_mse(y_true, y_pred, mask=None):
    """Mean squared error over valid frames and label dimensions."""
    err = ops.square(ops.cast(y_true, "float32") - ops.cast(y_pred, "float32"))
    if mask is None:
        return ops.mean(err)
    w = ops.expand_dims(ops.cast(mask, "float32"), -1) * ops.ones_like(err)
    return ops.sum(err * w) / ops.maximum(ops.sum(w), 1.0)


def classification_loss(labels, logits, from_logits: bool = True):
    """Sparse categorical cross-entropy averaged over the batch, of logits (or, with
    ``from_logits=False``, probabilities)."""
    return ops.mean(keras.losses.sparse_categorical_crossentropy(
        ops.cast(labels, "int32"), ops.cast(logits, "float32"), from_logits=from_logits))


REGRESSION_LOSSES = {"ccc": ccc_loss, "mse": masked_mse}
