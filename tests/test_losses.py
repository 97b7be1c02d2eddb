import numpy as np
import pytest
import tensorflow as tf

from emobed_tf.model.losses import (batch_hard_triplet_loss, bin_labels, ccc_loss,
                                    classification_loss, crossmodal_prototype_loss, masked_mse,
                                    pairwise_distances)


def reference_triplet(labels, emb, valid=None, form="paper", margin=0.0, reduction="mean"):
    """Brute-force numpy batch-hard triplet loss (independent implementation)."""
    n = len(labels)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    d = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1))
    per = []
    for i in range(n):
        if not valid[i]:
            continue
        pos = [d[i, j] for j in range(n) if j != i and valid[j] and labels[j] == labels[i]]
        neg = [d[i, j] for j in range(n) if valid[j] and labels[j] != labels[i]]
        if not pos or not neg:
            continue  # anchors without a positive or a negative are dropped
        diff = max(pos) - min(neg)
        per.append({"paper": diff + margin, "hinge": max(diff + margin, 0.0),
                    "soft": np.log1p(np.exp(diff))}[form])
    if not per:
        return 0.0
    return float(np.sum(per) if reduction == "sum" else np.mean(per))


def test_triplet_hand_derived_example():
    # 1-D embeddings: a0=0, a1=1 (label 0), b=3 (label 1)
    emb = np.array([[0.0], [1.0], [3.0]], np.float32)
    lab = np.array([0, 0, 1])
    # anchor 0: d+=1, d-=3 -> -2; anchor 1: d+=1, d-=2 -> -1; anchor 2: no positive, dropped
    assert float(batch_hard_triplet_loss(lab, emb, reduction="sum")) == pytest.approx(-3.0)
    assert float(batch_hard_triplet_loss(lab, emb)) == pytest.approx(-1.5)
    assert float(batch_hard_triplet_loss(lab, emb, form="hinge", margin=1.5)) == \
        pytest.approx((0 + 0.5) / 2)
    assert float(batch_hard_triplet_loss(lab, emb, form="soft")) == \
        pytest.approx((np.log1p(np.exp(-2)) + np.log1p(np.exp(-1))) / 2, rel=1e-5)


@pytest.mark.parametrize("form", ["paper", "hinge", "soft"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_triplet_matches_bruteforce(form, reduction):
    rng = np.random.default_rng(0)
    for trial in range(5):
        n = int(rng.integers(4, 40))
        emb = rng.normal(size=(n, 6)).astype(np.float32)
        lab = rng.integers(0, 4, n)
        valid = rng.random(n) > 0.2
        got = float(batch_hard_triplet_loss(lab, emb, valid, form=form, margin=0.3,
                                              reduction=reduction))
        want = reference_triplet(lab, emb, valid, form, 0.3, reduction)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("form", ["paper", "hinge", "soft"])
def test_triplet_matches_bruteforce_with_duplicates_and_no_mask(form):
    # dead-ReLU embeddings: several identical all-zero rows (ties in the mining), no mask
    rng = np.random.default_rng(3)
    for trial in range(5):
        n = int(rng.integers(6, 60))
        emb = rng.normal(size=(n, 5)).astype(np.float32)
        emb[rng.integers(0, n, n // 3)] = 0.0
        lab = rng.integers(0, 3, n)
        got = float(batch_hard_triplet_loss(lab, emb, None, form=form, margin=0.3))
        assert got == pytest.approx(reference_triplet(lab, emb, None, form, 0.3),
                                    rel=1e-4, abs=1e-4)


def test_crossmodal_concatenation_uses_inter_and_intra_modal_pairs():
    # audio embeddings of class 0 far from each other, close to a video one:
    e_a = np.array([[0.0, 0.0], [4.0, 0.0]], np.float32)
    e_v = np.array([[2.0, 0.0], [2.0, 1.0]], np.float32)
    lab = np.array([0, 0, 0, 1])
    emb = np.concatenate([e_a, e_v])
    got = float(batch_hard_triplet_loss(lab, emb, reduction="sum"))
    assert got == pytest.approx(reference_triplet(lab, emb, reduction="sum"), rel=1e-5)


def test_no_usable_anchor_gives_zero():
    emb = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    assert float(batch_hard_triplet_loss(np.zeros(5, int), emb)) == 0.0
    assert float(batch_hard_triplet_loss(np.arange(5), emb)) == 0.0


def test_zero_distances_give_finite_gradients():
    emb = tf.Variable(np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 2.0], [0.0, 2.0]], np.float32))
    lab = np.array([0, 0, 1, 1])
    for form in ("paper", "hinge", "soft"):
        with tf.GradientTape() as tape:
            loss = batch_hard_triplet_loss(lab, emb, form=form, margin=1.0)
        g = tape.gradient(loss, emb).numpy()
        assert np.all(np.isfinite(g))
    d = pairwise_distances(emb).numpy()
    assert np.all(np.diag(d) == 0) and d[0, 1] == 0 and d[0, 2] == pytest.approx(np.sqrt(2))


def test_bin_labels_quadrants():
    v = np.array([[0.5, 0.5], [-0.5, 0.5], [0.5, -0.5], [-0.5, -0.5], [0.0, 0.1]], np.float32)
    # bin(arousal) + 2 * bin(valence); 0.0 is not above the threshold
    np.testing.assert_array_equal(bin_labels(v).numpy(), [3, 2, 1, 0, 2])
    np.testing.assert_array_equal(bin_labels(v[:, :1], (-0.25, 0.25)).numpy()[:, ...],
                                  [2, 0, 2, 0, 1])


def _ccc(x, y):
    mx, my = x.mean(), y.mean()
    return 2 * np.mean((x - mx) * (y - my)) / (x.var() + y.var() + (mx - my) ** 2)


def test_ccc_loss_pools_frames_and_respects_mask():
    rng = np.random.default_rng(2)
    yt = rng.normal(size=(3, 7, 2)).astype(np.float32)
    yp = (yt * 0.5 + rng.normal(size=yt.shape) * 0.3 + 0.2).astype(np.float32)
    mask = np.ones((3, 7), bool)
    mask[1, 4:] = False
    yp[1, 4:] = 100.0  # padding must not matter
    sel = mask.reshape(-1)
    want = 1 - np.mean([_ccc(yt.reshape(-1, 2)[sel, k], yp.reshape(-1, 2)[sel, k])
                        for k in range(2)])
    assert float(ccc_loss(yt, yp, mask)) == pytest.approx(want, rel=1e-5)
    want_mse = np.mean((yt.reshape(-1, 2)[sel] - yp.reshape(-1, 2)[sel]) ** 2)
    assert float(masked_mse(yt, yp, mask)) == pytest.approx(want_mse, rel=1e-5)


def test_classification_loss_is_cross_entropy():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    want = -(np.log(0.7) + np.log(0.8)) / 2
    # of logits (the head's output): any logits whose softmax is p
    assert float(classification_loss([0, 2], np.log(p) + 3.0)) == pytest.approx(want, rel=1e-5)
    assert float(classification_loss([0, 2], p, from_logits=False)) == pytest.approx(want, rel=1e-5)


def reference_prototype(ya, ea, yb, eb, k, va=None, vb=None, t=0.1):
    """Loop-based numpy crossmodal prototype loss (independent implementation)."""
    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)

    def one(y1, e1, v1, y2, e2, v2):
        e1, e2 = unit(e1), unit(e2)
        cents = {c: unit(e2[(y2 == c) & v2].mean(0)) for c in range(k) if np.any((y2 == c) & v2)}
        losses = []
        for i in range(len(y1)):
            if not v1[i] or y1[i] not in cents:
                continue
            logits = {c: float(e1[i] @ cents[c]) / t for c in cents}
            m = max(logits.values())
            lse = m + np.log(sum(np.exp(v - m) for v in logits.values()))
            losses.append(lse - logits[y1[i]])
        return np.mean(losses) if losses else 0.0

    va = np.ones(len(ya), bool) if va is None else np.asarray(va, bool)
    vb = np.ones(len(yb), bool) if vb is None else np.asarray(vb, bool)
    return 0.5 * (one(ya, ea, va, yb, eb, vb) + one(yb, eb, vb, ya, ea, va))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prototype_loss_matches_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    ya, yb = rng.integers(0, 4, 12), rng.integers(0, 3, 9)  # class 3 absent from b
    ea = rng.normal(size=(12, 5)).astype(np.float32)
    eb = rng.normal(size=(9, 5)).astype(np.float32)
    vb = rng.random(9) > 0.2
    got = float(crossmodal_prototype_loss(ya, ea, yb, eb, 4, None, vb, temperature=0.2))
    assert got == pytest.approx(reference_prototype(ya, ea, yb, eb, 4, None, vb, 0.2), rel=1e-4)


def test_prototype_loss_is_small_when_classes_align_and_has_finite_gradients():
    # aligned: both modalities put class c on the same axis -> loss close to 0
    y = np.array([0, 1, 2, 0, 1, 2])
    e = np.eye(3, dtype=np.float32)[y] * 3
    assert float(crossmodal_prototype_loss(y, e, y, e, 3, temperature=0.05)) < 1e-6
    # swapped classes across modalities -> large loss
    swapped = np.eye(3, dtype=np.float32)[(y + 1) % 3]
    assert float(crossmodal_prototype_loss(y, e, y, swapped, 3, temperature=0.05)) > 10
    ea = tf.Variable(np.zeros((6, 3), np.float32))  # zero rows: finite gradients
    with tf.GradientTape() as tape:
        loss = crossmodal_prototype_loss(y, ea, y, e, 3)
    assert np.all(np.isfinite(tape.gradient(loss, ea).numpy()))


@pytest.mark.parametrize("form", ["paper", "hinge", "soft"])
def test_unit_space_is_the_bruteforce_on_normalised_rows_and_scale_cannot_lower_it(form):
    rng = np.random.default_rng(11)
    emb = np.abs(rng.normal(size=(40, 6))).astype(np.float32)  # ReLU-like, unbounded
    emb[:3] = 0.0  # dead units: zero rows stay zero
    lab = rng.integers(0, 4, 40)
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = np.where(norm > 0, emb / np.maximum(norm, 1e-30), 0.0)
    got = float(batch_hard_triplet_loss(lab, emb, form=form, margin=0.2, space="unit"))
    assert got == pytest.approx(reference_triplet(lab, unit, None, form, 0.2), abs=1e-5)
    for c in (1e-3, 0.5, 10.0, 1e4):  # the embeddings' scale cannot change the unit-space term
        scaled = float(batch_hard_triplet_loss(lab, c * emb, form=form, margin=0.2, space="unit"))
        assert scaled == pytest.approx(got, abs=1e-5)
    assert -2.0 <= got <= 2.0 + 0.2
    # the paper's form on raw embeddings of separated classes is negative and scales with them:
    # growing them lowers it without limit
    sep = (np.eye(6, dtype=np.float32)[lab] + 0.05 * rng.random((40, 6))).astype(np.float32)
    raw = float(batch_hard_triplet_loss(lab, sep, form="paper", space="raw"))
    assert raw < 0
    assert float(batch_hard_triplet_loss(lab, 100 * sep, form="paper", space="raw")) == \
        pytest.approx(100 * raw, rel=1e-4)
    assert float(batch_hard_triplet_loss(lab, 100 * sep, form="paper", space="unit")) >= -2.0


def test_unknown_triplet_space_is_refused():
    with pytest.raises(ValueError, match="space must be one of"):
        batch_hard_triplet_loss(np.array([0, 1]), np.ones((2, 2), np.float32), space="auto")
