"""Significance: the one paired analysis every report uses, and the tests of Section 4.3.

**The paired analysis** (:func:`paired_analysis`): two systems scored on the
same speaker folds. The units are the folds (seeds averaged within a fold:
runs of one fold share their test speakers, so they are not independent);
per fold the difference of the two means; over the folds the mean gain with
a 95 % **t** confidence interval (mean +- t(.975, n - 1) x sd / sqrt(n)), the
two-sided Wilcoxon signed-rank p (scipy, exact for small n without ties) and
the two-sided sign-test p (binomial over the folds won and lost), and Holm's
adjustment over a stated family of such comparisons (:func:`holm`).
``crossval``, ``dev_corpus`` and the benchmarks report exactly this.

**One test set** (``compare``, ``evaluate --compare``: two runs scored on the
same items): :func:`mcnemar_exact` on the items each system gets right (the
exact two-sided binomial test on the discordant items) and
:func:`paired_bootstrap` of the macro-F1 difference (items resampled with
replacement, both systems on the same resample). For regression there is no
paired test on one test set (frames of one recording are not independent
items); the reports say so and point to ``crossval``.

The tests of Section 4.3, kept as the paper's reference (unpaired, one-tailed):

* Regression: Fisher r-to-z transformation of two correlation-type scores
  (CCC or PCC) measured on N frames: ``z = (atanh(r_a) - atanh(r_b)) /
  sqrt(2 / (N - 3))``, ``p = 1 - Phi(z)``. This is the independent-samples
  form used throughout the AVEC literature; it ignores that both systems
  were scored on the same frames, so it is conservative.
* Classification: one-tailed z-test on two proportions (accuracy, or the
  recall of a class) measured on ``n_a`` and ``n_b`` items, with the pooled
  proportion in the standard error.
* Several comparisons at once (a study of many settings): Holm's step-down
  adjustment of their p-values (:func:`holm`), which keeps the chance of any
  false positive in the family at alpha.
"""

from __future__ import annotations

import math

from scipy.stats import norm


def fisher_z_test(r_a: float, r_b: float, n: int, n_b: int | None = None) -> dict:
    """One-tailed p that score ``r_a`` (on ``n`` frames) exceeds ``r_b``."""
    n_b = n if n_b is None else n_b
    if min(n, n_b) <= 3:
        raise ValueError("the Fisher r-to-z test needs more than 3 frames per system")
    clip = 1 - 1e-12
    za, zb = math.atanh(max(-clip, min(clip, r_a))), math.atanh(max(-clip, min(clip, r_b)))
    z = (za - zb) / math.sqrt(1.0 / (n - 3) + 1.0 / (n_b - 3))
    return {"z": z, "p": float(norm.sf(z))}


def two_proportion_z_test(p_a: float, p_b: float, n_a: int, n_b: int | None = None) -> dict:
    """One-tailed p that proportion ``p_a`` (of ``n_a`` items) exceeds ``p_b``.

    Example:

    >>> t = two_proportion_z_test(0.6, 0.5, 100)
    >>> round(t["z"], 3), round(t["p"], 4)
    (1.421, 0.0776)
    """
    n_b = n_a if n_b is None else n_b
    pooled = (p_a * n_a + p_b * n_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1.0 / n_a + 1.0 / n_b))
    if se == 0:
        return {"z": 0.0, "p": 0.5 if p_a == p_b else float(p_a < p_b)}
    z = (p_a - p_b) / se
    return {"z": z, "p": float(norm.sf(z))}


def significance_mark(p: float, alpha: float = 0.05) -> str:
    """``*`` when significant at ``alpha`` (the paper uses .05).

    Example:

    >>> significance_mark(0.01), significance_mark(0.2)
    ('*', '')
    """
    return "*" if p < alpha else ""


def holm(pvalues) -> list:
    """Holm-Bonferroni adjusted p-values, in the order given.

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0),
    made non-decreasing along that order and capped at 1; a comparison is
    significant at alpha when its adjusted p is below alpha.

    Example (by hand: .005 x 4 = .02, .01 x 3 = .03, .03 x 2 = .06, .04 x 1 = .04 -> .06):

    >>> [round(p, 4) for p in holm([0.01, 0.04, 0.03, 0.005])]
    [0.03, 0.06, 0.06, 0.02]
    """
    ps = [float(p) for p in pvalues]
    m = len(ps)
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: ps[k])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def paired_differences(diffs, confidence: float = 0.95) -> dict:
    """Mean, t interval, Wilcoxon and sign tests of paired differences (one per unit).

    ``ci_low``/``ci_high``: ``mean +- t(1 - (1 - confidence) / 2, n - 1) x sd / sqrt(n)``
    (NaN for fewer than 2 units); ``p_wilcoxon``: two-sided signed-rank test with zero
    differences dropped (scipy's ``zero_method="wilcox"``), 1 when every difference is 0;
    ``p_sign``: two-sided binomial test of the units won against those lost.

    >>> r = paired_differences([0.02, 0.01, 0.03, -0.01, 0.02, 0.04])
    >>> r["wins"], r["losses"], round(r["p_sign"], 4), round(r["p_wilcoxon"], 4)
    (5, 1, 0.2188, 0.0938)
    """
    import numpy as np
    from scipy.stats import binomtest, t, wilcoxon

    d = np.asarray(list(diffs), np.float64)
    n = int(d.size)
    wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
    out = {"n_pairs": n, "mean_diff": float(d.mean()) if n else math.nan,
           "sd_diff": float(d.std(ddof=1)) if n > 1 else math.nan,
           "wins": wins, "losses": losses, "ties": n - wins - losses,
           "confidence": confidence, "ci_method": "t over the units"}
    if n > 1:
        half = t.ppf(1 - (1 - confidence) / 2, n - 1) * out["sd_diff"] / math.sqrt(n)
        out["ci_low"], out["ci_high"] = out["mean_diff"] - half, out["mean_diff"] + half
    else:
        out["ci_low"] = out["ci_high"] = math.nan
    if wins + losses == 0:
        out.update(p_wilcoxon=1.0, p_sign=1.0)
        return out
    out["p_wilcoxon"] = float(wilcoxon(d, zero_method="wilcox").pvalue)
    out["p_sign"] = float(binomtest(wins, wins + losses, 0.5).pvalue)
    return out


def fold_means(scores: dict) -> dict:
    """``{fold: mean over its seeds}`` from ``{(fold, seed): score}`` (``{fold: score}``
    passes through).

    >>> fold_means({(0, 0): 0.5, (0, 1): 0.7, (1, 0): 0.4})
    {0: 0.6, 1: 0.4}
    """
    groups = {}
    for key, v in scores.items():
        groups.setdefault(key[0] if isinstance(key, tuple) else key, []).append(float(v))
    return {f: sum(v) / len(v) for f, v in sorted(groups.items())}


def by_fold_seed(runs: dict) -> dict:
    """``{(fold, seed): value}`` from run names: ``{"fold<i>-seed<s>": value}``.

    >>> by_fold_seed({"fold3-seed1": 0.5, "fold0-seed0": 0.25})
    {(3, 1): 0.5, (0, 0): 0.25}
    """
    out = {}
    for key, v in runs.items():
        fold, _, seed = key.partition("-seed")
        out[int(fold[4:]), int(seed)] = v
    return out


def paired_analysis(a: dict, b: dict, confidence: float = 0.95) -> dict:
    """System ``a`` against system ``b`` over the folds both were scored on.

    ``a``, ``b``: ``{(fold, seed): score}`` (or ``{fold: score}``). Only the runs both
    have enter (a fold's seeds in common), each fold's mean over them is one unit; the
    result is :func:`paired_differences` of ``a - b`` over the folds (``n_pairs`` is then
    the number of folds, also given as ``n_folds``), with ``n_seeds`` (the most seeds a
    fold has), ``mean_a``, ``mean_b`` and ``per_fold`` (``{fold: difference}``). ``b`` may
    have one score per fold (a probe without seeds): it then pairs with every seed of ``a``.

    >>> r = paired_analysis({(0, 0): .6, (0, 1): .8, (1, 0): .5, (1, 1): .5},
    ...                     {(0, 0): .6, (0, 1): .6, (1, 0): .6, (1, 1): .6})
    >>> r["n_folds"], r["n_seeds"], round(r["mean_diff"], 4), r["per_fold"]
    (2, 2, 0.0, {0: 0.1, 1: -0.1})
    """
    def keyed(scores):
        return {k if isinstance(k, tuple) else (k, None): v for k, v in scores.items()}

    a, b = keyed(a), keyed(b)
    per_fold_b = all(s is None for _, s in b)
    common = sorted((k for k in a if (k[0], None) in b) if per_fold_b else (set(a) & set(b)),
                    key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    ma = fold_means({k: a[k] for k in common})
    mb = fold_means({k: b[(k[0], None) if per_fold_b else k] for k in common})
    folds = sorted(ma)
    out = paired_differences([ma[f] - mb[f] for f in folds], confidence)
    seeds = {}
    for f, s in common:
        seeds[f] = seeds.get(f, 0) + 1
    out.update(n_folds=len(folds), n_seeds=max(seeds.values(), default=0),
               mean_a=sum(ma.values()) / max(len(ma), 1), mean_b=sum(mb.values()) / max(len(mb), 1),
               per_fold={f: round(ma[f] - mb[f], 12) for f in folds}, units="folds")
    return out


def mcnemar_exact(correct_a, correct_b) -> dict:
    """Exact two-sided McNemar test of two systems on the same items.

    ``correct_a``, ``correct_b``: per item, whether each system is right. Only the
    discordant items count: ``only_a`` right for ``a`` alone, ``only_b`` for ``b``
    alone; p is the two-sided binomial test of ``only_a`` out of ``only_a + only_b``
    at 1/2 (1 when there is no discordant item).

    By hand: 1 against 9 discordant items, p = 2 x (1 + 10) / 2^10 = .0215.

    >>> r = mcnemar_exact([1] * 9 + [0] * 1 + [1] * 5, [0] * 9 + [1] * 1 + [1] * 5)
    >>> r["only_a"], r["only_b"], round(r["p"], 4)
    (9, 1, 0.0215)
    """
    import numpy as np
    from scipy.stats import binomtest

    ca, cb = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if ca.shape != cb.shape:
        raise ValueError(f"both systems must be scored on the same items: {ca.shape} != {cb.shape}")
    only_a, only_b = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"n": int(ca.size), "only_a": only_a, "only_b": only_b, "p": p,
            "test": "exact McNemar (two-sided binomial on the discordant items)"}


def paired_bootstrap(y_true, pred_a, pred_b, metric, n_boot: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> dict:
    """Paired bootstrap of ``metric(y, pred_a) - metric(y, pred_b)`` on the same items.

    Items are drawn with replacement ``n_boot`` times (a seeded generator), both
    systems scored on the same draw. ``ci_low``/``ci_high``: the percentile interval;
    ``p``: two-sided, twice the smaller share of draws on either side of 0 (at least
    ``1 / n_boot``, at most 1).
    """
    import numpy as np

    y, a, b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    if not (len(y) == len(a) == len(b)):
        raise ValueError("both systems must be scored on the same items")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        diffs[i] = metric(y[idx], a[idx]) - metric(y[idx], b[idx])
    lo, hi = np.quantile(diffs, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    p = min(1.0, max(2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)), 1.0 / n_boot))
    return {"diff": float(metric(y, a) - metric(y, b)), "ci_low": float(lo),
            "ci_high": float(hi), "p": float(p), "n": int(len(y)), "n_boot": n_boot,
            "test": f"paired bootstrap over items ({n_boot} draws, percentile interval)"}
