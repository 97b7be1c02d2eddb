"""Capacity chosen per data set, on training speakers only: inner speaker folds.

The dense form's defaults (dense L2 1e-2, 300 whole-set epochs, the last kept)
were chosen on RAVDESS dev speakers. On another corpus they may over- or
under-regularise. ``crossval --capacity inner`` therefore chooses, inside every
outer fold and for every system separately (the same budget for each), the
dense L2 weight and the number of epochs from :class:`CapacityGrid`:

* the outer fold's **training speakers** are dealt into ``inner_folds`` groups
  (sorted ids, group i = ids[i::k], as the outer folds are dealt); each group is
  held out once as the inner run's dev partition, the others train;
* the outer fold's dev and test speakers are the inner runs' test partition:
  held out, so that no item of theirs (of either modality, when the auxiliary
  corpus records the same speakers) trains; the selection never reads a test
  score (only the inner dev scores: :func:`choose`);
* each candidate is trained once per inner fold (seed 0, the system's other
  settings unchanged) and scored by its mean dev macro-F1 (CCC for regression)
  over the inner folds; the best wins, ties going to the earlier candidate of
  the grid (the stronger regularisation, the fewer epochs);
* the outer runs then train with the chosen values, which are written into
  their ``config.json`` and shown in the report.

EmoBed's alpha and beta are not selected (the paper's 0.5 and 0.5 stay): both
systems get the same grid over the same capacity settings.

>>> [c.label for c in CapacityGrid(dense_l2=(0.1, 0.01), epochs=(100, 300)).candidates()]
['l2=0.1,epochs=100', 'l2=0.1,epochs=300', 'l2=0.01,epochs=100', 'l2=0.01,epochs=300']
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from emobed_tf import configs
from emobed_tf.data import speakers


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of the grid."""

    dense_l2: float
    epochs: int

    @property
    def label(self) -> str:
        return f"l2={self.dense_l2:g},epochs={self.epochs}"

    def apply(self, cfg: configs.TrainConfig) -> configs.TrainConfig:
        """``cfg`` trained with this capacity."""
        return dataclasses.replace(cfg, epochs=self.epochs, loss=dataclasses.replace(
            cfg.loss, dense_l2=self.dense_l2))


@dataclasses.dataclass(frozen=True)
class CapacityGrid:
    """What ``--capacity inner`` chooses from, in order of preference on ties."""

    dense_l2: tuple = (0.1, 0.01, 0.001)
    epochs: tuple = (100, 300)
    inner_folds: int = 3

    def candidates(self) -> list:
        return [Candidate(l2, e) for l2 in self.dense_l2 for e in self.epochs]


def inner_folds(fold: speakers.Fold, k: int) -> list:
    """The inner folds of an outer ``fold``: ``[Fold]`` over its training speakers only
    (dev: one group of them; test: the outer dev and test speakers, held out).

    >>> outer = speakers.Fold(0, train=("a", "b", "c", "d"), dev=("e",), test=("f",))
    >>> [(f.train, f.dev, f.test) for f in inner_folds(outer, 2)]
    [(('b', 'd'), ('a', 'c'), ('e', 'f')), (('a', 'c'), ('b', 'd'), ('e', 'f'))]
    """
    ids = sorted(fold.train)
    k = min(k, len(ids))
    if k < 2:
        raise configs.ConfigError(f"fold {fold.index}: --capacity inner needs at least 2 "
                                  f"training speakers, it has {len(ids)}")
    held_out = tuple(sorted(set(fold.dev) | set(fold.test)))
    out = []
    for i in range(k):
        dev = tuple(ids[i::k])
        out.append(speakers.Fold(i, tuple(s for s in ids if s not in dev), dev, held_out))
    return out


def inner_config(cfg: configs.TrainConfig, cand: Candidate, inner: speakers.Fold,
                 out: str) -> configs.TrainConfig:
    """One inner run: ``cfg`` (an outer run's configuration) with ``cand`` on ``inner``."""
    data = dataclasses.replace(cfg.data, train_speakers=inner.train, dev_speakers=inner.dev,
                               test_speakers=inner.test)
    return dataclasses.replace(cand.apply(cfg), seed=0, data=data,
                               out=os.path.join(out, cand.label, f"inner{inner.index}"))


def choose(grid: CapacityGrid, scores: dict, key: str) -> tuple:
    """``(candidate, {label: mean inner dev score})`` from ``scores``:
    ``{(label, inner index): metrics}`` (only each run's ``dev`` entry is read)."""
    means = {}
    for cand in grid.candidates():
        vals = [m["dev"][key] for (label, _), m in scores.items() if label == cand.label]
        means[cand.label] = float(np.mean(vals))
    best = max(grid.candidates(), key=lambda c: means[c.label])  # first of ties
    return best, means


def select(cfgs: dict, folds: list, grid: CapacityGrid, out: str, run_many,
           key: str = "f1_macro") -> dict:
    """Runs the inner folds of every ``(system, fold index): cfg`` and returns
    ``{(system, fold index): (candidate, {label: mean inner dev score})}``;
    ``run_many(configs, labels, describe)`` trains them (reusing finished runs); the
    progress lines show each inner run's dev score, the one the choice reads (its test
    partition holds the outer fold's dev and test speakers)."""
    by_index = {f.index: f for f in folds}
    todo, where = [], []
    for (system, f), cfg in cfgs.items():
        for inner in inner_folds(by_index[f], grid.inner_folds):
            for cand in grid.candidates():
                todo.append(inner_config(cfg, cand, inner, os.path.join(
                    out, "runs", "capacity", system, f"fold{f}")))
                where.append((system, f, cand.label, inner.index))
    metrics = run_many(todo, [f"capacity {s} fold {f} {c} inner {i}" for s, f, c, i in where],
                       lambda m: f"inner dev {key} {m['dev'][key]:.4f}")
    scores = {}
    for (system, f, label, i), m in zip(where, metrics):
        scores.setdefault((system, f), {})[label, i] = m
    return {k: choose(grid, v, key) for k, v in scores.items()}
