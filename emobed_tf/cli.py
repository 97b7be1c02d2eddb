"""What the command-line tools share: flags generated from the configs, quiet start-up, errors.

Every setting of :mod:`emobed_tf.configs` becomes a flag of ``train``,
``compare``, ``sweep``, ``crossval`` and ``tuning.search`` with the same
name (``--encoder-units`` for ``ModelConfig.encoder_units``), its help text
and its check: a bad value is an argparse error (exit code 2) before
anything is loaded. Flags left out keep the ``--dataset`` preset's value.

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_config_args(p)
>>> args = p.parse_args(["--dataset", "demo", "--beta", "0.8", "--encoder-units", "64"])
>>> cfg = config_from_args(args, out="runs/x", mode="emobed")
>>> cfg.loss.beta, cfg.model.encoder_units, cfg.loss.alpha
(0.8, 64, 0.5)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import re
import sys
import warnings

# framework start-up chatter (oneDNN notices, CUDA probing on CPU machines) stays out of
# the CLIs' output; errors (level 2 keeps them) still show
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from emobed_tf import configs  # noqa: E402
from emobed_tf.errors import EmobedError  # noqa: E402  (one error: line, exit code 2)
from emobed_tf.records.schema import DataError  # noqa: E402

# Lines TensorFlow's C++ runtime prints that are not actionable: start-up INFO/WARNING (printed
# before TF_CPP_MIN_LOG_LEVEL applies), CUDA probing on a machine without a GPU driver, and the
# oneDNN bool-op fallback notice. Anything else on stderr passes.
_CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)"
                      r"|[IW]\d{4} |To enable the following instructions"
                      r"|E\d{4} .*(failed call to cuInit|oneDNN supports DT_BOOL only))")


def is_chatter(line: str) -> bool:
    """Whether a stderr line is framework chatter the CLIs drop.

    >>> is_chatter("I0000 00:00:1.2 1 port.cc:153] oneDNN custom operations are on.")
    True
    >>> is_chatter("error: data/omg: no TFRecord data set here")
    False
    """
    return bool(_CHATTER.match(line))


_PREFIXES = ("WARNING: All log messages before absl", "To enable the following instructions")


def _may_be_chatter(start: str) -> bool:
    """Whether an unfinished line could still turn out to be chatter."""
    if start[:1] in "IWE" and start[1:5].isdigit() or (start[:1] in "IWE" and len(start) < 5):
        return True
    return any(p.startswith(start[:len(p)]) for p in _PREFIXES)


class _StderrFilter:
    """Forwards the process's stderr (file descriptor 2) line by line, dropping chatter.

    File-descriptor level, so it sees what TensorFlow's C++ code and worker
    processes print as well as Python's own output (errors, tracebacks).
    """

    def __init__(self):
        self.saved = None
        self.thread = None

    def start(self) -> None:
        import atexit
        import threading

        try:
            read_fd, write_fd = os.pipe()
            self.saved = os.dup(2)
        except OSError:
            return
        sys.stderr.flush()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        out = self.saved

        def pump():
            # line by line, except that text not starting like chatter is forwarded at once
            # (progress bars redraw with "\r" and no newline)
            buf = b""
            while True:
                try:
                    data = os.read(read_fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                buf += data
                while True:
                    cut = min((i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0),
                              default=-1)
                    if cut < 0:
                        break
                    seg, buf = buf[:cut + 1], buf[cut + 1:]
                    if not is_chatter(seg.decode(errors="replace")):
                        os.write(out, seg)
                if buf and not _may_be_chatter(buf.decode(errors="replace")):
                    os.write(out, buf)
                    buf = b""
            if buf and not is_chatter(buf.decode(errors="replace")):
                os.write(out, buf)
            os.close(read_fd)

        self.thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        if self.saved is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.saved, 2)  # closes the pipe's last writer: the pump sees the end
        self.thread.join(timeout=5)
        os.close(self.saved)
        self.saved = None


_FILTER = _StderrFilter()


def quiet_frameworks() -> None:
    """Keeps TensorFlow's and absl's info/warning chatter out of a CLI's output; errors show.

    Only when stderr is the process's own (not under a test runner's capture).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if sys.stderr is sys.__stderr__ and _FILTER.saved is None:
        _FILTER.start()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*tf\.function retracing.*")
    with contextlib.suppress(Exception):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _parser_for(f: dataclasses.Field):
    """The argparse ``type`` of field ``f``: converts and applies the field's check."""
    kind = type(f.default)

    def parse(text: str):
        try:
            if kind is tuple:
                item = f.metadata.get("item", str)
                value = tuple(item(t.strip()) for t in text.split(",") if t.strip())
            elif kind is bool:
                value = text.lower() in ("1", "true", "yes")
            else:
                value = kind(text)
        except ValueError:
            what = (f"comma-separated list of {f.metadata.get('item', str).__name__}"
                    if kind is tuple else kind.__name__)
            raise argparse.ArgumentTypeError(f"not a valid {what}: {text!r}") from None
        cli_check = f.metadata.get("cli_check")  # stricter where 0 means auto (no flag)
        why = cli_check(value) if cli_check else configs.check_value(f, value)
        if why:
            raise argparse.ArgumentTypeError(f"must be {why}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


_GROUPS = {"top": "run", "model": "model (f_A, f_V and f)", "loss": "loss (Eq. 8)",
           "data": "data pipeline"}


def add_config_args(p: argparse.ArgumentParser, sections=("top", "model", "loss", "data"),
                    exclude=()) -> None:
    """Adds one flag per setting of the configs (see :mod:`emobed_tf.configs`)."""
    for section in sections:
        group = p.add_argument_group(_GROUPS[section])
        for f in configs.scalar_fields(section):
            md = f.metadata
            if not md.get("cli", True) or f.name in exclude:
                continue
            # 0 where a flag must be >= 1: decided later (the help says how)
            shown = "auto" if md.get("cli_check") and f.default == 0 else _show(f.default)
            kw = dict(dest=f.name, type=_parser_for(f), default=None,
                      help=f"{md['help']} (default: {shown}, or the preset's)"
                      if section != "top" or f.name not in ("dataset",) else md["help"])
            if md.get("choices"):
                kw["choices"] = md["choices"]
                kw["metavar"] = "{" + ",".join(map(str, md["choices"])) + "}"
            if f.name == "dataset":
                kw.update(choices=sorted(configs.DATASETS), metavar=None)
            if md.get("required"):
                kw["required"] = True
            group.add_argument(flag_of(f), *md.get("aliases", ()), **kw)
    if "top" in sections:
        p.add_argument("--hparams", help="JSON file of hyperparameters, e.g. a search's "
                       "best_hyperparameters.json (explicit flags win)")
        p.add_argument("--overwrite", action="store_true",
                       help="train again where a finished run exists (the old run is replaced "
                            "only when the new one has finished)")


def _show(v) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v)) or "all"
    return repr(v) if isinstance(v, str) else str(v)


def given(args, section: str) -> dict:
    """The settings of ``section`` given on the command line."""
    return {f.name: getattr(args, f.name) for f in configs.scalar_fields(section)
            if f.metadata.get("cli", True) and getattr(args, f.name, None) is not None}


def config_from_args(args, out: str, mode: str) -> configs.TrainConfig:
    """The run's :class:`~emobed_tf.configs.TrainConfig`: preset, then ``--hparams``, then flags."""
    from emobed_tf.records import manifest

    target = args.target or "audio"
    cfg = configs.default_config(args.dataset, out, target, mode)
    if args.dataset == "custom":
        probe = args.data_dir or args.audio_dir or args.video_dir
        if not probe:
            raise DataError("--dataset custom needs --data-dir (or --audio-dir/--video-dir)")
        if manifest.load_manifest(probe).task == "regression":
            rec = configs.DATASETS["recola"]
            cfg = dataclasses.replace(cfg, model=rec.model, data=rec.data, loss=rec.loss)
    if getattr(args, "hparams", None):
        from emobed_tf import io

        try:
            hp = io.read_json(args.hparams)
        except (OSError, ValueError) as err:
            raise DataError(f"{args.hparams}: cannot read hyperparameters ({err})") from None
        if not isinstance(hp, dict):
            raise DataError(f"{args.hparams}: must hold a JSON object of hyperparameters")
        values = hp.get("values", hp)
        if not isinstance(values, dict):
            raise DataError(f"{args.hparams}: 'values' must be a JSON object")
        try:
            cfg = configs.apply_hparams(cfg, values, where=args.hparams)
        except configs.ConfigError as err:
            raise DataError(str(err)) from None
    top = given(args, "top")
    top.pop("dataset", None)
    top.setdefault("backend", os.environ.get("KERAS_BACKEND") or "tensorflow")
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, **given(args, "model")),
        loss=dataclasses.replace(cfg.loss, **given(args, "loss")),
        data=dataclasses.replace(cfg.data, **given(args, "data")), **top)


def select_backend(args) -> None:
    """Makes ``--backend`` Keras' backend: must run before Keras is imported."""
    name = getattr(args, "backend", None)
    if not name:
        return
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != name:
            raise configs.ConfigError(f"--backend {name}: Keras was already imported with the "
                                f"{keras.backend.backend()} backend in this process")
        return
    os.environ["KERAS_BACKEND"] = name


def fail(message) -> int:
    """Prints one ``error: ...`` line to stderr; returns the exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


INTERRUPTED = 130  # the exit code after Ctrl-C (128 + SIGINT), as shells report it


def run_interruptible(work, progress) -> int:
    """Runs a CLI's ``work()`` (returns its exit code); Ctrl-C ends it with one line.

    A ``KeyboardInterrupt`` (Ctrl-C, SIGINT) prints ``interrupted: <progress()>``
    to stderr instead of a traceback and returns :data:`INTERRUPTED` (130).
    ``progress()`` says what finished and how to resume; it is called after
    the interruption, so it reads what was kept on disk. A second Ctrl-C
    while it runs is ignored.

    >>> def work():
    ...     raise KeyboardInterrupt
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     code = run_interruptible(work, lambda: "2 of 3 runs finished (out/runs)")
    >>> code, err.getvalue()
    (130, 'interrupted: 2 of 3 runs finished (out/runs)\\n')
    """
    try:
        return work()
    except KeyboardInterrupt:
        pass
    import signal

    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        old = None
    try:
        try:
            text = progress()
        except Exception as err:  # noqa: BLE001 - the line is printed whatever happens
            text = f"rerun the same command to resume (progress unknown: {err})"
        print(f"interrupted: {text}", file=sys.stderr, flush=True)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
    return INTERRUPTED


def run_main(args, work, progress) -> int:
    """The body of a training CLI's ``main`` after parsing ``args``.

    Applies ``--backend`` (before anything imports Keras: the CLI modules
    import it lazily), quiets the frameworks, then runs ``work()`` under
    :func:`run_interruptible`: an error of :class:`~emobed_tf.errors.EmobedError` is one ``error:``
    line and exit code 2, Ctrl-C one ``interrupted:`` line and exit code 130.
    """
    try:
        select_backend(args)
    except configs.ConfigError as err:
        return fail(err)
    quiet_frameworks()

    def guarded():
        try:
            return work()
        except EmobedError as err:
            return fail(err)

    return run_interruptible(guarded, progress)


def run_state(out: str) -> str:
    """Where the training run in ``out`` stands, for the line printed after Ctrl-C.

    (A run replaced with ``--overwrite`` trains in ``OUT.overwriting``; its state counts.)
    """
    from emobed_tf.experiments.rundir import RunDir

    rd = RunDir(out)
    stage = rd.staging()
    for where in (stage, rd) if os.path.isdir(stage.path) else (rd,):
        if where.finished:
            return f"the run in {where.path} has finished"
        state = where.resume_state()
        if state is not None and state.get("epoch"):
            return (f"epoch {state['epoch']} is the last finished one (checkpoint in "
                    f"{where.path}); rerun the same command to resume after it")
    return (f"no epoch had finished in {out}, so nothing is kept; rerun the same command to "
            "start again")


def add_jobs_arg(p) -> None:
    """``--jobs N``: runs trained side by side (0: auto, see
    :func:`emobed_tf.experiments.runner.default_jobs`)."""
    p.add_argument("--jobs", type=int, default=int(os.environ.get("EMOBED_JOBS", "0") or 0),
                   metavar="N",
                   help="runs trained side by side in worker processes; 0 (default, or "
                        "$EMOBED_JOBS): one per CPU core this process may use, at most one per "
                        "2 GiB of available memory and one when a GPU is visible; 1: one after "
                        "the other in this process")


def finished_runs(paths) -> int:
    """How many of the run folders ``paths`` hold a finished run."""
    from emobed_tf.experiments.rundir import RunDir

    return sum(RunDir(p).finished for p in paths)
