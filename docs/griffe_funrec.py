"""A griffe extension for the API reference: funrec's docstrings as mkdocstrings reads them.

funrec's docstrings follow optax: their doctest section is titled ``Example:``
and they cite names with Sphinx roles (``:class:`Recorder```). griffe's Google
parser reads only ``Examples:`` as code (``Example:`` becomes a note whose
``>>>`` lines Markdown takes for quotes), and a role before a colon-free text
confuses its ``Returns:`` parsing. This rewrites both before a docstring is
parsed: ``Example:`` -> ``Examples:``, ``:class:`~a.B``` -> ```B```.
"""

import re
from typing import Any

import griffe

_TITLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`~?(?:[\w.]*\.)?([^`.]+)`")


class FunrecDocstrings(griffe.Extension):
    """Reads ``Example:`` sections as ``Examples:`` and Sphinx roles as code spans."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _TITLE.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _ROLE.sub(r"`\1`", text)
