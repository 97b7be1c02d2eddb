"""The search folder of ``tuning.search``: what it searches (``search.json``), whether a rerun may
continue it (the differing fields named, unreadable KerasTuner files refused), ``--overwrite``'s
clearing, and the trials recorded in it."""

from __future__ import annotations

import glob
import json
import os
import shutil

from emobed_tf import configs, fingerprint, io
from emobed_tf.errors import EmobedError

RECORD = "search.json"
# recorded but not compared: raising --max-trials continues a search
NOT_COMPARED = ("max_trials",)
# TrainConfig settings that do not change a trial's score (or are recorded elsewhere)
NOT_RECORDED = ("out", "verbose", "strategy", "dataset", "data_dir", "audio_dir", "video_dir",
                "target", "mode", "seed", "effective_alpha", "effective_beta", "data.cache",
                "data.cache_limit_mb", "data.eval_batch_size")
OVERWRITE_HINT = ("pass --overwrite to start the search afresh (its trials are deleted) or "
                  "choose another --out")


class SearchError(EmobedError, RuntimeError):
    """The search cannot run as asked: one line naming the folder or file and the way out."""


def dev_monitors() -> set:
    """The objectives a trial may log (imported here: emobed_tf.model.metrics imports Keras, which
    must wait for ``--backend``)."""
    from emobed_tf.model.metrics import SCORES

    return {s.monitor for s in SCORES.values()}


def _flatten(obj, prefix=""):
    if isinstance(obj, dict) and obj:
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def search_record(base: configs.TrainConfig, sources: dict, hypermodel, tuner: str,
                  max_trials: int) -> dict:
    """What ``search.json`` records: everything that a trial's score depends on."""
    training = {k: v for k, v in _flatten(json.loads(json.dumps(base.to_json()))).items()
                if k not in NOT_RECORDED}
    record = {
        "dataset": base.dataset,
        "data_dirs": {m: os.path.abspath(src.data_dir) for m, src in sorted(sources.items())},
        "target": base.target, "mode": base.mode,
        "objective": {"name": hypermodel.objective.name,
                      "direction": hypermodel.objective.direction},
        "tuner": tuner, "seed": base.seed, "max_trials": max_trials,
        "search_space": hypermodel.search_space(), "training": training}
    return json.loads(json.dumps(record))  # tuples as lists, as read back


ORDER = ("dataset", "data_dirs", "target", "mode", "objective", "tuner", "seed", "max_trials",
         "search_space", "training")


def _fields(record: dict) -> dict:
    """The compared fields: top-level values, one per data folder, per searched
    hyperparameter (its whole range) and per training setting."""
    out = {}
    for k, v in record.items():
        if k in ("data_dirs", "search_space", "training") and isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def _order(key: str):
    top = key.split(".")[0]
    return (ORDER.index(top) if top in ORDER else len(ORDER), key)


def differing_fields(old: dict, new: dict) -> list:
    """Names of the recorded fields whose values differ (``max_trials`` aside), in ``ORDER``.

    >>> differing_fields({"target": "audio", "mode": "emobed", "max_trials": 5},
    ...                  {"target": "video", "mode": "emobed", "max_trials": 9})
    ['target']
    >>> differing_fields({"search_space": {"alpha": {"max_value": 2.0}}, "tuner": "random"},
    ...                  {"search_space": {"alpha": {"max_value": 1.0}}, "tuner": "bayesian"})
    ['tuner', 'search_space.alpha']
    """
    return sorted(fingerprint.differences(_fields(old), _fields(new), NOT_COMPARED), key=_order)


def describe_differences(directory: str, old: dict, new: dict) -> str:
    """The folder holds another search: the message, in :mod:`emobed_tf.fingerprint`'s words.

    >>> print(describe_differences(
    ...     "s", {"target": "audio", "search_space": {"beta": {}}, "training": {"epochs": 1}},
    ...     {"target": "video", "search_space": {}, "training": {"epochs": 2}}))
    s: holds another search with other settings (target 'audio' -> 'video',
    search_space.beta {} -> (unset), training.epochs 1 -> 2); rerun it with its own arguments
    to continue it, or pass --overwrite to start the search afresh (its trials are deleted)
    or choose another --out
    """
    return fingerprint.describe(directory, "another search", differing_fields(old, new),
                                _fields(old), _fields(new),
                                hint="rerun it with its own arguments to continue it, or "
                                + OVERWRITE_HINT)


def _kerastuner_files(directory: str) -> list:
    names = ["oracle.json", "chief.json"] + sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(directory, "tuner*.json")))
    paths = [os.path.join(directory, n) for n in names]
    paths += sorted(glob.glob(os.path.join(directory, "trial_*", "trial.json")))
    return [p for p in paths if os.path.isfile(p)]


def check_folder(directory: str, record: dict, chief: bool = True) -> None:
    """Refuses a folder that holds another search or unreadable search files.

    A worker checks the record (when the chief has written it; data folders
    aside, as they are paths on the chief's machine) and its own tuner file
    only: the chief may be writing the trial files meanwhile.
    """
    path = os.path.join(directory, RECORD)
    if os.path.isfile(path):
        try:
            old = io.read_json(path)
        except ValueError as err:
            raise SearchError(f"{err}; {OVERWRITE_HINT}") from None
        old = old if isinstance(old, dict) else {}
        if not chief:  # data folders are paths on the chief's machine, maybe not a worker's
            old = {k: v for k, v in old.items() if k != "data_dirs"}
            record = {k: v for k, v in record.items() if k != "data_dirs"}
        if differing_fields(old, record):
            raise SearchError(describe_differences(directory, old, record))
    if not chief:
        own = os.path.join(directory, os.environ.get("KERASTUNER_TUNER_ID", "tuner0") + ".json")
        files = [own] if os.path.isfile(own) else []
    else:
        files = _kerastuner_files(directory)
        if files and not os.path.isfile(path):
            raise SearchError(f"{directory}: holds a KerasTuner search without {RECORD} (written "
                              "by an older tuning.search?), so what it searched is unknown; "
                              + OVERWRITE_HINT)
    for p in files:
        try:
            io.read_json(p)
        except ValueError as err:
            raise SearchError(f"{err}; {OVERWRITE_HINT}") from None


def clear_folder(directory: str) -> None:
    """Deletes the folder's content except its lock file (``--overwrite``)."""
    for name in os.listdir(directory):
        if name == io.FolderLock.NAME:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def completed_trials(directory: str) -> list:
    """Every trial recorded in the search folder (read from disk: works on the chief only,
    or after the search)."""
    out = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name, "trial.json")
        if name.startswith("trial_") and os.path.isfile(path):
            try:
                t = io.read_json(path)
            except ValueError as err:
                raise SearchError(f"{err}; {OVERWRITE_HINT}") from None
            metric = None
            obj = t.get("metrics", {}).get("metrics", {})
            for k, v in obj.items():
                if k in dev_monitors():
                    hist = v.get("observations", [])
                    if hist:
                        metric = max(o["value"][0] for o in hist)
            out.append({"trial_id": t["trial_id"], "status": t["status"],
                        "score": t.get("score"), "objective": metric,
                        "values": t["hyperparameters"]["values"]})
    return out
