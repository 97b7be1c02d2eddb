"""Many runs side by side: the ``--jobs`` of ``crossval``, ``sweep``, ``compare`` and tuning.

:func:`run_many` trains (or reuses) a list of run configurations. With
``jobs`` > 1 the runs that are not finished yet go to a pool of worker
processes (``spawn``: each imports TensorFlow once and trains run after run,
clearing Keras' session in between); each run is still
:func:`emobed_tf.experiments.experiment.run_or_reuse`, so it writes and
resumes its own run folder exactly as alone, and a seeded run gives the same
numbers in a worker as alone (measured: the same loss and scores with 1 or
2 intra-op threads, and after another run in the same process;
``tests/test_runner.py``).

How many jobs :func:`default_jobs` chooses: one per CPU core this process
may use (``os.sched_getaffinity``), at most one per 2 GiB of available
memory, at most the number of runs, and 1 when a GPU is visible (one
device, one trainer). Each worker then uses ``cores // jobs`` intra-op
threads, so the jobs never oversubscribe the cores: on a small dense model
two one-thread processes train faster than one two-thread process.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time

from emobed_tf.experiments.rundir import RunDir, RunError

WORKER_MEMORY_GIB = 2.0  # one worker's TensorFlow process, measured about 1 GiB on the dev set


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_gib() -> float:
    """Memory available to new processes (``MemAvailable``), or infinity when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return float("inf")


def gpu_visible() -> bool:
    """Whether a CUDA device is visible (without importing a framework)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")


def default_jobs(n_runs: int) -> int:
    """The ``--jobs`` default (``0``/auto): see the module docstring.

    >>> default_jobs(1)
    1
    """
    if gpu_visible():
        return 1
    by_memory = max(1, int(available_gib() // WORKER_MEMORY_GIB))
    return max(1, min(n_runs, usable_cores(), by_memory))


def resolve_jobs(jobs: int, n_runs: int) -> int:
    """``jobs`` as given (at most one per run), or :func:`default_jobs` for 0."""
    if jobs < 0:
        raise ValueError(f"--jobs must be >= 0 (0: auto), got {jobs}")
    return max(1, min(jobs, n_runs)) if jobs else default_jobs(n_runs)


def _worker_init(threads: int, backend: str) -> None:
    os.environ["KERAS_BACKEND"] = backend
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the frameworks' start-up chatter
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import logging

    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _train(cfg, overwrite: bool):
    """One run in a worker process; the worker's Keras state is cleared afterwards."""
    from emobed_tf.experiments import experiment

    t0 = time.time()
    try:
        return experiment.run_or_reuse(cfg, overwrite)[0], time.time() - t0
    finally:
        import keras

        keras.backend.clear_session()


def _clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``).

    >>> _clock(75), _clock(3725)
    ('1:15', '1:02:05')
    """
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class Progress:
    """The study's progress: one line per run, ``[done/total]``, elapsed time and an estimate
    of the time left (from the runs trained so far and the jobs running)."""

    def __init__(self, total: int, jobs: int, log=print):
        self.total, self.jobs, self.log = total, jobs, log
        self.done = self.trained = 0
        self.t0 = time.time()

    def __call__(self, label: str, text: str, reused: bool, seconds: float = 0.0) -> None:
        self.done += 1
        elapsed = time.time() - self.t0
        if not reused:
            self.trained += 1
        left = self.total - self.done
        if self.trained and left:
            eta = f", ETA {_clock(elapsed / self.trained * left)}"
        else:
            eta = "" if not left else ", ETA -"
        how = "reused" if reused else f"{seconds:.0f} s"
        self.log(f"[{self.done}/{self.total}] {label}: {text} ({how}); elapsed "
                 f"{_clock(elapsed)}{eta}")


def run_many(cfgs, overwrite: bool = False, jobs: int = 1, labels=None, describe=None,
             log=print) -> list:
    """Trains (or reuses) every configuration of ``cfgs``; returns their ``metrics.json``
    contents in the same order.

    ``labels``: each run's name in the progress lines (default: its run folder);
    ``describe(metrics)`` the text after it (default: the headline test score); ``jobs``: worker processes (0: :func:`default_jobs`; 1: in this
    process, one run after the other). A run that fails, or Ctrl-C, stops the study: the
    runs under way are interrupted (their last checkpoint kept), the error is raised.
    """
    from emobed_tf.experiments import experiment

    cfgs = list(cfgs)
    results = [None] * len(cfgs)
    todo = [i for i, c in enumerate(cfgs) if overwrite or not RunDir(c.out).finished]
    jobs = resolve_jobs(jobs, max(len(todo), 1))
    describe = describe or _describe
    labels = list(labels) if labels is not None else [c.out for c in cfgs]
    progress = Progress(len(cfgs), jobs, log)
    for i, c in enumerate(cfgs):  # finished runs: reused here, checked against their settings
        if i not in todo:
            results[i] = experiment.run_or_reuse(c, False)[0]
            progress(labels[i], describe(results[i]), True)
    if jobs <= 1 or len(todo) <= 1:
        for i in todo:
            t0 = time.time()
            results[i] = experiment.run_or_reuse(cfgs[i], overwrite)[0]
            progress(labels[i], describe(results[i]), False, time.time() - t0)
        return results
    threads = max(1, usable_cores() // jobs)
    log(f"{len(todo)} runs to train in {jobs} parallel jobs ({threads} thread"
        f"{'s' if threads > 1 else ''} each)")
    ctx = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=ctx, initializer=_worker_init,
        initargs=(threads, cfgs[todo[0]].backend))
    try:
        futures = {pool.submit(_train, cfgs[i], overwrite): i for i in todo}
        for fut in concurrent.futures.as_completed(futures):
            i = futures[fut]
            try:
                results[i], seconds = fut.result()  # a failed run raises here
            except concurrent.futures.process.BrokenProcessPool:
                raise RunError(f"{cfgs[i].out}: a worker process ended abruptly (killed, or "
                               "out of memory?); rerun the same command to resume, with a "
                               "smaller --jobs if memory ran out") from None
            progress(labels[i], describe(results[i]), False, seconds)
    except BaseException:
        _interrupt(pool)  # the runs under way stop after their last checkpoint
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def _interrupt(pool) -> None:
    """Sends SIGINT to the pool's worker processes: each run under way stops with a
    KeyboardInterrupt, its last checkpoint kept (a rerun resumes it)."""
    import signal

    for proc in list(getattr(pool, "_processes", {}).values()):
        if proc.is_alive():
            try:
                os.kill(proc.pid, signal.SIGINT)
            except OSError:
                pass


def _describe(metrics: dict) -> str:
    """``test <headline score> <value>`` (dev when the run has no test split)."""
    split = "test" if "test" in metrics else "dev"
    key = metrics["headline"][0]
    return f"{split} {key} {metrics[split][key]:.4f}"
