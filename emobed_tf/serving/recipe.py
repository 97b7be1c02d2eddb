"""The feature recipe an export carries: how to turn a new recording into the model's input.

``python -m emobed_tf.export`` writes it into ``assets.extra/emobed_export.json``
(key ``recipe``) from the data manifest the run kept (``manifests/<modality>.json``):

* ``modality``, ``feature_set``, ``dim``, ``frame_step_s``, ``task``,
  ``label_names`` (classes, or the regression dimensions), ``dim_names``;
* ``extraction_options``: the extraction's options fingerprint of that
  modality (``tfrecords_tools.options.AudioOptions.fingerprint()`` /
  ``VideoOptions.fingerprint()``, an encoder file by its SHA-256), None for
  features read from OpenFace CSVs or a table;
* ``reader``: for those, ``{"corpus": "openface"|"table", "feature_names":
  [...], ...}`` (OpenFace: feature groups, pooling, minimum confidence, face rule);
* ``normalize``: ``corpus`` (the training set's statistics are in the graph)
  or ``speaker`` (the client sends each speaker's statistics; the fallback
  statistics are in the same file).

:func:`missing` says what an older export (or a run extracted before the
options were recorded) lacks, in words. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os

from emobed_tf import io
from emobed_tf.errors import EmobedError

RECIPE_KEY = "recipe"
EXPORT_META_KEY = "emobed_export"  # the key of emobed_export.json in a server's metadata


class RecipeError(EmobedError, ValueError):
    """An export without (part of) the recipe a prediction needs; the message says what."""


def _openface_pool(feature_set: str) -> str | None:
    for pool in ("frames", "mean", "functionals"):
        if feature_set.endswith(f"({pool})"):
            return pool
    return None


def from_manifest(manifest: dict, modality: str, normalize: str = "corpus") -> dict:
    """The recipe of ``modality`` from a data manifest (``manifest.json`` as a dict).

    >>> m = {"task": "classification", "label_names": ["a", "b"], "frame_step_s": 0.04,
    ...      "modalities": {"audio": {"dim": 88, "feature_set": "eGeMAPSv02 functionals "
    ...                               "(utterance)"}},
    ...      "extra": {"extraction_options": {"audio": {"audio_mode": "utterance"}}}}
    >>> r = from_manifest(m, "audio")
    >>> r["dim"], r["extraction_options"], r["reader"], r["label_names"]
    (88, {'audio_mode': 'utterance'}, None, ['a', 'b'])
    """
    info = manifest["modalities"][modality]
    extra = manifest.get("extra") or {}
    options = (extra.get("extraction_options") or {}).get(modality)
    feature_set = info.get("feature_set", "")
    reader = None
    kind = extra.get("reader") or ("openface" if feature_set.startswith("OpenFace")
                                   else "table" if feature_set.startswith("table ") else None)
    if options is None and kind in ("openface", "table"):
        reader = {"corpus": kind, "feature_names": list(extra.get("feature_names") or [])}
        if kind == "openface":
            reader.update(openface_features=list(extra.get("openface_features") or []),
                          openface_pool=extra.get("openface_pool") or _openface_pool(feature_set),
                          min_confidence=extra.get("min_confidence", 0.8),
                          openface_face=extra.get("openface_face", "most"))
    return {"modality": modality, "feature_set": feature_set, "dim": int(info["dim"]),
            "frame_step_s": float(manifest.get("frame_step_s", 0.04)),
            "task": manifest.get("task"), "label_names": list(manifest.get("label_names", [])),
            "dim_names": list(manifest.get("dim_names", [])),
            "extraction_options": options, "reader": reader, "normalize": normalize}


def from_run(run_dir: str, modality: str, normalize: str = "corpus") -> dict:
    """``{"label_names": [...], "recipe": {...}}`` for the export's ``emobed_export.json``."""
    from emobed_tf.experiments.rundir import RunDir

    path = RunDir(run_dir).manifest_path(modality)
    try:
        recipe = from_manifest(io.read_json(path), modality, normalize)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RecipeError(f"{path}: cannot read the feature recipe ({err})") from None
    return {"label_names": recipe["label_names"], RECIPE_KEY: recipe}


def missing(meta: dict | None) -> str | None:
    """What a prediction cannot know from ``meta`` (an ``emobed_export.json``), or None.

    >>> missing({})
    'no feature recipe (an export written before emobed_export.json carried one)'
    >>> missing({"recipe": {"extraction_options": None, "reader": None, "feature_set": "x"}})
    "no extraction options for the features 'x' (the data set was extracted before they were recorded)"
    """
    if not meta or not isinstance(meta.get(RECIPE_KEY), dict):
        return "no feature recipe (an export written before emobed_export.json carried one)"
    r = meta[RECIPE_KEY]
    if not r.get("extraction_options") and not r.get("reader"):
        return (f"no extraction options for the features {r.get('feature_set', '')!r} (the data "
                "set was extracted before they were recorded)")
    reader = r.get("reader") or {}
    if reader and not reader.get("feature_names"):
        return f"no feature column names of the {reader.get('corpus')} features"
    return None


def read_export_meta(version_dir: str) -> dict | None:
    """``assets.extra/emobed_export.json`` of an export version folder, or None."""
    path = os.path.join(version_dir, "assets.extra", "emobed_export.json")
    if not os.path.isfile(path):
        return None
    try:
        return io.read_json(path)
    except ValueError as err:
        raise RecipeError(f"{path}: {err}") from None
