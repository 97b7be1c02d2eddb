"""The library of ``python -m emobed_tf.compare``: several systems trained, their scores
and one-tailed significance against a baseline."""

from __future__ import annotations

from emobed_tf.experiments import significance
from emobed_tf.io import markdown_table


def run_modes(runs: dict, overwrite: bool = False, jobs: int = 1) -> dict:
    """``{mode: result}``: each ``{mode: config}`` of ``runs`` trained, or reused when finished
    (``jobs`` side by side, :func:`emobed_tf.experiments.runner.run_many`)."""
    from emobed_tf.experiments import runner

    metrics = runner.run_many(list(runs.values()), overwrite, jobs, labels=list(runs),
                              log=lambda s: print(s, flush=True))
    return dict(zip(runs, metrics))


def _test_against(baseline: dict, other: dict, split: str, key: str, task: str) -> dict | None:
    if split not in baseline or split not in other:
        return None
    a, b = other[split], baseline[split]
    if task == "classification":
        return significance.two_proportion_z_test(a["accuracy"], b["accuracy"], a["n"], b["n"])
    return significance.fisher_z_test(a[key], b[key], a["n"], b["n"])


def comparison(results: dict, baseline: str = "classic") -> dict:
    """Scores per mode and split plus p-values against ``baseline``."""
    first = next(iter(results.values()))
    task, keys = first["task"], first["headline"]
    table = {"task": task, "target": first["target"], "dataset": first["dataset"],
             "keys": keys, "baseline": baseline if baseline in results else None, "rows": {}}
    for mode, res in results.items():
        row = {"alpha": res["alpha"], "beta": res["beta"]}
        for split in ("dev", "test"):
            if split not in res:
                continue
            row[split] = {k: res[split][k] for k in keys}
            if table["baseline"] and mode != baseline:
                sig = {}
                for k in (keys if task == "regression" else ["accuracy"]):
                    t = _test_against(results[baseline], res, split, k, task)
                    if t:
                        sig[k] = t
                row[f"{split}_significance"] = sig
        table["rows"][mode] = row
    return table


def format_markdown(table: dict) -> str:
    keys = table["keys"]
    head = ["system", "alpha", "beta"] + [f"{s} {k}" for s in ("dev", "test") for k in keys]
    rows = []
    for mode, row in table["rows"].items():
        cells = [mode, f"{row['alpha']:g}", f"{row['beta']:g}"]
        for s in ("dev", "test"):
            for k in keys:
                v = row.get(s, {}).get(k)
                sig = row.get(f"{s}_significance", {})
                test = sig.get(k) or (sig.get("accuracy") if k == "accuracy" else None)
                mark = significance.significance_mark(test["p"]) if test else ""
                cells.append("-" if v is None else f"{v:.4f}{mark}")
        rows.append(cells)
    lines = [f"# {table['dataset']}: target {table['target']}", "", markdown_table(head, rows)]
    if table["baseline"]:
        test = ("one-tailed two-proportion z-test on accuracy" if table["task"] ==
                "classification" else "one-tailed Fisher r-to-z test on CCC")
        lines += ["", f"`*`: better than {table['baseline']} with p < .05 ({test})."]
        for mode, row in table["rows"].items():
            for s in ("dev", "test"):
                for k, t in row.get(f"{s}_significance", {}).items():
                    lines.append(f"- {mode} vs {table['baseline']}, {s} {k}: z = {t['z']:.2f}, "
                                 f"p = {t['p']:.4f}")
    return "\n".join(lines) + "\n"
