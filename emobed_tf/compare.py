"""Trains several of the paper's systems and compares them (Tables 1-3 style).

``python -m emobed_tf.compare --dataset demo --target audio --modes classic,emobed --out runs/demo``

Each mode is trained into ``OUT/<mode>/`` with ``emobed_tf.train`` (a
finished run is reused, an interrupted one resumes), then
``OUT/comparison.md`` and ``OUT/comparison.json`` hold the dev/test scores
of the target modality and one-tailed significance against ``classic``
(two-proportion z-test on accuracy for classification, Fisher r-to-z on
CCC for regression; ``*`` marks p < .05). Ctrl-C stops with one line
saying how many systems finished (exit code 130); rerunning resumes.
"""

from __future__ import annotations

import argparse
import os
import sys

from emobed_tf import cli  # first: keeps framework start-up logs quiet
from emobed_tf import configs as C
from emobed_tf import significance as S
from emobed_tf import experiment as E
from emobed_tf.io import markdown_table, write_json_and_markdown


def run_modes(args, modes) -> dict:
    results = {}
    for mode in modes:
        cfg = cli.config_from_args(args, os.path.join(args.out, mode), mode)
        print(f"[{mode}] {cfg.out}", flush=True)
        results[mode], reused = E.run_or_reuse(cfg, args.overwrite)
        if reused:
            print(f"[{mode}] finished earlier, reused", flush=True)
    return results


def _test_against(baseline: dict, other: dict, split: str, key: str, task: str) -> dict | None:
    if split not in baseline or split not in other:
        return None
    a, b = other[split], baseline[split]
    if task == "classification":
        return S.two_proportion_z_test(a["accuracy"], b["accuracy"], a["n"], b["n"])
    return S.fisher_z_test(a[key], b[key], a["n"], b["n"])


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
                mark = S.significance_mark(test["p"]) if test else ""
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m emobed_tf.compare", description=__doc__,
        usage="python -m emobed_tf.compare --dataset NAME --out DIR [--modes M1,M2] [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(p)
    p.add_argument("--modes", default="classic,joint,triplet,emobed",
                   help="comma-separated systems among " + ", ".join(C.MODES))
    p.add_argument("--out", required=True, help="folder for the runs and the comparison")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in C.MODES]
    if bad:
        return cli.fail(f"unknown modes {bad}; choose among {C.MODES}")

    def work():
        results = run_modes(args, modes)
        table = comparison(results)
        md = format_markdown(table)
        write_json_and_markdown(args.out, "comparison", table, md)
        print(md)
        return 0

    def progress():
        done = cli.finished_runs(os.path.join(args.out, m) for m in modes)
        return (f"{done} of {len(modes)} systems finished ({args.out}); rerun the same command "
                "to resume")

    return cli.run_main(args, work, progress)


if __name__ == "__main__":
    sys.exit(main())
