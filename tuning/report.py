"""The report of a finished search: ``summary.md``, ``trials.json``,
``best_hyperparameters.json`` and ``alpha_beta.png`` in the search folder."""

from __future__ import annotations

import os

from emobed_tf import io
from emobed_tf.experiments import figures
from tuning.folder import SearchError


def summary_markdown(directory: str, done: list, mode: str) -> str:
    """``summary.md``: one row per completed trial, best first.

    >>> print(summary_markdown("s", [{"trial_id": "01", "score": 0.5,
    ...                               "values": {"alpha": 0.25, "encoder_units": 64}}], "joint"))
    # KerasTuner search: 1 completed trials (mode joint)
    <BLANKLINE>
    | trial | dev score | alpha | encoder_units |
    |---|---|---|---|
    | 01 | 0.5000 | 0.25 | 64 |
    <BLANKLINE>
    best: trial 01, dev score 0.5000; train with
    `python -m emobed_tf.train ... --hparams s/best_hyperparameters.json`
    <BLANKLINE>
    ![score against alpha and beta](alpha_beta.png)
    """
    keys = sorted({k for t in done for k in t["values"]})
    rows = [[t["trial_id"], f"{t['score']:.4f}"] + [
        f"{t['values'][k]:.4g}" if isinstance(t["values"].get(k), float)
        else str(t["values"].get(k, "-")) for k in keys] for t in done]
    best = done[0]
    lines = [f"# KerasTuner search: {len(done)} completed trials (mode {mode})", "",
             io.markdown_table(["trial", "dev score", *keys], rows), "",
             (f"best: trial {best['trial_id']}, dev score {best['score']:.4f}; "
              "train with `python -m emobed_tf.train ... --hparams "
              f"{os.path.join(directory, 'best_hyperparameters.json')}`"), "",
             "![score against alpha and beta](alpha_beta.png)"]
    return "\n".join(lines) + "\n"


def write_summary(directory: str, trials: list, mode: str) -> dict:
    done = [t for t in trials if t["status"] == "COMPLETED" and t["score"] is not None]
    if not done:
        raise SearchError(f"{directory}: no completed trial (every trial failed: see the "
                          "messages above)")
    done.sort(key=lambda t: t["score"], reverse=True)
    best = done[0]
    io.write_json(os.path.join(directory, "best_hyperparameters.json"),
                  {"values": best["values"], "score": best["score"], "mode": mode,
                   "trial_id": best["trial_id"]})
    io.write_json(os.path.join(directory, "trials.json"), trials)
    io.write_text(os.path.join(directory, "summary.md"), summary_markdown(directory, done, mode))
    plot_alpha_beta(done, os.path.join(directory, "alpha_beta.png"))
    return best


def plot_alpha_beta(trials, path):
    plt = figures.pyplot()
    params = [p for p in ("alpha", "beta") if any(p in t["values"] for t in trials)]
    fig, axes = plt.subplots(1, max(1, len(params)), figsize=(5 * max(1, len(params)), 4),
                             squeeze=False)
    for ax, p in zip(axes[0], params or ["alpha"]):
        xs = [t["values"].get(p, 0.0) for t in trials]
        ys = [t["score"] for t in trials]
        ax.scatter(xs, ys, c=ys, cmap="viridis")
        b = max(trials, key=lambda t: t["score"])
        ax.scatter([b["values"].get(p, 0.0)], [b["score"]], marker="*", s=200, color="red",
                   label="best")
        ax.set_xlabel(p)
        ax.set_ylabel("dev score")
        ax.legend()
    figures.save(fig, path, dpi=110)
