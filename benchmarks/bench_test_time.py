"""The default test command's time on clean clones of two commits, on one machine.

::

    python -m benchmarks.bench_test_time [--commits 6847fdd,HEAD] [--one-process]

Each commit is cloned from this repository into a temporary folder and the
default test command (``python -m pytest``, the options of that commit's
``setup.cfg``) runs there, one commit after the other, with one interpreter
(``--python``, an environment with the dev extra installed), on an otherwise
idle machine. ``--one-process`` adds the last commit with ``-n 0`` (its tests in
one process: what ``pytest-xdist`` saves). The default pair is the tree before
the layered restructuring (issue 24's "today") and the current one. Results:
``benchmarks/results/test_time_commits.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from benchmarks.common import write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_suite(python: str, clone: str, extra=()) -> dict:
    """One default test run in ``clone``: wall seconds and pytest's summary line."""
    t0 = time.monotonic()
    proc = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                          cwd=clone, capture_output=True, text=True)
    wall = time.monotonic() - t0
    lines = [ln for ln in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
    return {"seconds": round(wall, 1), "returncode": proc.returncode,
            "summary": lines[-1].strip("= ") if lines else proc.stdout[-300:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_test_time", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=sys.executable,
                   help="the interpreter of an environment with the dev extra installed")
    p.add_argument("--commits", default="6847fdd,HEAD")
    p.add_argument("--one-process", action="store_true",
                   help="also run the last commit with -n 0")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="emobed-test-time-") as tmp:
        plan = [(c, ()) for c in args.commits.split(",")]
        if args.one_process:
            plan.append((plan[-1][0], ("-n", "0")))
        for i, (commit, extra) in enumerate(plan):
            clone = os.path.join(tmp, f"clone{i}")
            subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
            subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
            sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                                 capture_output=True, text=True).stdout.strip()
            print(f"{sha} {' '.join(extra)}: running the default test command", flush=True)
            rows.append({"commit": sha, "extra": " ".join(extra),
                         **run_suite(args.python, clone, extra)})
            print(f"  {rows[-1]['seconds']:.0f} s: {rows[-1]['summary']}", flush=True)
    first, last = rows[0], rows[len(args.commits.split(",")) - 1]
    ratio = last["seconds"] / first["seconds"]
    result = {"runs": rows, "last_over_first": round(ratio, 3)}
    md = "\n".join([
        "# The default test command on clean clones, one machine", "",
        "Each commit cloned and tested one after the other with one interpreter on an "
        "otherwise idle machine (`python -m benchmarks.bench_test_time`); wall seconds of "
        "`python -m pytest` (installation not included).", "",
        "| commit | options | wall s | result |", "|---|---|---|---|",
        *[f"| `{r['commit']}` | {r['extra'] or 'as committed'} | {r['seconds']:.0f} | "
          f"{r['summary']} |" for r in rows], "",
        f"`{last['commit']}` takes {ratio:.2f}x the time of `{first['commit']}`.", ""])
    write("test_time_commits", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
