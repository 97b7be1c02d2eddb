"""Helpers shared by the benchmarks: machine description and result files."""

import json
import os
import platform
import subprocess

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count()}
    try:
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                           if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:  # noqa: BLE001 - benchmarks that do not import TF
        pass
    try:
        info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()
    except OSError:
        pass
    return info


def write(name: str, result: dict, markdown: str) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as fh:
        json.dump({"machine": machine(), **result}, fh, indent=1)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as fh:
        fh.write(markdown)
    print(markdown)
