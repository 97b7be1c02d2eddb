"""The docstring examples of the package run (and must print what they show)."""

import doctest
import importlib
import pkgutil

import pytest

import emobed_tf
import tfrecords_tools
import tuning

SKIP = {"emobed_tf.__main__"}


def _modules():
    names = []
    for pkg in (emobed_tf, tfrecords_tools, tuning):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name not in SKIP and not info.name.endswith("beam_pipeline"):
                names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.IGNORE_EXCEPTION_DETAIL
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
