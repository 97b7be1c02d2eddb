"""What running the other processes beside the test session saves (tests/conftest.py).

::

    python -m benchmarks.bench_test_time [--python .venv/bin/python]

A few tests check what other Python processes do (JAX and torch training,
two training workers, the cross-validation CLI). ``tests/conftest.py`` starts
them with the session, at the lowest CPU priority, so that they use the CPU
time the session leaves. This benchmark clones the committed tree into a
temporary folder and runs the default test command there twice, one after the
other, on an otherwise idle machine: as committed, and with
``EMOBED_TESTS_OUTSIDE=inline`` (each group of processes run at once while the
session waits: what the suite takes without the scheduler). The ratio of the
two wall times says whether the scheduler is needed. Results:
``benchmarks/results/test_time.{json,md}``.
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


def run_suite(python: str, clone: str, env: dict) -> dict:
    """One default test run in ``clone``: wall seconds and pytest's summary line."""
    t0 = time.monotonic()
    proc = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=clone,
                          env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    lines = [ln for ln in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
    return {"seconds": round(wall, 1), "returncode": proc.returncode,
            "summary": lines[-1].strip("= ") if lines else proc.stdout[-300:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_test_time", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=sys.executable,
                   help="the interpreter of an environment with the dev extra installed")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="emobed-test-time-") as tmp:
        clone = os.path.join(tmp, "clone")
        subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                                capture_output=True, text=True).stdout.strip()
        base = {k: v for k, v in os.environ.items() if k != "EMOBED_TESTS_OUTSIDE"}
        beside = run_suite(args.python, clone, base)
        inline = run_suite(args.python, clone, {**base, "EMOBED_TESTS_OUTSIDE": "inline"})
    ratio = inline["seconds"] / beside["seconds"]
    result = {"commit": commit, "beside": beside, "inline": inline,
              "inline_over_beside": round(ratio, 3)}
    md = "\n".join([
        "# The test suite with the other processes beside it, and without", "",
        f"Default test command on a clean clone of `{commit}`, the two runs one after the other "
        "on the same idle machine (`python -m benchmarks.bench_test_time`).", "",
        "| other processes (JAX/torch training, two workers, crossval CLI) | wall s | result |",
        "|---|---|---|",
        f"| beside the session (tests/conftest.py, as committed) | {beside['seconds']:.0f} | "
        f"{beside['summary']} |",
        f"| run while the session waits (`EMOBED_TESTS_OUTSIDE=inline`) | "
        f"{inline['seconds']:.0f} | {inline['summary']} |", "",
        f"Without the scheduler the suite takes {ratio:.2f}x as long "
        f"({inline['seconds'] - beside['seconds']:+.0f} s).", ""])
    write("test_time", result, md)
    return 0 if beside["returncode"] == inline["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
