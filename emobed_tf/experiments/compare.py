"""The library of ``python -m emobed_tf.compare``: several systems trained, their scores
and the paired comparison with a baseline on the same items
(:func:`emobed_tf.experiments.evaluate.compare_items`)."""

from __future__ import annotations

from emobed_tf.io import markdown_table


def run_modes(runs: dict, overwrite: bool = False, jobs: int = 1) -> dict:
    """``{mode: result}``: each ``{mode: config}`` of ``runs`` trained, or reused when finished
    (``jobs`` side by side, :func:`emobed_tf.experiments.runner.run_many`)."""
    from emobed_tf.experiments import runner

    metrics = runner.run_many(list(runs.values()), overwrite, jobs, labels=list(runs),
                              log=lambda s: print(s, flush=True))
    return dict(zip(runs, metrics))


def comparison(results: dict, baseline: str = "classic") -> dict:
    """Scores per mode and split, and each mode against ``baseline`` on the same items
    (the runs' predictions are made again from their saved models)."""
    from emobed_tf.experiments import evaluate

    first = next(iter(results.values()))
    task, keys = first["task"], first["headline"]
    table = {"task": task, "target": first["target"], "dataset": first["dataset"],
             "keys": keys, "baseline": baseline if baseline in results else None, "rows": {}}
    preds, names = {}, None
    if table["baseline"]:
        for m, r in results.items():
            *_, names, _, preds[m] = evaluate.run_predictions(r["out"])
    for mode, res in results.items():
        row = {"alpha": res["alpha"], "beta": res["beta"]}
        for split in ("dev", "test"):
            if split in res:
                row[split] = {k: res[split][k] for k in keys}
        if table["baseline"] and mode != baseline:
            row["vs_baseline"] = evaluate.compare_items(preds[mode], preds[baseline], task,
                                                        names)
        table["rows"][mode] = row
    return table


def format_markdown(table: dict) -> str:
    from emobed_tf.experiments import evaluate

    keys = table["keys"]
    head = ["system", "alpha", "beta"] + [f"{s} {k}" for s in ("dev", "test") for k in keys]
    rows = []
    for mode, row in table["rows"].items():
        cells = [mode, f"{row['alpha']:g}", f"{row['beta']:g}"]
        for s in ("dev", "test"):
            for k in keys:
                v = row.get(s, {}).get(k)
                cells.append("-" if v is None else f"{v:.4f}")
        rows.append(cells)
    lines = [f"# {table['dataset']}: target {table['target']}", "", markdown_table(head, rows)]
    for mode, row in table["rows"].items():
        if row.get("vs_baseline"):
            lines += ["", f"## {mode} against {table['baseline']}", ""]
            lines += evaluate.comparison_lines(row["vs_baseline"])
    return "\n".join(lines) + "\n"
