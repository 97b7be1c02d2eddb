"""The library of ``python -m emobed_tf.sweep``: one run per alpha or beta value, the report."""

from __future__ import annotations

import os

from emobed_tf.experiments import figures
from emobed_tf.io import markdown_table, write_json_and_markdown


def score_keys(result: dict) -> list:
    from emobed_tf.model.metrics import dev_key  # here: it imports Keras (--backend comes first)

    if result["task"] == "classification":
        return [dev_key("classification")]
    return [k for k in result["headline"]]


def run_sweep(param: str, mode: str, runs, overwrite: bool = False, jobs: int = 1) -> list:
    """One row per ``(value, config)`` of ``runs``: the run trained (or reused; ``jobs`` side
    by side, :func:`emobed_tf.experiments.runner.run_many`) and its scores."""
    from emobed_tf.experiments import runner

    runs = list(runs)
    metrics = runner.run_many([cfg for _, cfg in runs], overwrite, jobs,
                              labels=[f"{param}={v:g} {mode}" for v, _ in runs],
                              log=lambda s: print(s, flush=True))
    rows = []
    for (v, cfg), res in zip(runs, metrics):
        rows.append({"value": v, "mode": mode, "alpha": res["alpha"], "beta": res["beta"],
                     **{f"{s}_{k}": res.get(s, {}).get(k) for s in ("dev", "test")
                        for k in score_keys(res)}, "_keys": score_keys(res)})
    return rows


def best_value(rows, key):
    return max(rows, key=lambda r: r[f"dev_{key}"])["value"]


def plot_sweep(rows, param, path, title):
    plt = figures.pyplot()
    keys = rows[0]["_keys"]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["value"] for r in rows]
    for k in keys:
        ax.plot(xs, [r[f"dev_{k}"] for r in rows], "o-", label=f"dev {k}")
        if rows[0].get(f"test_{k}") is not None:
            ax.plot(xs, [r[f"test_{k}"] for r in rows], "s--", alpha=0.6, label=f"test {k}")
        b = best_value(rows, k)
        ax.axvline(b, color="gray", lw=0.8, ls=":")
        ax.annotate(f"best {param}={b:g}", (b, max(r[f"dev_{k}"] for r in rows)),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(param)
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend(fontsize=8)
    figures.save(fig, path)


def write_report(rows: list, param: str, out: str, title: str) -> str:
    """Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` into ``out``; returns the markdown."""
    keys = rows[0]["_keys"]
    os.makedirs(out, exist_ok=True)
    plot_sweep(rows, param, os.path.join(out, "sweep.png"), title)
    result = {"param": param, "rows": [{k: v for k, v in r.items() if k != "_keys"}
                                       for r in rows],
              "best": {k: best_value(rows, k) for k in keys}}
    head = [param] + [f"{s} {k}" for s in ("dev", "test") for k in keys]
    cells = [[f"{r['value']:g}"] + ["-" if r[f"{s}_{k}"] is None else f"{r[f'{s}_{k}']:.4f}"
                                    for s in ("dev", "test") for k in keys] for r in rows]
    lines = [f"# {title}", "", markdown_table(head, cells)]
    lines += ["", "best on dev: " + ", ".join(f"{k}: {param}={best_value(rows, k):g}"
                                              for k in keys), "", "![sweep](sweep.png)"]
    md = "\n".join(lines) + "\n"
    write_json_and_markdown(out, "sweep", result, md)
    return md
