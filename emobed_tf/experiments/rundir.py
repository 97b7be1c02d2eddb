"""A run folder: the only place that knows its files, how they are written and its state.

::

    config.json          the full TrainConfig
    manifests/           the data manifests used (statistics for export)
    checkpoints/         last.keras, best.keras, state.json (resume state)
    logs/                TensorBoard logs
    model.keras          the best model (by the target modality's dev score)
    history.json         per-epoch logs
    metrics.json         dev/test scores of the target modality alone (written last:
                         its presence means the run finished)
    postprocess.json     regression: the AVEC 2016 chain fitted on dev (by evaluate)
    report/              evaluate's report and figures

Every file is written atomically (:mod:`emobed_tf.io`), so an interrupted
run holds the last complete epoch, which a rerun resumes from.

>>> import tempfile
>>> run = RunDir(tempfile.mkdtemp())
>>> run.finished, run.resume_state() is None
(False, True)
>>> run.write_metrics({"test": {"f1_macro": 0.5}})
>>> run.finished, run.metrics()["test"]["f1_macro"]
(True, 0.5)
"""

from __future__ import annotations

import json
import os
import shutil

from emobed_tf import configs, fingerprint
from emobed_tf import io
from emobed_tf.errors import EmobedError


class RunError(EmobedError, RuntimeError):
    """A problem with the run folder (finished run, other settings, diverged)."""


# a resume may train for longer; when checkpoints are written never changes what is learnt
IGNORED_FOR_RESUME = ("epochs", "verbose", "out", "checkpoint_every")
IGNORED_FOR_REUSE = ("verbose", "out", "checkpoint_every")  # reused only as it was trained


class RunDir:
    """The files of one training run under ``path``."""

    CONFIG = "config.json"
    MANIFESTS = "manifests"
    CHECKPOINTS = "checkpoints"
    LOGS = "logs"
    MODEL = "model.keras"
    HISTORY = "history.json"
    METRICS = "metrics.json"
    POSTPROCESS = "postprocess.json"
    REPORT = "report"

    def __init__(self, path: str):
        self.path = path

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"

    def file(self, *parts) -> str:
        return os.path.join(self.path, *parts)

    # -- paths ------------------------------------------------------------------
    @property
    def config_path(self) -> str:
        return self.file(self.CONFIG)

    @property
    def model_path(self) -> str:
        return self.file(self.MODEL)

    @property
    def metrics_path(self) -> str:
        return self.file(self.METRICS)

    @property
    def postprocess_path(self) -> str:
        return self.file(self.POSTPROCESS)

    @property
    def report_dir(self) -> str:
        return self.file(self.REPORT)

    @property
    def logs_dir(self) -> str:
        return self.file(self.LOGS)

    def checkpoint(self, name: str) -> str:
        """``checkpoints/<name>.keras`` (``last`` or ``best``)."""
        return self.file(self.CHECKPOINTS, f"{name}.keras")

    @property
    def state_path(self) -> str:
        return self.file(self.CHECKPOINTS, "state.json")

    def manifest_path(self, modality: str) -> str:
        return self.file(self.MANIFESTS, f"{modality}.json")

    # -- state ------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return os.path.isfile(self.metrics_path)

    @property
    def is_run(self) -> bool:
        """Whether the folder holds a run of this package (finished or not)."""
        return os.path.isfile(self.config_path)

    def _read(self, path: str, what: str):
        try:
            return io.read_json(path)
        except FileNotFoundError:
            raise RunError(f"{path}: missing; is {self.path} a finished emobed_tf.train "
                           f"run? ({what})") from None
        except ValueError as err:
            raise RunError(f"{err}; rerun with --overwrite to train it again") from None

    def config(self) -> configs.TrainConfig:
        """The run's configuration."""
        d = self._read(self.config_path, "its configuration")
        try:
            return configs.TrainConfig.from_json(d)
        except (TypeError, KeyError, ValueError) as err:
            raise RunError(f"{self.config_path}: not a configuration this version reads "
                           f"({err})") from None

    def metrics(self) -> dict:
        return self._read(self.metrics_path, "its scores")

    def data_dir(self, modality: str) -> str | None:
        """The data folder the run read ``modality`` from (None if it had none)."""
        path = self.manifest_path(modality)
        if not os.path.isfile(path):
            return None
        return self._read(path, "its data manifest")["data_dir"]

    def postprocess(self) -> dict | None:
        return io.read_json(self.postprocess_path) if os.path.isfile(self.postprocess_path) \
            else None

    def resume_state(self) -> dict | None:
        """The saved epoch state if a resumable checkpoint exists, else None."""
        if os.path.isfile(self.state_path) and os.path.isfile(self.checkpoint("last")):
            return self._read(self.state_path, "its resume state")
        return None

    def config_difference(self, cfg: configs.TrainConfig, ignore=(), reuse: bool = False,
                          encoder_type: str | None = None) -> list:
        """The top-level settings of ``cfg`` that differ from this run's saved configuration.

        Left out: ``ignore`` and ``IGNORED_FOR_RESUME`` (to resume an
        unfinished run) or, with ``reuse``, ``IGNORED_FOR_REUSE`` (to reuse
        a finished one: the number of epochs counts). Settings added to the
        package since the run was written count as their defaults. With
        ``encoder_type`` (what ``auto`` means for the data) both are compared as
        :func:`~emobed_tf.configs.resolved`: ``auto`` and the value it stands for agree.
        """
        old, new = self._settings(cfg, encoder_type)
        skip = set(IGNORED_FOR_REUSE if reuse else IGNORED_FOR_RESUME) | set(ignore)
        return sorted(k for k in fingerprint.differences(old, new, skip) if k in new)

    def _settings(self, cfg: configs.TrainConfig, encoder_type: str | None = None) -> tuple:
        """(this run's saved settings, ``cfg``'s), as JSON reads them back (resolved for
        ``encoder_type`` when given)."""
        saved = self.config()  # settings added since: defaults
        if encoder_type:
            saved, cfg = (configs.resolved(saved, encoder_type),
                          configs.resolved(cfg, encoder_type))
        return json.loads(json.dumps(saved.to_json())), json.loads(json.dumps(cfg.to_json()))

    def other_settings(self, cfg: configs.TrainConfig, what: str, hint: str, ignore=(),
                       reuse: bool = False, encoder_type: str | None = None) -> str | None:
        """The message saying this folder holds ``what`` (a run) with other settings than
        ``cfg``'s (see :meth:`config_difference`), or None when they agree."""
        diff = self.config_difference(cfg, ignore, reuse, encoder_type)
        if not diff:
            return None
        old, new = self._settings(cfg, encoder_type)
        return fingerprint.describe(self.path, what, diff, old, new, hint=hint)

    def check_resumable(self, cfg: configs.TrainConfig,
                        encoder_type: str | None = None) -> dict | None:
        """Checks the folder can hold ``cfg``'s run; returns the resume state (or None).

        Raises :class:`RunError` for a finished run or an unfinished run with
        another configuration.
        """
        if self.finished:
            raise RunError(f"{self.path}: this run is already finished (metrics.json exists); "
                           "pass --overwrite to train it again, or choose another --out")
        if os.path.isfile(self.config_path):
            other = self.other_settings(cfg, "an unfinished run",
                                        "resume it with the same arguments, pass --overwrite "
                                        "to discard it, or choose another --out",
                                        encoder_type=encoder_type)
            if other:
                raise RunError(other)
            return self.resume_state()
        return None

    # -- writing ----------------------------------------------------------------
    def begin(self, cfg: configs.TrainConfig, sources: dict) -> None:
        """Writes the configuration and the manifests of the data read."""
        cfg.save(self.config_path)
        for mod, src in sources.items():
            io.write_json(self.manifest_path(mod),
                          {"data_dir": os.path.abspath(src.data_dir), **src.manifest.to_json()})

    def save_checkpoint(self, model, name: str) -> None:
        io.save_model(model, self.checkpoint(name))

    def save_state(self, state: dict) -> None:
        io.write_json(self.state_path, state)

    def save_model(self, model) -> None:
        io.save_model(model, self.model_path)

    def log_scalars(self, rows) -> None:
        """Appends history rows (``{"epoch": n, key: value}``) to the TensorBoard logs:
        ``logs/train`` and ``logs/validation`` (the ``val_`` keys), tags ``epoch_<key>``, as
        Keras' TensorBoard callback names them; written with TensorBoard's own event writer,
        without a TensorFlow op per value."""
        if not rows:
            return
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        import time

        for sub, pick in (("train", lambda k: not k.startswith("val_") and k),
                          ("validation", lambda k: k.startswith("val_") and k[4:])):
            writer = EventFileWriter(os.path.join(self.logs_dir, sub))
            for row in rows:
                values = [summary_pb2.Summary.Value(tag=f"epoch_{pick(k)}", simple_value=float(v))
                          for k, v in row.items() if k != "epoch" and pick(k)]
                if values:
                    writer.add_event(event_pb2.Event(wall_time=time.time(), step=row["epoch"] - 1,
                                                     summary=summary_pb2.Summary(value=values)))
            writer.close()

    def write_history(self, history) -> None:
        io.write_json(self.history_path, history)

    @property
    def history_path(self) -> str:
        return self.file(self.HISTORY)

    def write_metrics(self, result: dict) -> None:
        """Writes ``metrics.json``: from now on the run counts as finished."""
        io.write_json(self.metrics_path, result)

    def write_postprocess(self, chain: dict) -> None:
        io.write_json(self.postprocess_path, chain)

    def load_model(self, which: str = "model"):
        """``model.keras`` for inference (or a checkpoint to train on: ``last``, ``best``).

        The final model loads without its optimizer, so a run trained under any
        Keras backend scores and exports under this one.
        """
        from emobed_tf.model.emobed import load_model

        path = self.model_path if which == "model" else self.checkpoint(which)
        if not os.path.isfile(path):
            raise RunError(f"{path}: missing; is {self.path} a finished emobed_tf.train run?")
        return load_model(path, compile=which != "model")

    def lock(self) -> io.FolderLock:
        """An exclusive lock on the folder (held while training)."""
        return io.FolderLock(self.path, "a training run")

    # -- replacing a finished run ----------------------------------------------
    def staging(self) -> "RunDir":
        """Where ``--overwrite`` trains before replacing this run (a sibling folder)."""
        return RunDir(self.path.rstrip(os.sep) + ".overwriting")

    def replace_with(self, new: "RunDir") -> None:
        """Moves the finished run ``new`` to this folder, the old one aside and then away."""
        old = self.path.rstrip(os.sep) + ".replaced"
        if os.path.isdir(old):
            shutil.rmtree(old)
        if os.path.isdir(self.path):
            os.replace(self.path, old)
        os.replace(new.path, self.path)
        shutil.rmtree(old, ignore_errors=True)


def make_run_checkpoint(run: RunDir, monitor: str, patience: int, state: dict | None = None,
                        higher_is_better: bool = True, every: int = 1):
    """A Keras callback: last/best checkpoints, early stopping, resumable state.

    Checkpoints are written every ``every`` epochs, when training stops early
    and when it ends (``--checkpoint-every``): ``best.keras`` when a better
    epoch came since (its weights are held in memory until then),
    ``last.keras`` and ``state.json``, in that order; then the epochs' logs go
    to TensorBoard (``logs/``). An interrupted run resumes
    after the last checkpointed epoch. Early stopping and the best epoch
    still look at every epoch's logs.

    The best epoch is the one with the highest logged ``monitor`` (a dev
    score), or the lowest with ``higher_is_better=False`` (a dev loss);
    with ``monitor=None`` each epoch is the best in turn and nothing stops
    early (only the ``last`` checkpoint is written: it is the kept one).

    Keras' ``BackupAndRestore`` + ``EarlyStopping`` would lose the early
    stopping counters on a restart; this callback persists them in
    ``checkpoints/state.json`` together with the history. A non-finite loss
    term stops training with a :class:`RunError` naming the term, the epoch
    and the step; nothing of that epoch is saved.
    """
    import math

    import keras

    class RunCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            os.makedirs(os.path.dirname(run.state_path), exist_ok=True)
            self.state = dict(state or {"epoch": 0, "best": None, "best_epoch": None, "wait": 0,
                                        "stopped_early": False, "history": []})
            self._epoch = self.state["epoch"]
            self._saved_epoch = self.state["epoch"]  # the epoch the files on disk hold
            self._best_weights = None  # a better epoch's weights not yet written

        def _write(self):
            """Writes the checkpoint of the epoch just ended (best first, state last)."""
            if self._best_weights is not None:
                current = self.model.get_weights()
                self.model.set_weights(self._best_weights)
                run.save_checkpoint(self.model, "best")
                self.model.set_weights(current)
                self._best_weights = None
            run.save_checkpoint(self.model, "last")
            run.save_state(self.state)
            run.log_scalars([h for h in self.state["history"] if h["epoch"] > self._saved_epoch])
            self._saved_epoch = self.state["epoch"]

        def flush(self):
            """Writes the checkpoint of the last epoch if it is not written yet."""
            if self.state["epoch"] > self._saved_epoch:
                self._write()

        def on_train_end(self, logs=None):
            self.flush()

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            for k, v in (logs or {}).items():
                if k.endswith("loss") and not math.isfinite(float(v)):
                    self.model.stop_training = True
                    raise RunError(
                        f"{run.path}: training diverged: {k} became {float(v)} at epoch "
                        f"{self._epoch + 1}, step {batch + 1}; nothing of this epoch was saved "
                        "(lower --learning-rate, or check the features for extreme values)")

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if monitor is not None and monitor not in logs:
                raise RuntimeError(f"dev score {monitor!r} missing from the logs {sorted(logs)}")
            bad = sorted(k for k, v in logs.items() if not math.isfinite(v))
            if bad:
                raise RunError(f"{run.path}: training diverged: {', '.join(bad)} not finite at "
                               f"the end of epoch {epoch + 1}; nothing of this epoch was saved")
            st = self.state
            st["history"].append({"epoch": epoch + 1, **logs})
            score = logs[monitor] if monitor is not None else float(epoch + 1)
            # an auxiliary warm-up epoch (EmoBed.aux_warmup_epochs) never becomes "best" nor
            # counts for patience: the target is not trained yet
            if epoch < getattr(self.model, "aux_warmup_epochs", 0):
                pass
            elif monitor is None:  # no selection: the last checkpoint is the kept one
                st.update(best=score, best_epoch=epoch + 1, wait=0)
            elif st["best"] is None or (score > st["best"] if higher_is_better
                                        else score < st["best"]):
                st.update(best=score, best_epoch=epoch + 1, wait=0)
                self._best_weights = self.model.get_weights()
            else:
                st["wait"] += 1
            st["epoch"] = epoch + 1
            if st["wait"] >= patience:
                st["stopped_early"] = True
                self.model.stop_training = True
            if st["stopped_early"] or (epoch + 1) % every == 0:
                self._write()

    return RunCheckpoint()
