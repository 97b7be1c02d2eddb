"""The documentation site: ``mkdocs build --strict`` passes, and the command-line reference
is the live argument parsers' ``--help``, so a flag added to the configs appears without a
hand edit."""

import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOK = os.path.join(ROOT, "docs", "hooks", "cli_reference.py")
DOC_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:
        return True


pytestmark = pytest.mark.skipif(any(_missing(m) for m in DOC_TOOLS),
                                reason="the docs tools are not installed (pip install -e '.[dev]')")


def _hook():
    spec = importlib.util.spec_from_file_location("cli_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flags(parser) -> set:
    return {opt for action in parser._actions for opt in action.option_strings
            if opt.startswith("--")}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-4000:]
    return out, elapsed


def test_build_is_strict_clean_and_quick(site):
    out, elapsed = site
    assert elapsed < 60, f"mkdocs build took {elapsed:.0f} s"
    for page in ("index.html", "getting-started/index.html", "method/index.html",
                 "results/index.html", "reference/cli/index.html",
                 "reference/api/model/index.html", "assets/dev_corpus_learning_curve.png"):
        assert os.path.isfile(os.path.join(out, page)), page


def test_cli_reference_holds_every_flag_of_the_live_parsers(site):
    out, _ = site
    with open(os.path.join(out, "reference", "cli", "index.html"), encoding="utf-8") as fh:
        html = fh.read()
    assert "--aux-warmup-epochs" in html  # a setting of LossConfig, through add_config_args
    assert "<!-- cli:" not in html
    hook = _hook()
    for module in ("emobed_tf.train", "emobed_tf.crossval", "emobed_tf.export",
                   "tfrecords_tools.extract", "tuning.search"):
        flags = _flags(hook.parser_of(module))
        assert flags, module
        missing = sorted(f for f in flags if not re.search(re.escape(f) + r"\b", html))
        assert not missing, f"{module}: {missing} not in the CLI reference"


def test_parser_capture_runs_nothing_and_restores_argparse():
    import argparse

    hook = _hook()
    before = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    parser = hook.parser_of("emobed_tf.train")  # train's parse_args requires --dataset and --out
    assert parser.prog == "python -m emobed_tf.train"
    assert "--encoder-type" in _flags(parser)
    assert (argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args) == before


def test_api_reference_renders_doctests_as_code(site):
    out, _ = site
    with open(os.path.join(out, "reference", "api", "model", "index.html"), encoding="utf-8") as fh:
        html = fh.read()
    assert "batch_hard_triplet_loss" in html
    assert "<blockquote>" not in html  # a bare ">>>" line would be a nested block quote
