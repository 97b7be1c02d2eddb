"""The EmoBed training step under each Keras backend, measured as ratios in one run.

``python -m benchmarks.bench_backends`` writes ``benchmarks/results/backends.{json,md}``.

Each backend runs in a process of its own (``KERAS_BACKEND`` is read once, at import) on the
same machine and the same synthetic batches, given to ``model.fit`` as arrays (no
TensorFlow needed under JAX and torch, so it runs on a GPU machine without it). Timed:
seconds per step, the median over ``rounds`` of (fit of 2 + ``steps`` steps - fit of 2
steps) / ``steps``, so a fit's fixed cost cancels, after a warm-up fit (tracing or jit
compilation, reported apart as ``first_fit_s``); ``torch, masked GRU`` times the RECOLA size
with the masked GRU loop that ``GRUStack`` avoids under torch. Sizes:

* OMG size: classification, one utterance vector per item, 88-d audio and 4096-d video,
  1 + 1 GRU layers of 120, batch 64 + 64 and 256 + 256;
* RECOLA size: regression, 300-frame windows (one shorter, padded window per batch, as the
  windowed pipeline gives), 88-d audio and 168-d video, 2 + 2 GRU layers of 120, 4 + 4.

for the classic step (target only) and the EmoBed step (Eq. 8, both modalities).
``--backends`` limits the set; a backend that is not installed is reported as such.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import write

SIZES = {
    "omg_64": dict(task="classification", frames=1, batch=64, dims={"audio": 88, "video": 4096},
                   layers=1, outputs=7),
    "omg_256": dict(task="classification", frames=1, batch=256,
                    dims={"audio": 88, "video": 4096}, layers=1, outputs=7),
    "recola_4": dict(task="regression", frames=300, batch=4, dims={"audio": 88, "video": 168},
                     layers=2, outputs=2),
}
MODES = {"classic": (0.0, 0.0), "emobed": (0.5, 0.5)}
BACKENDS = ("tensorflow", "jax", "torch")


def make_batch(size: dict, seed: int = 0) -> dict:
    """``{modality: {features, mask, label}}`` as the pipeline gives them."""
    rng = np.random.default_rng(seed)
    b, t = size["batch"], size["frames"]
    out = {}
    for m, d in size["dims"].items():
        lengths = np.full(b, t)
        if t > 1:
            lengths[-1] = int(t * 0.6)  # the last window of a recording is padded
        mask = np.arange(t)[None, :] < lengths[:, None]
        feats = rng.normal(size=(b, t, d)).astype(np.float32) * mask[..., None]
        if size["task"] == "classification":
            label = rng.integers(0, size["outputs"], b).astype(np.int32)
        else:
            label = (rng.uniform(-1, 1, (b, t, size["outputs"])) * mask[..., None]).astype(
                np.float32)
        out[m] = {"features": feats, "mask": mask, "label": label}
    return out


def worker(steps: int, rounds: int, sizes) -> dict:
    """Runs in the backend's own process: seconds per step of each size and mode."""
    import keras

    from emobed_tf.model.emobed import EmoBed

    out = {"device": device_name()}
    if os.environ.get("EMOBED_BENCH_MASKED_GRU"):  # the masked GRU loop torch ran before
        from emobed_tf.model import stacks

        stacks._is_prefix = lambda mask: False
    for name in sizes:
        size = SIZES[name]
        batch = make_batch(size)
        for mode, (alpha, beta) in MODES.items():
            data = batch if mode == "emobed" else {"audio": batch["audio"]}
            dims = size["dims"] if mode == "emobed" else {"audio": size["dims"]["audio"]}
            keras.utils.set_random_seed(0)
            model = EmoBed(size["task"], size["outputs"], dims, target="audio", alpha=alpha,
                           beta=beta, encoder_layers=size["layers"], encoder_units=120,
                           shared_layers=size["layers"], shared_units=120)
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
            def tile(n):  # n steps over the same batch
                return {m: {k: np.concatenate([v] * n) for k, v in d.items()}
                        for m, d in data.items()}

            def fit(tiled):
                t0 = time.perf_counter()
                hist = model.fit(tiled, batch_size=size["batch"], epochs=1, verbose=0,
                                 shuffle=False)
                return time.perf_counter() - t0, hist

            short, long_ = tile(2), tile(2 + steps)
            first, _ = fit(short)  # tracing / compilation
            times = []
            for _ in range(rounds):  # a fit's fixed cost cancels in the difference
                t_short, _ = fit(short)
                t_long, hist = fit(long_)
                times.append((t_long - t_short) / steps)
            loss = hist.history["loss"][-1]
            if not np.isfinite(loss):
                raise RuntimeError(f"{name} {mode}: the loss is {loss}")
            step = float(np.median(times))
            items = size["batch"] * len(data)
            out[f"{name}/{mode}"] = {"step_s": step, "items_per_s": items / step,
                                     "first_fit_s": first, "loss": float(loss)}
            print(f"  {keras.backend.backend():10s} {name:9s} {mode:8s} "
                  f"{step * 1000:8.1f} ms/step", file=sys.stderr, flush=True)
    return out


def device_name() -> str:
    """The device the current Keras backend computes on."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


def run_backend(backend: str, steps: int, rounds: int, sizes, masked_gru=False) -> dict:
    """The worker in a fresh process under ``backend``; ``{"error": ...}`` when it cannot run."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "EMOBED_BENCH_MASKED_GRU": "1" if masked_gru else ""}
    cmd = [sys.executable, "-m", "benchmarks.bench_backends", "--worker", "--steps", str(steps),
           "--rounds", str(rounds), "--sizes", ",".join(sizes)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode} (see stderr above)"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions() -> dict:
    out = {}
    for mod in ("keras", "tensorflow", "jax", "torch"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def markdown(result: dict) -> str:
    backends = [b for b in result["backends"] if "error" not in result["backends"][b]]
    devices = ", ".join(f"{b} on {result['backends'][b].get('device', '?')}" for b in backends)
    lines = ["# The EmoBed training step per Keras backend", "",
             f"Machine: {result['device']} ({devices}). Versions: "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v) + ".", "",
             "Milliseconds per training step (median over "
             f"{result['rounds']} rounds of the difference between a fit of "
             f"{result['steps'] + 2} steps and one of 2, divided by {result['steps']}, so a "
             "fit's fixed cost cancels; after a warm-up fit); "
             "in brackets the time relative to TensorFlow's (lower is faster). "
             "`first fit` is the warm-up fit of 2 steps: tracing (TensorFlow) or jit "
             "compilation (JAX) included.", "",
             "| size | step | " + " | ".join(backends) + " | "
             + " | ".join(f"first fit, {b}" for b in backends) + " |",
             "|---|---|" + "---|" * (2 * len(backends))]
    tf_res = result["backends"].get("tensorflow", {})
    for name in result["sizes"]:
        for mode in MODES:
            key = f"{name}/{mode}"
            cells, firsts = [], []
            for b in backends:
                r = result["backends"][b].get(key)
                if r is None:
                    cells.append("-")
                    firsts.append("-")
                    continue
                rel = (f" ({r['step_s'] / tf_res[key]['step_s']:.2f}x)"
                       if key in tf_res and b != "tensorflow" else "")
                cells.append(f"{r['step_s'] * 1000:.1f}{rel}")
                firsts.append(f"{r['first_fit_s']:.1f} s")
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " | "
                         + " | ".join(firsts) + " |")
    for b, r in result["backends"].items():
        if "error" in r:
            lines.append(f"\n{b}: not measured ({r['error']}).")
    lines += ["", "Sizes: " + "; ".join(
        f"`{n}` {s['task']}, {s['frames']} frame(s), batch {s['batch']} + {s['batch']}, "
        f"{s['layers']} + {s['layers']} GRU layers of 120, dims {s['dims']}"
        for n, s in SIZES.items() if n in result["sizes"]) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_backends",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    if args.worker:
        print(json.dumps(worker(args.steps, args.rounds, sizes)))
        return 0
    result = {"steps": args.steps, "rounds": args.rounds, "sizes": sizes,
              "versions": versions(), "backends": {}}
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    except ImportError:
        gpus = []
    result["device"] = (f"{os.cpu_count()} CPU cores" + (f", GPUs {gpus}" if gpus else
                                                        ""))
    for b in args.backends.split(","):
        if b != "tensorflow" and result["versions"].get(b) is None:
            result["backends"][b] = {"error": f"{b} is not installed"}
            continue
        print(f"{b}:", file=sys.stderr, flush=True)
        result["backends"][b] = run_backend(b, args.steps, args.rounds, sizes)
        if b == "torch" and "recola_4" in sizes:  # what GRUStack's unmasked form saves
            print("torch, masked GRU:", file=sys.stderr, flush=True)
            result["backends"]["torch, masked GRU"] = run_backend(
                b, args.steps, args.rounds, ["recola_4"], masked_gru=True)
    write("backends", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
