"""Significance tests of Section 4.3 (one-tailed, "is system A better than B").

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
