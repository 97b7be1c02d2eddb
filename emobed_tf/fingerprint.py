"""Job fingerprints: whether a folder holds another job, in one message format.

A run folder (``config.json``), a search folder (``search.json``) and an
extraction's work cache (``.work/options.json``) each record the settings of
the job that wrote them. Before a job continues in such a folder it compares
the recorded settings with its own: :func:`differences` names the settings
that differ, :func:`describe` says so, always in the same words::

    PATH: holds <what> with other settings (name old -> new, ...); <the way out>

This module is at the bottom of the package: it imports nothing from it
(``tfrecords_tools`` and ``tuning`` use it too).

>>> old = {"epochs": 2, "data": {"batch_size": 8, "window": 0}, "seed": 1}
>>> new = {"epochs": 3, "data": {"batch_size": 4, "window": 0}, "seed": 1, "l2": 0.1}
>>> differences(old, new)
['epochs', 'data', 'l2']
>>> print(describe("runs/a", "a run", differences(old, new), old, new,
...                hint="or else"))  # doctest: +NORMALIZE_WHITESPACE
runs/a: holds a run with other settings (epochs 2 -> 3, data.batch_size 8 -> 4,
l2 (unset) -> 0.1); or else
"""

from __future__ import annotations

UNSET = "(unset)"
_MISSING = object()


def differences(old: dict, new: dict, ignore=()) -> list:
    """The keys whose values differ between ``old`` and ``new`` (a key missing on one side
    differs), ``ignore`` aside: ``old``'s keys in order, then those only ``new`` has."""
    keys = list(old) + [k for k in new if k not in old]
    return [k for k in keys
            if k not in ignore and old.get(k, _MISSING) != new.get(k, _MISSING)]


def show(value) -> str:
    """A short text of a recorded value (``(unset)`` for none)."""
    if value is _MISSING:
        return UNSET
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _changes(key, a, b, names):
    name = names.get(key, key)
    if isinstance(a, dict) and isinstance(b, dict):  # a group of settings: the ones that differ
        return [part for k in differences(a, b)
                for part in _changes(f"{name}.{k}", a.get(k, _MISSING), b.get(k, _MISSING), {})]
    return [f"{name} {show(a)} -> {show(b)}"]


def changes(diffs, old: dict | None = None, new: dict | None = None, names=None,
            limit: int = 8) -> str:
    """``name old -> new, ...`` for the keys ``diffs`` (names alone without the records).

    ``names`` maps a key to the name the user knows (a command-line flag);
    nested groups show the settings inside that differ; past ``limit`` the
    rest is counted.

    >>> changes(["window"], {"window": 2.0}, {"window": 4.0}, names={"window": "--window"})
    '--window 2.0 -> 4.0'
    """
    names = names or {}
    if old is None or new is None:
        parts = [names.get(k, k) for k in diffs]
    else:
        parts = [p for k in diffs
                 for p in _changes(k, old.get(k, _MISSING), new.get(k, _MISSING), names)]
    more = f", and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def describe(path, what: str, diffs, old: dict | None = None, new: dict | None = None,
             names=None, hint: str = "") -> str:
    """``PATH: holds <what> with other settings (<changes>); <hint>``."""
    text = f"{path}: holds {what} with other settings ({changes(diffs, old, new, names)})"
    return f"{text}; {hint}" if hint else text
