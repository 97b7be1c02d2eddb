"""Matplotlib set-up shared by every figure the package writes.

Figures are drawn without a display (the ``Agg`` back end) and saved
atomically; callers get ``pyplot`` from :func:`pyplot` and hand the finished
figure to :func:`save`.

>>> import os, tempfile
>>> plt = pyplot()
>>> fig, ax = plt.subplots(figsize=(2, 2))
>>> _ = ax.plot([0, 1], [0, 1])
>>> path = os.path.join(tempfile.mkdtemp(), "line.png")
>>> save(fig, path)
>>> os.path.getsize(path) > 0
True
"""

from __future__ import annotations

from emobed_tf import io


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive ``Agg`` back end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str, dpi: int = 120) -> None:
    """Saves ``fig`` to ``path`` atomically and closes it."""
    plt = pyplot()
    try:
        fig.tight_layout()
        with io.atomic_path(path) as tmp:
            fmt = path.rsplit(".", 1)[-1] if "." in path else "png"
            fig.savefig(tmp, dpi=dpi, format=fmt)
    finally:
        plt.close(fig)
