"""The linear probe: the reference every neural system of a cross-validation is measured against.

A standardised multinomial logistic regression (scikit-learn) on the run's own
features and speaker split: the target modality's training speakers only
(the dev and test speakers never fit it), its inverse regularisation ``C``
chosen from :data:`PROBE_CS` by inner speaker folds over those training
speakers (:func:`inner_speaker_folds`: ``k`` groups of whole speakers, the
macro-F1 pooled over the held-out groups; ties go to the smaller ``C``), then
refitted on all training speakers with that ``C`` and scored on dev and test
by the package's one scorer (:func:`emobed_tf.experiments.scoring.score_predictions`).

Items are read as the run reads them (the same normalisation, label map and
speaker folds: :func:`emobed_tf.data.memory.load_splits`); a one-frame item is
its feature vector, a sequence the mean and standard deviation over its valid
frames. Only classification has a probe; a regression task has none.

>>> inner_speaker_folds(["b", "a", "c", "a", "d"], 2)
[([0, 4], [1, 2, 3]), ([1, 2, 3], [0, 4])]
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from emobed_tf import configs
from emobed_tf.data import memory
from emobed_tf.model import metrics

PROBE_CS = (0.001, 0.01, 0.1, 1.0, 10.0)  # the grid of C searched by the inner folds
INNER_FOLDS = 4  # inner speaker folds (fewer when there are fewer training speakers)
MAX_ITER = 3000


def pooled_features(split: memory.InMemorySplit) -> np.ndarray:
    """[N, D] for one-frame items, [N, 2D] (mean, then sd over valid frames) for sequences."""
    x, m = split.features, split.mask
    if x.shape[1] == 1:
        return x[:, 0, :].astype(np.float64)
    w = m[..., None].astype(np.float64)
    n = np.maximum(w.sum(1), 1.0)
    mean = (x * w).sum(1) / n
    sd = np.sqrt(np.maximum(((x - mean[:, None, :]) ** 2 * w).sum(1) / n, 0.0))
    return np.concatenate([mean, sd], 1)


def inner_speaker_folds(speakers, k: int = INNER_FOLDS) -> list:
    """``[(fit_rows, held_out_rows)]``: the sorted speaker ids dealt into ``k`` groups
    (group i = ids[i::k], as ``--folds speaker:K`` deals the outer folds); each group is
    held out once. Fewer groups when there are fewer speakers; none with one speaker."""
    ids = sorted(set(speakers))
    k = min(k, len(ids))
    if k < 2:
        return []
    out = []
    for i in range(k):
        held = set(ids[i::k])
        out.append(([j for j, s in enumerate(speakers) if s not in held],
                    [j for j, s in enumerate(speakers) if s in held]))
    return out


def _fit(x, y, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITER)).fit(x, y)


def _macro_f1(gold, pred, num_classes: int) -> float:
    return metrics.scores_from_confusion(
        metrics.confusion_matrix(gold, pred, num_classes))["f1_macro"]


def select_c(x, y, speakers, num_classes: int, cs=PROBE_CS, k: int = INNER_FOLDS) -> tuple:
    """``(C, {C: inner macro-F1})``: the C with the best macro-F1 pooled over the inner
    speaker folds' held-out items (ties: the smaller C). One fold or none: the middle C."""
    folds = inner_speaker_folds(speakers, k)
    if not folds:
        return cs[len(cs) // 2], {}
    scores = {}
    for c in cs:
        pred = np.empty(len(y), np.int64)
        for fit_rows, held in folds:
            if len(set(y[fit_rows])) < 2:  # one class to fit: predict it
                pred[held] = y[fit_rows][0]
                continue
            pred[held] = _fit(x[fit_rows], y[fit_rows], c).predict(x[held])
        scores[c] = _macro_f1(y, pred, num_classes)
    best = max(cs, key=lambda c: (scores[c], -c))
    return best, scores


def fit_and_score(train: memory.InMemorySplit, scored: dict, names, cs=PROBE_CS,
                  k: int = INNER_FOLDS) -> dict:
    """Selects C on ``train`` (inner speaker folds), refits on all of it and scores each
    split of ``scored`` (``{split: InMemorySplit}``); returns the metrics dict of a run
    (``test``, ``dev`` ...) with ``probe``: the chosen C and the inner scores."""
    from emobed_tf.experiments.scoring import Predictions, score_predictions

    x, y = pooled_features(train), np.asarray(train.label, np.int64)
    c, inner = select_c(x, y, train.speakers, len(names), cs, k)
    model = _fit(x, y, c)
    out = {"probe": {"C": c, "inner_f1_macro": {str(k_): v for k_, v in inner.items()},
                     "inner_folds": len(inner_speaker_folds(train.speakers, k)),
                     "train_items": int(len(y)),
                     "train_speakers": sorted(set(train.speakers))}}
    for split, data in scored.items():
        proba = np.zeros((len(data), len(names)), np.float32)
        proba[:, model.classes_] = model.predict_proba(pooled_features(data))
        p = Predictions("classification", list(data.recordings),
                        np.asarray(data.label, np.int64), proba, list(data.speakers))
        out[split] = score_predictions(p, names)
        out[split]["n"] = int(len(data))
    return out


def run_probe(cfg: configs.TrainConfig, overwrite: bool = False) -> dict:
    """The probe of the run ``cfg`` (its data, target and speaker split), written to
    ``cfg.out/metrics.json``; reused from there unless ``overwrite`` or the data settings
    it recorded differ (it is deterministic and takes seconds, so it is then refitted)."""
    from emobed_tf.experiments import experiment
    from emobed_tf.io import read_json, write_json

    cfg = dataclasses.replace(cfg, mode="classic", seed=0)  # the target modality alone
    data = json.loads(json.dumps({"target": cfg.target, **cfg.to_json()["data"]}))
    path = os.path.join(cfg.out, "metrics.json")
    if os.path.isfile(path) and not overwrite:
        done = read_json(path)
        if done.get("data") == data:
            return done
    sources = experiment.resolve_sources(cfg)
    src = sources[cfg.target]
    if src.manifest.task != "classification":
        raise configs.ConfigError("the linear probe is for classification only")
    splits = [s for s in ("train", "dev", "test")
              if s != "test" or src.manifest.modalities[cfg.target].shards.get("test")]
    read = memory.load_splits(src, cfg.target, splits,
                              experiment.pipeline_options(cfg, src.manifest))
    # label scarcity: the items seed 0 keeps (the probe has no seed of its own)
    read["train"] = memory.labelled_subset(read["train"], cfg.data.labels_per_class, 0)
    if not len(read["train"]):
        raise memory.DataError(f"{src.data_dir}: the probe's training split of {cfg.target} "
                               "is empty")
    names = experiment.output_names(cfg, src.manifest)
    result = fit_and_score(read["train"], {s: read[s] for s in splits if s != "train"}, names)
    result.update(mode="probe", target=cfg.target, dataset=cfg.dataset, task="classification",
                  out=cfg.out, data=data)
    os.makedirs(cfg.out, exist_ok=True)
    write_json(path, result)
    return result
