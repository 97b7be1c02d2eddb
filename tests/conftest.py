"""Shared fixtures: tiny data sets written through the real writer, and finished runs.

Training is what a test costs (tf.function tracing, several seconds a run), so the
train, evaluate, export and serving tests share a few runs, each trained once per
session through the real CLI (``emobed_tf.train.main``):

* ``cls_run``: emobed, classification, audio target (3 epochs);
* ``classic_run``: classic mode, trained on an audio-only copy of the same audio items
  (classic mode needs no auxiliary data);
* ``reg_run``: emobed, regression, video target (2 epochs);
* ``finished_search``: a one-trial ``tuning.search``.

They are read-only: a test that changes a run folder works on ``run.copy(tmp_path / x)``.
Each fixture checks at the end of the session that its folder is unchanged.

A few tests check what other Python processes do (other Keras backends, two training
workers, the cross-validation CLI): their session fixtures start the processes when the first
test needs them, and stop any still running at the end of the session. (Running them beside
the session instead saved 25 s of 731 on 2 cores, 1.04x: ``benchmarks/results/test_time.md``.)
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# studies in tests train their runs one after the other in the test's own process (the test
# processes already share the cores; tests/test_runner.py starts worker pools itself)
os.environ.setdefault("EMOBED_JOBS", "1")

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from emobed_tf.records.schema import Item  # noqa: E402
from emobed_tf.records.writer import DatasetWriter  # noqa: E402

CLASSES = ("a", "b", "c")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory):
    os.environ["EMOBED_TF_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def write_classification(out, n=(24, 12, 12), dims=None, seed=0, max_shard_bytes=4000,
                         lengths=(1, 5), compression=""):
    """Class-separable toy corpus: class c shifts the features by c.

    The items of a modality do not depend on which other modalities are written
    (audio is drawn first): ``dims={"audio": 6}`` gives the same audio items.
    """
    dims = dims or {"audio": 6, "video": 10}
    rng = np.random.default_rng(seed)
    items = []
    with DatasetWriter(str(out), "toy", "classification", CLASSES, dims,
                       max_shard_bytes=max_shard_bytes, compression=compression) as w:
        for mod, d in dims.items():
            for split, count in zip(("train", "dev", "test"), n):
                for i in range(count):
                    c = i % 3
                    t = int(rng.integers(lengths[0], lengths[1] + 1))
                    x = rng.normal(size=(t, d)) + 2.0 * c
                    it = Item(mod, x.astype(np.float32), label_class=c, corpus="toy",
                              speaker=f"s{i % 4}", recording=f"{mod}-{split}-{i}", split=split)
                    w.add(it)
                    items.append(it)
    return w.manifest, items


def write_regression(out, n=(3, 2, 2), frames=(50, 80), dims=None, seed=0):
    dims = dims or {"audio": 5, "video": 7}
    rng = np.random.default_rng(seed)
    items = []
    with DatasetWriter(str(out), "toyreg", "regression", ("arousal", "valence"), dims) as w:
        for mod, d in dims.items():
            for split, count in zip(("train", "dev", "test"), n):
                for i in range(count):
                    t = int(rng.integers(frames[0], frames[1] + 1))
                    lab = np.tanh(np.cumsum(rng.normal(scale=0.2, size=(t, 2)), 0))
                    x = np.concatenate([lab, rng.normal(size=(t, d - 2))], 1) * 3 + 1
                    it = Item(mod, x.astype(np.float32), label_dims=lab.astype(np.float32),
                              corpus="toyreg", speaker=f"s{i}", recording=f"{mod}-{split}-{i}",
                              split=split)
                    w.add(it)
                    items.append(it)
    return w.manifest, items


@pytest.fixture
def cls_data(tmp_path):
    manifest, items = write_classification(tmp_path / "cls")
    return str(tmp_path / "cls"), manifest, items


@pytest.fixture
def reg_data(tmp_path):
    manifest, items = write_regression(tmp_path / "reg")
    return str(tmp_path / "reg"), manifest, items


# --------------------------------------------------------------------------
# helpers


def tree_hashes(folder, skip=(".lock",)):
    """sha256 of every file under ``folder`` by relative path (names in ``skip`` aside)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name in skip:
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def train_cli(argv) -> str:
    """Runs ``emobed_tf.train.main(argv)``, asserts it succeeded; its stdout."""
    from emobed_tf import train

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = train.main(list(argv))
    assert code == 0, out.getvalue()[-2000:]
    return out.getvalue()


def saved_predictions(run_dir, split, modality=None):
    """The saved model's predictions on ``split``, with the run's own pipeline options."""
    from emobed_tf.data import source
    from emobed_tf.experiments import experiment
    from emobed_tf.experiments.scoring import predict_split
    from emobed_tf.experiments.rundir import RunDir

    rd = RunDir(str(run_dir))
    cfg, model = rd.config(), rd.load_model()
    modality = modality or cfg.target
    sources = experiment.resolve_sources(cfg)  # as training opened them (demo corpora, speaker folds)
    src = sources.get(modality) or source.Source.open(getattr(cfg, f"{modality}_dir") or cfg.data_dir)
    return predict_split(model, src, modality, split, cfg.data.eval_batch_size,
                         experiment.pipeline_options(cfg, src.manifest))


def sklearn_scores(p):
    """Macro-F1 (over the classes in gold or prediction) and accuracy, by scikit-learn."""
    from sklearn import metrics as skm

    gold, pred = np.asarray(p.gold), np.asarray(p.pred).argmax(-1)
    labels = sorted(set(gold) | set(pred))
    return {"f1_macro": skm.f1_score(gold, pred, average="macro", labels=labels),
            "accuracy": skm.accuracy_score(gold, pred), "n": len(gold)}


def numpy_softmax(logits):
    """Probabilities of logits along the last axis."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def numpy_ccc(gold, pred):
    """Lin's concordance correlation coefficient, from its definition."""
    gold, pred = np.asarray(gold, np.float64), np.asarray(pred, np.float64)
    cov = np.mean((gold - gold.mean()) * (pred - pred.mean()))
    return 2 * cov / (gold.var() + pred.var() + (gold.mean() - pred.mean()) ** 2)


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """A run trained once per session; read-only (``copy`` it to change it)."""

    path: str
    data_dir: str
    argv: tuple
    stdout: str = ""

    def copy(self, dest) -> str:
        shutil.copytree(self.path, str(dest))
        return str(dest)


@contextlib.contextmanager
def _kept_pristine(folder, what):
    before = tree_hashes(folder)
    yield
    after = tree_hashes(folder)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"a test changed the shared {what} {folder}: {changed}"


def _train_args(data_dir, out, *extra):
    return ("--dataset", "custom", "--data-dir", str(data_dir), "--out", str(out),
            "--batch-size", "8", "--encoder-units", "8", "--shared-units", "8",
            "--verbose", "0", *extra)


# --------------------------------------------------------------------------
# shared data and runs (session)


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="session")
def shared_cls_data(shared_root):
    """Read-only: ``write_classification``'s default corpus (audio and video)."""
    manifest, items = write_classification(shared_root / "cls")
    return str(shared_root / "cls"), manifest, items


@pytest.fixture(scope="session")
def cls_run(shared_root, shared_cls_data):
    """emobed, audio target, alpha 0.4, beta 0.2, 3 epochs, default layer counts."""
    argv = _train_args(shared_cls_data[0], shared_root / "cls-emobed", "--epochs", "3",
                       "--mode", "emobed", "--alpha", "0.4", "--beta", "0.2")
    stdout = train_cli(argv)
    run = FinishedRun(str(shared_root / "cls-emobed"), shared_cls_data[0], argv, stdout)
    with _kept_pristine(run.path, "run"):
        yield run


@pytest.fixture(scope="session")
def classic_run(shared_root):
    """classic mode, 1 epoch, on an audio-only corpus (the audio items of ``cls_run``'s)."""
    data = shared_root / "cls-audio-only"
    write_classification(data, dims={"audio": 6})
    argv = _train_args(data, shared_root / "cls-classic", "--epochs", "1", "--mode", "classic",
                       "--encoder-layers", "1", "--shared-layers", "1")
    stdout = train_cli(argv)
    run = FinishedRun(str(shared_root / "cls-classic"), str(data), argv, stdout)
    with _kept_pristine(run.path, "run"):
        yield run


@pytest.fixture(scope="session")
def reg_run(shared_root):
    """emobed regression, video target, 2 epochs, one GRU layer each."""
    data = shared_root / "reg"
    write_regression(data)
    argv = _train_args(data, shared_root / "reg-emobed", "--epochs", "2", "--mode", "emobed",
                       "--target", "video", "--encoder-layers", "1", "--shared-layers", "1")
    stdout = train_cli(argv)
    run = FinishedRun(str(shared_root / "reg-emobed"), str(data), argv, stdout)
    with _kept_pristine(run.path, "run"):
        yield run


def search_args(data_dir, directory, *extra, trials=1):
    return ["--dataset", "custom", "--data-dir", str(data_dir), "--tuner", "random",
            "--max-trials", str(trials), "--epochs", "1", "--out", str(directory),
            "--verbose", "0", "--batch-size", "8", "--seed", "3", *extra]


@pytest.fixture(scope="session")
def search_data(shared_root):
    """Read-only: a smaller classification corpus for the searches."""
    write_classification(shared_root / "search-data", n=(12, 6, 6))
    return str(shared_root / "search-data")


@pytest.fixture(scope="session")
def finished_search(shared_root, search_data):
    """A finished one-trial random search (audio target, emobed mode, seed 3)."""
    from tuning import search

    directory = str(shared_root / "search")
    with contextlib.redirect_stdout(io.StringIO()):
        assert search.main(search_args(search_data, directory)) == 0
    with _kept_pristine(directory, "search"):
        yield directory


# --------------------------------------------------------------------------
# other processes


def child_env(**extra):
    """The environment of a Python process started by a test (this checkout importable)."""
    return {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "", **extra}


class OutsideProcess:
    """Another Python process, started now; its output goes to files (a full pipe would
    stall it)."""

    def __init__(self, argv, folder, name, env=None):
        self.argv, self.env = list(argv), env or child_env()
        self.out_path = os.path.join(str(folder), f"{name}.out")
        self.err_path = os.path.join(str(folder), f"{name}.err")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=err, cwd=ROOT,
                                         env=self.env)

    def wait(self, timeout=600):
        """(returncode, stdout, stderr) once it has ended."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        with open(self.out_path) as out, open(self.err_path) as err:
            return code, out.read(), err.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def _stopped_at_the_end(started):
    try:
        yield started
    finally:
        for proc in started["procs"].values():
            proc.stop()


@pytest.fixture(scope="session")
def other_backends(tmp_path_factory):
    """tests/test_backends.py's processes (training runs and steps under JAX and torch)."""
    from tests.test_backends import start_other_backends

    with _stopped_at_the_end(start_other_backends(tmp_path_factory.mktemp("backends"))) \
            as started:
        yield started


@pytest.fixture(scope="session")
def crossval_process(tmp_path_factory):
    """tests/test_crossval.py's ``python -m emobed_tf.crossval`` run."""
    from tests.test_crossval import start_crossval

    with _stopped_at_the_end(start_crossval(tmp_path_factory.mktemp("cv"))) as started:
        yield started


@pytest.fixture(scope="session")
def two_workers(tmp_path_factory):
    """tests/test_distribute.py's two training workers on loopback."""
    from tests.test_distribute import start_two_workers

    with _stopped_at_the_end(start_two_workers(tmp_path_factory.mktemp("workers"))) as started:
        yield started
