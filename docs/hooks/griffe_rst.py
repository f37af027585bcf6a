"""Griffe extension for the API reference: the reST bits of mlsh's docstrings, as Markdown.

The docstrings are Google style (rendered by mkdocstrings) but name code with Sphinx roles
(``:class:`MLSHAgent```) and introduce examples with ``Examples::``. Markdown has neither: a role
becomes a code span, and ``::`` before an indented block a plain colon (the indented block is
already a code block in Markdown).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

# :class:`~a.b.C`, :func:`f`, :meth:`C.m`, :mod:`m`, :attr:`a`, :data:`D`, :exc:`E`, :obj:`o`
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")
_LITERAL_BLOCK = re.compile(r"::(\n\s*\n)")


def markdown_docstring(text: str) -> str:
    """``text`` with Sphinx roles as code spans and ``::`` literal-block markers as colons."""
    text = _ROLE.sub(r"``\1``", text)
    return _LITERAL_BLOCK.sub(r":\1", text)


class RstRoles(Extension):
    """Rewrites every loaded object's docstring with :func:`markdown_docstring`."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
