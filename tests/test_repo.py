"""The README's two commands and CI stay in sync."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [ln for ln in block.splitlines() if ln.strip()]


def test_readme_starts_with_exactly_two_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    assert text.index("```bash") < 40
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert "emobed_tf.crossval --dataset demo" in cmds[0]
    assert cmds[1].endswith("-m pytest")


def test_ci_runs_the_readme_test_command():
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert _readme_commands()[1] in ci
