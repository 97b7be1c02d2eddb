"""Corpus readers; the module moves to ``corpora/shared.py`` first (for its history), then
its readers move to one module per corpus."""

from tfrecords_tools.corpora.shared import *  # noqa: F401,F403
