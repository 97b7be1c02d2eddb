"""AVEC 2016 post-processing of continuous predictions (median filter, centring,
scaling, time shift), fitted on the development partition and applied unchanged
to test and at serving time.

Per label dimension, in this order (``fit_chain``):

1. median filter of the raw prediction within each recording, window W
   from :data:`MEDIAN_WINDOWS_S` (0.12 s to 0.44 s in steps of 0.08 s,
   i.e. 3 to 11 frames at 40 ms); kept only if the dev CCC improves;
2. centring: add ``mean(gold_dev) - mean(pred_dev)``; kept only if it helps;
3. scaling: multiply by ``std(gold_dev) / std(pred_dev)``; kept only if it helps;
4. time shift: move predictions forward by ``round(D / 0.04)`` frames within
   each recording (``out[t] = pred[t - s]``, the first frame repeated at the
   start), D from :data:`SHIFTS_S` (0.04 s to 0.60 s); kept only if it helps.

The median filter uses ``scipy.ndimage.median_filter`` with ``mode="nearest"``
(edges repeated); :func:`apply_chain_tf` is the same chain in TensorFlow for
the exported serving graph. CCC is computed pooled over all recordings.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from emobed_tf.model.metrics import ccc

MEDIAN_WINDOWS_S = (0.12, 0.20, 0.28, 0.36, 0.44)
SHIFTS_S = tuple(round(0.04 * i, 2) for i in range(1, 16))


def frames(seconds: float, frame_step_s: float = 0.04) -> int:
    return int(round(seconds / frame_step_s))


def shift_forward(pred: np.ndarray, n: int) -> np.ndarray:
    """``out[t] = pred[t - n]``, the first value repeated for ``t < n``.

    Example:

    >>> frames(0.2)  # 200 ms at 40 ms frames
    5
    """
    if n <= 0:
        return pred
    n = min(n, len(pred))
    return np.concatenate([np.repeat(pred[:1], n, 0), pred[: len(pred) - n]], 0)


def _pooled_ccc(golds, preds):
    return ccc(np.concatenate(golds), np.concatenate(preds))


def apply_dim(preds: list, p: dict) -> list:
    """Applies one dimension's fitted chain to per-recording 1-D predictions."""
    out = [np.asarray(x, np.float64) for x in preds]
    if p.get("median_window"):
        out = [median_filter(x, size=p["median_window"], mode="nearest") for x in out]
    if p.get("bias") is not None:
        out = [x + p["bias"] for x in out]
    if p.get("scale") is not None:
        out = [x * p["scale"] for x in out]
    if p.get("shift"):
        out = [shift_forward(x, p["shift"]) for x in out]
    return out


def fit_dim(golds: list, preds: list, frame_step_s: float = 0.04) -> dict:
    """Fits the chain for one dimension on dev (lists of per-recording 1-D arrays)."""
    golds = [np.asarray(g, np.float64) for g in golds]
    cur = [np.asarray(x, np.float64) for x in preds]
    params = {"median_window": 0, "bias": None, "scale": None, "shift": 0}
    best = _pooled_ccc(golds, cur)
    params["dev_ccc_raw"] = best
    # 1. median filter
    cands = [(frames(w, frame_step_s) | 1) for w in MEDIAN_WINDOWS_S]
    scores = [(_pooled_ccc(golds, apply_dim(cur, {"median_window": w})), w) for w in cands]
    score, w = max(scores)
    if score > best:
        best, params["median_window"] = score, w
        cur = apply_dim(cur, {"median_window": w})
    # 2. centring
    bias = float(np.concatenate(golds).mean() - np.concatenate(cur).mean())
    cand = apply_dim(cur, {"bias": bias})
    score = _pooled_ccc(golds, cand)
    if score > best:
        best, params["bias"], cur = score, bias, cand
    # 3. scaling
    sd = np.concatenate(cur).std()
    if sd > 0:
        scale = float(np.concatenate(golds).std() / sd)
        cand = apply_dim(cur, {"scale": scale})
        score = _pooled_ccc(golds, cand)
        if score > best:
            best, params["scale"], cur = score, scale, cand
    # 4. time shift
    scores = [(_pooled_ccc(golds, apply_dim(cur, {"shift": frames(d, frame_step_s)})),
               frames(d, frame_step_s)) for d in SHIFTS_S]
    score, s = max(scores)
    if score > best:
        best, params["shift"] = score, s
    params["dev_ccc"] = best
    return params


def fit_chain(golds: list, preds: list, names, frame_step_s: float = 0.04) -> dict:
    """Fits every dimension; ``golds``/``preds``: per-recording [T, K] arrays."""
    return {n: fit_dim([g[:, k] for g in golds], [p[:, k] for p in preds], frame_step_s)
            for k, n in enumerate(names)}


def apply_chain(preds: list, chain: dict, names) -> list:
    """Applies a fitted chain to per-recording [T, K] predictions."""
    cols = [apply_dim([p[:, k] for p in preds], chain[n]) for k, n in enumerate(names)]
    return [np.stack([c[i] for c in cols], 1) for i in range(len(preds))]


def apply_chain_tf(y, mask, chain: dict, names):
    """The fitted chain on a padded batch [B, T, K] with its mask [B, T] (TensorFlow)."""
    import tensorflow as tf

    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), 1)
    t = tf.shape(y)[1]
    pos = tf.range(t)[None, :]
    last = tf.maximum(lengths - 1, 0)[:, None]

    def gather_time(x, idx):  # x [B, T], idx [B, T] or [B, T, W]
        return tf.gather(x, tf.clip_by_value(idx, 0, last if idx.shape.rank == 2
                                             else last[..., None]), batch_dims=1)

    cols = []
    for k, name in enumerate(names):
        p = chain[name]
        x = tf.cast(y[..., k], tf.float32)
        w = int(p.get("median_window") or 0)
        if w:
            h = w // 2
            idx = pos[..., None] + tf.range(-h, h + 1)[None, None, :]
            idx = tf.broadcast_to(idx, [tf.shape(x)[0], t, w])
            win = tf.sort(gather_time(x, idx), axis=-1)
            x = win[..., h]
        if p.get("bias") is not None:
            x = x + p["bias"]
        if p.get("scale") is not None:
            x = x * p["scale"]
        s = int(p.get("shift") or 0)
        if s:
            idx = tf.broadcast_to(tf.maximum(pos - s, 0), tf.shape(x))
            x = gather_time(x, idx)
        cols.append(x)
    return tf.stack(cols, -1)
