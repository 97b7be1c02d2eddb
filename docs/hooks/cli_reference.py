"""mkdocs hook: the CLI reference page, rendered from the live argument parsers.

``docs/reference/cli.md`` holds one marker line per command, for example
``<!-- cli: emobed_tf.train -->``; at build time each marker is replaced by
the ``--help`` text of that module's parser. The parsers are built by the
modules' own ``parse_args(argv)`` (or ``main(argv)`` where the parser is
built inside ``main``) with argparse's parsing replaced by a capture, so
nothing runs and a flag added to the configs shows up without an edit here.

The help texts are collected in one subprocess (``python cli_reference.py``
prints them as JSON): ``emobed_tf.evaluate`` imports TensorFlow at import
time, and the docs build itself then never imports it.

The hook also publishes the learning-curve figure of the real-data study
from ``benchmarks/results/`` so the docs show the measured file itself.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI_PAGE = "reference/cli.md"
MARKER = re.compile(r"^<!-- cli: ([\w.]+) -->$", re.M)
FIGURES = {"assets/dev_corpus_learning_curve.png":
           os.path.join(ROOT, "benchmarks", "results", "dev_corpus_learning_curve.png")}


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__(parser.prog)
        self.parser = parser


def parser_of(module_name: str) -> argparse.ArgumentParser:
    """The argument parser ``python -m module_name`` builds, captured before it parses."""
    module = importlib.import_module(module_name)
    entry = getattr(module, "parse_args", None) or module.main

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    saved = {name: getattr(argparse.ArgumentParser, name)
             for name in ("parse_args", "parse_known_args")}
    for name in saved:
        setattr(argparse.ArgumentParser, name, capture)
    try:
        entry([])
    except _Captured as captured:
        return captured.parser
    finally:
        for name, method in saved.items():
            setattr(argparse.ArgumentParser, name, method)
    raise RuntimeError(f"{module_name}: no argument parser was built")


def help_texts(modules) -> dict:
    """``{module: --help text}``, formatted 100 columns wide."""
    os.environ["COLUMNS"] = "100"
    return {m: parser_of(m).format_help() for m in modules}


def _collect(modules) -> dict:
    env = dict(os.environ, COLUMNS="100", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, os.path.abspath(__file__), *modules], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError("collecting the CLI help texts failed:\n" + done.stderr[-4000:])
    return json.loads(done.stdout)


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri != CLI_PAGE:
        return markdown
    modules = MARKER.findall(markdown)
    texts = _collect(modules)
    return MARKER.sub(lambda m: "```text\n" + texts[m.group(1)].rstrip() + "\n```", markdown)


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for uri, path in FIGURES.items():
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=path))
    return files


if __name__ == "__main__":
    json.dump(help_texts(sys.argv[1:]), sys.stdout)
