"""Files that are written whole or not at all, folder locks, markdown tables.

Every file the package writes as a result (JSON, markdown, CSV, ``.keras``,
``.npy``) goes through :func:`atomic_path`: the content is written to a
temporary file beside the target and renamed over it only when complete, so
a crash, a kill or a full disk leaves either the old file or the new one,
never half of one, and never a stray temporary file.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "scores.json")
>>> write_json(path, {"f1": 0.5})
>>> read_json(path)
{'f1': 0.5}
>>> sorted(os.listdir(folder))
['scores.json']
>>> print(markdown_table(["system", "f1"], [["classic", "0.50"], ["emobed", "0.52"]]))
| system | f1 |
|---|---|
| classic | 0.50 |
| emobed | 0.52 |
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import time

from emobed_tf.errors import EmobedError

_SPACE_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class OutputError(EmobedError, OSError):
    """A result could not be written: the message names the path and why."""


def free_mib(path: str) -> float:
    """Free space (MiB) on the file system holding ``path`` (or its nearest existing parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        return shutil.disk_usage(probe).free / 2**20
    except OSError:
        return float("nan")


def describe_os_error(path: str, err: OSError, needed_bytes: int | None = None) -> str:
    """One line naming ``path`` and what went wrong (full disk, read-only, permissions)."""
    if err.errno in _SPACE_ERRNOS:
        need = f"; about {needed_bytes / 2**20:.1f} MiB are needed" if needed_bytes else ""
        return (f"{path}: the disk is full ({free_mib(path):.1f} MiB free there{need}); "
                "free some space and rerun (what was saved before is kept)")
    if err.errno == errno.EROFS:
        return f"{path}: the file system is read-only; choose another output folder"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"{path}: permission denied; choose a folder you can write to"
    return f"{path}: cannot write ({err.strerror or err})"


def temp_path(path: str) -> str:
    """The temporary name :func:`atomic_path` writes to (keeps the extension last)."""
    head, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    if ext in (".keras", ".npy", ".h5"):  # savers that insist on their extension
        return os.path.join(head, f"{stem}.tmp{ext}")
    return path + ".tmp"


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary path to write; renames it to ``path`` when the block succeeds.

    On any failure the temporary file is removed and ``path`` is left as it
    was; an ``OSError`` becomes an :class:`OutputError` naming ``path``.
    """
    tmp = temp_path(path)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp)
            else:
                os.remove(tmp)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise OutputError(describe_os_error(path, err)) from err
        raise


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def write_json(path: str, obj, indent: int = 1) -> None:
    """Writes ``obj`` as JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path: str):
    """The JSON content of ``path``; a truncated or invalid file raises ``ValueError`` naming it."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); the file "
                         "is truncated or corrupt") from None


def save_model(model, path: str) -> None:
    """``model.save`` to ``path`` (a ``.keras`` file) atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def save_npy(path: str, array) -> None:
    """``numpy.save`` to ``path`` atomically."""
    import numpy as np

    with atomic_path(path) as tmp:
        np.save(tmp, array)


def write_json_and_markdown(folder: str, stem: str, obj: dict, markdown: str) -> None:
    """``folder/stem.json`` and ``folder/stem.md``, each written atomically."""
    write_json(os.path.join(folder, f"{stem}.json"), obj)
    write_text(os.path.join(folder, f"{stem}.md"), markdown)


def markdown_table(header, rows) -> str:
    """A GitHub markdown table; cells are converted with ``str``."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# exclusive folder locks


class LockedError(EmobedError, RuntimeError):
    """Another process holds the folder's lock: the message says which."""


class FolderLock:
    """An exclusive, advisory lock on a folder (``FOLDER/.lock``, ``fcntl.flock``).

    The lock file records the holder's host, pid and start time so that a
    second process can say who holds it. The operating system releases the
    lock when the holder exits, even after ``kill -9``: a stale file never
    blocks a rerun.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with FolderLock(folder, "training"):
    ...     FolderLock(folder, "training").acquire()
    Traceback (most recent call last):
    ...
    emobed_tf.io.LockedError: ...
    """

    NAME = ".lock"

    def __init__(self, folder: str, what: str = "a job"):
        self.folder = folder
        self.what = what
        self._fh = None

    @property
    def path(self) -> str:
        return os.path.join(self.folder, self.NAME)

    def acquire(self) -> "FolderLock":
        import fcntl

        os.makedirs(self.folder, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise LockedError(f"{self.folder}: in use by {holder}; wait for it to finish or "
                              "choose another output folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{self.what} (pid {os.getpid()} on {socket.gethostname()}, started "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
