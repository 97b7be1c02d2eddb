"""What a training run costs against its arithmetic, measured as ratios in one run.

::

    python -m benchmarks.bench_run_cost --work $WORK [--parts dense,gru,study,demo]

Writes ``benchmarks/results/run_cost.{json,md}`` (parts measured earlier are kept, so the parts
can run one at a time; every ratio is of two figures of the same part, measured one after the
other on the same machine).

* ``dense``: the default dense run on the development corpus (RAVDESS, Whisper tiny.en
  table, fold 0 of 8: 18 training actors, 936 items of 768 values; 1 x 120 encoder, 1 x 120
  shared, batch 1024, 300 epochs, the last kept): ``emobed_tf.experiments.experiment.run``
  on the in-memory path (in a process that has trained before, as a study's worker has: TF
  import and the first run's start-up excluded), the same run streamed from the shards
  (``--cache none``, a checkpoint every epoch), the bare ``keras.Model.fit`` of the same MLP on
  numpy arrays, and the FLOP floor (the run's multiply-adds over this machine's measured
  float32 matrix-product rate at the same shapes); the whole ``python -m emobed_tf.train``
  process at this commit and at ``--before`` (a git worktree, the same interpreter).
* ``gru``: the GRU form at OMG sizes (1 + 1 GRU layers of 120, batches of 64, 88-d audio
  sequences of 20-60 frames, 640 training items, 10 epochs): the in-memory run, the streamed
  run and the bare ``fit`` of the same GRU stack on padded arrays.
* ``xla``: the dense run in memory with and without XLA (``jit_compile``).
* ``study``: the 216-run LOSO study (24 folds x 3 seeds x classic/joint/emobed, Whisper speech
  with the OpenFace AUs of the same clips as the auxiliary) through ``emobed_tf.crossval``
  with its default ``--jobs``; wall time of the runs trained.
* ``demo``: README command 1 (the crossval of the built-in demo) on a fresh output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.common import RESULTS, write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = os.path.join(ROOT, "..", "shared", "dev-data")
LABELS = "anger,disgust,fear,happiness,neutral,sadness,surprise"
RAVDESS_MAP = "calm=,angry=anger,fearful=fear,happy=happiness,sad=sadness,surprised=surprise"
FOLD0 = {"train": "03,04,05,06,07,08,11,12,13,14,15,16,19,20,21,22,23,24",
         "dev": "02,10,18", "test": "01,09,17"}  # fold 0 of speaker:8 (make_folds)
TABLES = {"whisper_table": ("ravdess_whisper/whisper_tiny_en_clip_stats.csv", "audio"),
          "ravdess_au": ("ravdess_video_au/au_clip_means.csv", "video")}


def extract_tables(work: str, dev: str) -> None:
    """The two tables as data folders (seconds; reused when present)."""
    for name, (table, modality) in TABLES.items():
        out = os.path.join(work, name)
        if os.path.isfile(os.path.join(out, "manifest.json")):
            continue
        subprocess.run([sys.executable, "-m", "tfrecords_tools.extract", "--corpus", "table",
                        "--table", os.path.join(dev, table), "--modality", modality,
                        "--label-map", RAVDESS_MAP, "--labels", LABELS, "--name", "ravdess",
                        "--out", out], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def train_argv(data: str, out: str) -> list:
    return ["--dataset", "custom", "--data-dir", data, "--mode", "classic", "--verbose", "0",
            "--train-speakers", FOLD0["train"], "--dev-speakers", FOLD0["dev"],
            "--test-speakers", FOLD0["test"], "--out", out]


def _cfg(data: str, out: str, **changes):
    from emobed_tf import configs

    cfg = configs.default_config("custom", out=out, data_dir=data, mode="classic", verbose=0)
    data_cfg = dataclasses.replace(cfg.data, train_speakers=tuple(FOLD0["train"].split(",")),
                                   dev_speakers=tuple(FOLD0["dev"].split(",")),
                                   test_speakers=tuple(FOLD0["test"].split(",")),
                                   **changes.pop("data", {}))
    return dataclasses.replace(cfg, data=data_cfg, **changes)


def timed_run(cfg) -> tuple:
    from emobed_tf.experiments import experiment

    shutil.rmtree(cfg.out, ignore_errors=True)
    t0 = time.perf_counter()
    res = experiment.run(cfg)
    return time.perf_counter() - t0, res


def matmul_rate(n: int, d: int, u: int) -> float:
    """float32 FLOP/s of this machine at the run's largest product, [n, d] @ [d, u], with
    TensorFlow (its own threads), median of 50 after a warm-up."""
    import tensorflow as tf

    a = tf.random.normal((n, d))
    w = tf.random.normal((d, u))
    f = tf.function(lambda: tf.linalg.matmul(a, w))
    for _ in range(5):
        f().numpy()
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        f().numpy()
        times.append(time.perf_counter() - t0)
    return 2.0 * n * d * u / float(np.median(times))


def bare_fit_dense(x, y, epochs: int, batch: int, units=120, dropout=0.5, l2=1e-2) -> float:
    import keras

    keras.utils.set_random_seed(0)
    reg = keras.regularizers.L2(l2)
    inp = keras.Input((x.shape[1],))
    h = keras.layers.Dropout(dropout)(inp)
    h = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg)(h)
    h = keras.layers.Dropout(dropout)(h)
    h = keras.layers.Dense(units, activation="relu", kernel_regularizer=reg)(h)
    out = keras.layers.Dense(int(y.max()) + 1, kernel_regularizer=reg)(h)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    return time.perf_counter() - t0


def worktree(commit: str, where: str) -> str:
    path = os.path.join(where, f"tree-{commit}")
    subprocess.run(["git", "worktree", "add", "--detach", "-f", path, commit], cwd=ROOT,
                   check=True, capture_output=True)
    return path


def whole_process(cwd: str, data: str, out: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emobed_tf.train", *train_argv(data, out)], cwd=cwd,
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def part_dense(work: str, before: str) -> dict:
    from emobed_tf.experiments import experiment

    data = os.path.join(work, "whisper_table")
    cfg = experiment.resolve_config(_cfg(data, os.path.join(work, "runs", "fast")),
                                    experiment.resolve_sources(_cfg(data, "unused")))
    sources = experiment.resolve_sources(cfg)
    splits = experiment.load_memory_splits(cfg, sources)
    train = splits["audio", "train"]
    x, y = train.features[:, 0], train.label
    n, d = x.shape
    units, k = cfg.model.encoder_units, int(y.max()) + 1
    macs = n * (d * units + units * units + units * k)
    flops = 3 * 2 * macs * cfg.epochs  # forward + backward (twice the forward)
    rate = matmul_rate(n, d, units)
    floor = flops / rate
    out = {"items": n, "dim": d, "epochs": cfg.epochs, "batch_size": cfg.data.batch_size,
           "tflop": flops / 1e12, "matmul_gflops": rate / 1e9, "flop_floor_s": floor}
    first, res = timed_run(cfg)  # the first run of a process: tracing the runtime's functions
    out["fast_first_s"] = first
    out["fast_s"], res = timed_run(cfg)  # a study's worker: a process that trained before
    out["fast_test_f1"] = res["test"]["f1_macro"]
    out["bare_fit_s"] = bare_fit_dense(x, y, cfg.epochs, cfg.data.batch_size, units,
                                       cfg.model.dense_dropout, cfg.loss.dense_l2)
    streamed = dataclasses.replace(cfg, out=os.path.join(work, "runs", "streamed"),
                                   checkpoint_every=1,
                                   data=dataclasses.replace(cfg.data, cache="none"))
    out["streamed_s"], res = timed_run(streamed)
    out["streamed_test_f1"] = res["test"]["f1_macro"]
    # where the fast run's time goes: the same run with a profile of its parts
    out["profile"] = profile_run(cfg)
    with tempfile.TemporaryDirectory(prefix="emobed-bench-") as tmp:
        out["process_s"] = whole_process(ROOT, data, os.path.join(tmp, "now"))
        if before:
            tree = worktree(before, tmp)
            try:
                out["process_before_s"] = whole_process(tree, data, os.path.join(tmp, "before"))
                out["before"] = before
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT,
                               capture_output=True)
    return out


def profile_run(cfg) -> dict:
    """Seconds of the fast run's parts (cProfile's cumulative times of the named calls)."""
    import cProfile
    import pstats

    from emobed_tf.experiments import experiment

    shutil.rmtree(cfg.out, ignore_errors=True)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    experiment.run(cfg)
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats
    wanted = {"reading the data into memory": ("experiment.py", "load_memory_splits"),
              "fit (all epochs)": ("trainer.py", "fit"),
              "train steps": ("trainer.py", "function"),
              "tracing tf.functions": ("polymorphic_function.py", "_initialize"),
              "epoch-end callbacks (dev scoring, checkpoints)": ("callback_list.py",
                                                                 "on_epoch_end"),
              "epoch metric results": ("trainer.py", "get_metrics_result"),
              "final save and scoring": ("experiment.py", "memory_score_run")}
    out = {"total (profiled)": total}
    for name, (file, func) in wanted.items():
        out[name] = max((v[3] for (f, _, fn), v in stats.items()
                         if f.endswith(file) and fn == func), default=0.0)
    return out


def part_xla(work: str) -> dict:
    """The dense run in memory with and without XLA (``jit_compile``), alternated twice."""
    from emobed_tf.experiments import experiment

    data = os.path.join(work, "whisper_table")
    cfg = _cfg(data, os.path.join(work, "runs", "xla"))
    real = experiment.build_model
    times = {"graph": [], "xla": []}
    timed_run(cfg)  # warm-up: the process's first run
    for _ in range(2):
        for kind in ("graph", "xla"):
            def build(c, sources, jit=kind == "xla"):
                model = real(c, sources)
                model.jit_compile = jit
                return model

            experiment.build_model = build
            try:
                seconds, res = timed_run(cfg)
            finally:
                experiment.build_model = real
            times[kind].append(seconds)
            times[f"{kind}_test_f1"] = res["test"]["f1_macro"]
    return {k: (min(v) if isinstance(v, list) else v) for k, v in times.items()}


def part_gru(work: str) -> dict:
    import keras

    from emobed_tf import configs
    from emobed_tf.records.schema import Item
    from emobed_tf.records.writer import DatasetWriter

    data = os.path.join(work, "gru_omg")
    if not os.path.isfile(os.path.join(data, "manifest.json")):
        rng = np.random.default_rng(0)
        with DatasetWriter(data, "bench", "classification", [str(i) for i in range(7)],
                           {"audio": 88}) as w:
            for split, m in (("train", 640), ("dev", 64), ("test", 64)):
                for i in range(m):
                    t = int(rng.integers(20, 61))
                    c = int(rng.integers(7))
                    x = rng.normal(size=(t, 88)).astype(np.float32) + 0.3 * c
                    w.add(Item("audio", x, c, recording=f"{split}{i}", speaker=f"s{i % 8}",
                               split=split))
    base = configs.default_config("omg", out=os.path.join(work, "runs", "gru_fast"),
                                  data_dir=data, mode="classic", verbose=0, epochs=10)
    base = dataclasses.replace(base, model=dataclasses.replace(
        base.model, encoder_type="gru", encoder_layers=1, shared_layers=1),
        data=dataclasses.replace(base.data, batch_size=64), select_on="last")
    out = {"items": 640, "epochs": 10, "batch_size": 64}
    timed_run(base)  # warm-up: the worker's first run
    out["fast_s"], res = timed_run(base)
    out["fast_test_f1"] = res["test"]["f1_macro"]
    streamed = dataclasses.replace(base, out=os.path.join(work, "runs", "gru_streamed"),
                                   checkpoint_every=1,
                                   data=dataclasses.replace(base.data, cache="none"))
    out["streamed_s"], res = timed_run(streamed)
    out["streamed_test_f1"] = res["test"]["f1_macro"]
    # the bare fit: the same GRU stack on padded arrays (mask from zero padding)
    from emobed_tf.data.memory import load_split
    from emobed_tf.data.source import Source

    split = load_split(Source.open(data), "audio", "train")
    keras.utils.set_random_seed(0)
    inp = keras.Input((split.features.shape[1], 88))
    h = keras.layers.Masking()(inp)
    h = keras.layers.GRU(120, return_sequences=True)(h)
    h = keras.layers.GRU(120)(h)
    model = keras.Model(inp, keras.layers.Dense(7)(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    t0 = time.perf_counter()
    model.fit(split.features, split.label, batch_size=64, epochs=10, verbose=0)
    out["bare_fit_s"] = time.perf_counter() - t0
    return out


def part_study(work: str) -> dict:
    out_dir = os.path.join(work, "loso_study")
    argv = [sys.executable, "-m", "emobed_tf.crossval", "--dataset", "custom",
            "--audio-dir", os.path.join(work, "whisper_table"),
            "--video-dir", os.path.join(work, "ravdess_au"), "--target", "audio",
            "--folds", "loso", "--seeds", "0,1,2", "--modes", "classic,joint,emobed",
            "--out", out_dir]
    done_before = len([p for p in _run_folders(out_dir) if os.path.isfile(p)])
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    summary = json.load(open(os.path.join(out_dir, "crossval.json")))
    jobs_line = next((ln for ln in proc.stdout.splitlines() if "parallel jobs" in ln), "")
    return {"runs": 216, "trained_now": 216 - done_before, "seconds": seconds,
            "jobs": jobs_line, "cores": os.cpu_count(),
            "means": {m: r["f1_macro_mean"] for m, r in summary["systems"].items()},
            "argv": " ".join(argv[3:]).replace(work, "$WORK"),
            "per_system": study_breakdown(out_dir)}


def study_breakdown(out_dir: str) -> dict:
    """Per system: the runs' mean training seconds (``train_seconds_this_session``, in a
    worker beside the other) and the mean whole-run wall time is the study's / runs x jobs."""
    per = {}
    for path in _run_folders(out_dir):
        system = os.path.basename(os.path.dirname(os.path.dirname(path)))
        with open(path) as fh:
            per.setdefault(system, []).append(json.load(fh)["train_seconds_this_session"])
    return {m: {"runs": len(v), "mean_train_s": float(np.mean(v))} for m, v in sorted(per.items())}


def _run_folders(out_dir):
    import glob

    return glob.glob(os.path.join(out_dir, "runs", "*", "*", "metrics.json"))


def part_demo(work: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="emobed-demo-") as tmp:
        argv = [sys.executable, "-m", "emobed_tf.crossval", "--dataset", "demo", "--folds",
                "speaker:4", "--seeds", "0,1", "--modes", "classic,emobed", "--out",
                os.path.join(tmp, "demo")]
        env = {**os.environ, "EMOBED_TF_CACHE": os.path.join(tmp, "cache")}  # as a new user
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        summary = json.load(open(os.path.join(tmp, "demo", "crossval.json")))
    test = summary["systems"]["emobed"]["f1_macro_vs_classic"]
    return {"seconds": seconds, "emobed_vs_classic": test, "command": "python -m emobed_tf.crossval --dataset demo "
            "--folds speaker:4 --seeds 0,1 --modes classic,emobed --out runs/demo",
            "means": {m: r["f1_macro_mean"] for m, r in summary["systems"].items()},
            "note": "the demo corpus generated on this first use, as for a new user"}


def markdown(res: dict) -> str:
    lines = ["# What a training run costs against its arithmetic", "",
             "`python -m benchmarks.bench_run_cost` on this project's 2-core CPU machine; "
             "every ratio compares two figures of one part, measured one after the other.", ""]
    d = res.get("dense")
    if d:
        lines += [f"## The dense default on RAVDESS Whisper features (fold 0: {d['items']} items "
                  f"x {d['dim']}, batch {d['batch_size']}, {d['epochs']} epochs)", "",
                  "| measure | seconds | ratio | target |", "|---|---|---|---|",
                  f"| FLOP floor: {d['tflop']:.3f} TFLOP at {d['matmul_gflops']:.0f} GFLOP/s "
                  f"(TensorFlow matmul at the run's shape) | {d['flop_floor_s']:.2f} | 1.0x | |",
                  f"| bare `keras.Model.fit`, same MLP, numpy arrays | {d['bare_fit_s']:.1f} | "
                  f"{d['bare_fit_s'] / d['flop_floor_s']:.1f}x floor | |",
                  f"| `experiment.run`, in memory, a worker's later run (test F1 "
                  f"{d['fast_test_f1']:.4f}) | {d['fast_s']:.1f} | "
                  f"**{d['fast_s'] / d['bare_fit_s']:.2f}x bare fit**, "
                  f"**{d['fast_s'] / d['flop_floor_s']:.1f}x floor** | <= 1.0x bare fit, "
                  "<= 3x floor |",
                  f"| `experiment.run`, in memory, a process's first run | "
                  f"{d['fast_first_s']:.1f} | {d['fast_first_s'] / d['bare_fit_s']:.2f}x bare "
                  "fit | |",
                  f"| `experiment.run`, streamed (`--cache none`, checkpoint every epoch; test "
                  f"F1 {d['streamed_test_f1']:.4f}) | {d['streamed_s']:.1f} | "
                  f"{d['streamed_s'] / d['fast_s']:.1f}x in memory | |",
                  f"| `python -m emobed_tf.train`, whole process, this commit | "
                  f"{d['process_s']:.1f} | | |"]
        if "process_before_s" in d:
            lines.append(f"| the same at {d['before']} | {d['process_before_s']:.1f} | "
                         f"{d['process_before_s'] / d['process_s']:.1f}x this commit | |")
        lines += ["", "Where the in-memory run's time goes (cProfile, cumulative seconds; "
                  "parts overlap: the train steps and tracing are inside fit):", "",
                  "| part | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in d["profile"].items()]
        lines.append("")
    x = res.get("xla")
    if x:
        lines += ["## XLA", "",
                  f"The same dense run in memory, best of two alternated: graph "
                  f"{x['graph']:.1f} s (test F1 {x['graph_test_f1']:.4f}), XLA (`jit_compile`) "
                  f"{x['xla']:.1f} s (test F1 {x['xla_test_f1']:.4f}): "
                  f"**{x['xla'] / x['graph']:.2f}x**. The package compiles without XLA"
                  + (" (it loses here)." if x["xla"] > x["graph"] else "."), ""]
    g = res.get("gru")
    if g:
        lines += [f"## The GRU form at OMG sizes ({g['items']} sequences of 20-60 frames x 88, "
                  f"batch {g['batch_size']}, {g['epochs']} epochs)", "",
                  "| measure | seconds | ratio |", "|---|---|---|",
                  f"| bare `fit` of the same GRU stack, padded arrays | {g['bare_fit_s']:.1f} | "
                  "1.0x |",
                  f"| `experiment.run`, in memory (test F1 {g['fast_test_f1']:.4f}) | "
                  f"{g['fast_s']:.1f} | {g['fast_s'] / g['bare_fit_s']:.2f}x bare fit |",
                  f"| `experiment.run`, streamed (test F1 {g['streamed_test_f1']:.4f}) | "
                  f"{g['streamed_s']:.1f} | {g['streamed_s'] / g['fast_s']:.2f}x in memory |",
                  ""]
    s = res.get("study")
    if s:
        lines += ["## A 216-run LOSO study", "",
                  f"`python -m emobed_tf.crossval {s['argv']}`: {s['trained_now']} runs "
                  f"trained in **{s['seconds'] / 60:.1f} minutes** (target: 20); "
                  f"{s['jobs'].strip()}. Mean test macro-F1: "
                  + ", ".join(f"{m} {v:.4f}" for m, v in s["means"].items()) + "."]
        if s.get("per_system"):
            lines += ["", "Where the time goes: each system's mean training time per run (in "
                      "a worker, beside the other worker): "
                      + ", ".join(f"{m} {v['mean_train_s']:.1f} s" for m, v in
                                  s["per_system"].items())
                      + ". The crossmodal batch-hard triplet term (a 2,048 x 2,048 distance "
                      "matrix mined every step, 600 steps) is most of EmoBed's extra time; "
                      "the rest is the arithmetic of the MLP itself."]
        lines += [""]
    m = res.get("demo")
    if m:
        lines += ["## README command 1", "",
                  f"`{m['command']}`: **{m['seconds']:.0f} s** after the installation (target: "
                  f"under 180 s; {m['note']}). Mean test macro-F1: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in m["means"].items())
                  + (f"; EmoBed - classic {100 * m['emobed_vs_classic']['mean_diff']:+.2f} "
                     f"points, {m['emobed_vs_classic']['wins']}/"
                     f"{m['emobed_vs_classic']['losses']} fold x seed pairs, Wilcoxon p "
                     f"{m['emobed_vs_classic']['p_wilcoxon']:.2f}, sign p "
                     f"{m['emobed_vs_classic']['p_sign']:.2f}" if "emobed_vs_classic" in m
                     else "") + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_run_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="folder for data and runs (outside git)")
    p.add_argument("--dev-data", default=DEV)
    p.add_argument("--parts", default="dense,xla,gru,study,demo")
    p.add_argument("--before", default="3ce9bd5",
                   help="the commit whose whole train process is timed beside this one's")
    args = p.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    extract_tables(args.work, args.dev_data)
    path = os.path.join(RESULTS, "run_cost.json")
    res = {}
    if os.path.isfile(path):
        res = {k: v for k, v in json.load(open(path)).items() if k != "machine"}
    for part in [x for x in args.parts.split(",") if x]:
        print(f"measuring {part} ...", flush=True)
        if part == "dense":
            res["dense"] = part_dense(args.work, args.before)
        elif part == "gru":
            res["gru"] = part_gru(args.work)
        elif part == "xla":
            res["xla"] = part_xla(args.work)
        elif part == "study":
            res["study"] = part_study(args.work)
        elif part == "demo":
            res["demo"] = part_demo(args.work)
        else:
            p.error(f"unknown part {part!r}")
        write("run_cost", res, markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
