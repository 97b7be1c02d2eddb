"""griffe extension: the project's docstrings as mkdocstrings should render them.

The docstrings are Google style with doctest examples, often as bare ``>>>``
blocks after an ``Example:`` line (``tests/test_doctests.py`` runs them). In
Markdown a bare ``>>>`` line is a nested block quote and ``[..]`` in an
output line looks like a link, so every doctest run (from a ``>>>`` line to
the next blank line) becomes a fenced ``pycon`` block, the body of an
``Example:``/``Examples:`` header is kept as plain text with that header,
and Sphinx roles (``:class:`X```) become inline code.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj|const):`~?([^`]+)`")
_HEADERS = ("example:", "examples:")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def markdown_doctests(text: str) -> str:
    """``text`` with doctest runs fenced, example headers made plain and roles as code.

    >>> markdown_doctests("Example:\\n    >>> f([1])\\n    [2]\\n\\nSee :func:`f`.").split("\\n")
    ['Example:', '', '```pycon', '>>> f([1])', '[2]', '```', '', 'See `f`.']
    """
    lines = _ROLE.sub(r"`\1`", text).split("\n")
    out: list[str] = []
    fenced = False
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        elif not fenced and stripped.lower() in _HEADERS:
            # an indented body would make it a Google "Examples" section: dedent it
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            shift = _indent(lines[j]) - _indent(line) if j < len(lines) else 0
            out += [line, ""]
            i = j
            if shift > 0:
                while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > _indent(line)):
                    lines[i] = lines[i][shift:] if lines[i].strip() else ""
                    i += 1
                i = j
            continue
        elif not fenced and stripped.startswith(">>>"):
            pad = " " * _indent(line)
            out.append(pad + "```pycon")
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) >= len(pad):
                out.append(lines[i])
                i += 1
            out.append(pad + "```")
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class MarkdownDoctests(griffe.Extension):
    """Rewrites each object's docstring with :func:`markdown_doctests` once loaded."""

    def on_object(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_doctests(obj.docstring.value)
