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
import tempfile
import warnings

# framework start-up chatter (oneDNN notices, CUDA probing on CPU machines) stays out of
# the CLIs' output; errors (level 2 keeps them) still show
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from emobed_tf import configs as C  # noqa: E402
from emobed_tf.io import LockedError, OutputError  # noqa: E402
from emobed_tf.rundir import RunError  # noqa: E402
from emobed_tf.schema import DataError  # noqa: E402

# what a CLI reports as one ``error:`` line with exit code 2 (anything else is a bug: traceback)
ERRORS = (DataError, RunError, LockedError, OutputError, C.ConfigError)


_CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)"
                      r"|[IW]\d{4} |To enable the following instructions)")


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its C++ start-up info lines dropped; anything else is replayed.

    TensorFlow 2.21 prints oneDNN and CUDA-probing INFO lines before its log
    level applies (``TF_CPP_MIN_LOG_LEVEL`` does not hide them). They are
    captured while TensorFlow loads; lines that are not INFO/WARNING log
    lines (real errors) are written to stderr afterwards.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded interpreters)
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                if line.strip() and not _CHATTER.match(line):
                    print(line, file=sys.stderr)


def quiet_frameworks() -> None:
    """Keeps TensorFlow's and absl's start-up info and warning logs out; errors still show."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _import_tensorflow_quietly()
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
        why = C.check_value(f, value) or (f.metadata.get("cli_check") or (lambda v: None))(value)
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
        for f in C.scalar_fields(section):
            md = f.metadata
            if not md.get("cli", True) or f.name in exclude:
                continue
            kw = dict(dest=f.name, type=_parser_for(f), default=None,
                      help=f"{md['help']} (default: {_show(f.default)}, or the preset's)"
                      if section != "top" or f.name not in ("dataset",) else md["help"])
            if md.get("choices"):
                kw["choices"] = md["choices"]
                kw["metavar"] = "{" + ",".join(map(str, md["choices"])) + "}"
            if f.name == "dataset":
                kw.update(choices=sorted(C.DATASETS), metavar=None)
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
    return {f.name: getattr(args, f.name) for f in C.scalar_fields(section)
            if f.metadata.get("cli", True) and getattr(args, f.name, None) is not None}


def config_from_args(args, out: str, mode: str) -> C.TrainConfig:
    """The run's :class:`~emobed_tf.configs.TrainConfig`: preset, then ``--hparams``, then flags."""
    from emobed_tf import schema

    target = args.target or "audio"
    cfg = C.default_config(args.dataset, out, target, mode)
    if args.dataset == "custom":
        probe = args.data_dir or args.audio_dir or args.video_dir
        if not probe:
            raise DataError("--dataset custom needs --data-dir (or --audio-dir/--video-dir)")
        if schema.load_manifest(probe).task == "regression":
            rec = C.DATASETS["recola"]
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
            cfg = C.apply_hparams(cfg, values, where=args.hparams)
        except C.ConfigError as err:
            raise DataError(str(err)) from None
    top = given(args, "top")
    top.pop("dataset", None)
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, **given(args, "model")),
        loss=dataclasses.replace(cfg.loss, **given(args, "loss")),
        data=dataclasses.replace(cfg.data, **given(args, "data")), **top)


def fail(message) -> int:
    """Prints one ``error: ...`` line to stderr; returns the exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2
