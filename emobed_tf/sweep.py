"""Sweep of alpha or beta (the paper's Figs. 5-7).

``python -m emobed_tf.sweep --dataset demo --target audio --param beta --values 0,0.3,0.6,1 --out runs/sweep``

Trains one run per value into ``OUT/<param>=<value>/`` (``joint`` systems
for alpha and ``triplet`` systems for beta, as in the paper, unless
``--mode``); finished runs are reused and interrupted ones resume. Writes
``sweep.json``, ``sweep.md`` and ``sweep.png`` (dev and test score against
the weight, best dev value marked). Ctrl-C stops with one line saying how
many values finished (exit code 130); rerunning resumes.
"""

from __future__ import annotations

import argparse
import os
import sys

from emobed_tf import cli  # first: keeps framework start-up logs quiet
from emobed_tf import configs as C
from emobed_tf import experiment as E
from emobed_tf import figures
from emobed_tf.io import markdown_table, write_json_and_markdown


def score_keys(result: dict) -> list:
    from emobed_tf.metrics import HEADLINE  # here: it imports Keras (--backend comes first)

    if result["task"] == "classification":
        return [HEADLINE["classification"]]
    return [k for k in result["headline"]]


def run_sweep(args, values) -> list:
    mode = args.mode or ("joint" if args.param == "alpha" else "triplet")
    rows = []
    for v in values:
        cfg = cli.config_from_args(args, os.path.join(args.out, f"{args.param}={v:g}"), mode)
        cfg = C.apply_hparams(cfg, {args.param: v})
        res, reused = E.run_or_reuse(cfg, args.overwrite)
        print(f"[{args.param}={v:g}] {mode} {cfg.out}" + (" (reused)" if reused else ""),
              flush=True)
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m emobed_tf.sweep", description=__doc__,
        usage="python -m emobed_tf.sweep --dataset NAME --param alpha|beta --values V1,V2 --out DIR [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(p)
    p.add_argument("--param", required=True, choices=("alpha", "beta"))
    p.add_argument("--values", required=True, help="comma-separated weights, e.g. 0,0.5,1")
    p.add_argument("--mode", choices=("joint", "triplet", "emobed"),
                   help="default: joint for alpha, triplet for beta")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        values = [float(v) for v in args.values.split(",") if v]
    except ValueError as err:
        return cli.fail(f"--values {args.values}: {err}")

    def work():
        return _sweep(args, values)

    def progress():
        done = cli.finished_runs(os.path.join(args.out, f"{args.param}={v:g}") for v in values)
        return (f"{done} of {len(values)} {args.param} values finished ({args.out}); rerun the "
                "same command to resume")

    return cli.run_main(args, work, progress)


def _sweep(args, values) -> int:
    rows = run_sweep(args, values)
    keys = rows[0]["_keys"]
    os.makedirs(args.out, exist_ok=True)
    title = f"{args.dataset}, {args.target} target: {rows[0]['mode']} systems"
    plot_sweep(rows, args.param, os.path.join(args.out, "sweep.png"), title)
    result = {"param": args.param, "rows": [{k: v for k, v in r.items() if k != "_keys"}
                                            for r in rows],
              "best": {k: best_value(rows, k) for k in keys}}
    head = [args.param] + [f"{s} {k}" for s in ("dev", "test") for k in keys]
    cells = [[f"{r['value']:g}"] + ["-" if r[f"{s}_{k}"] is None else f"{r[f'{s}_{k}']:.4f}"
                                    for s in ("dev", "test") for k in keys] for r in rows]
    lines = [f"# {title}", "", markdown_table(head, cells)]
    lines += ["", "best on dev: " + ", ".join(f"{k}: {args.param}={best_value(rows, k):g}"
                                              for k in keys), "", "![sweep](sweep.png)"]
    md = "\n".join(lines) + "\n"
    write_json_and_markdown(args.out, "sweep", result, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
