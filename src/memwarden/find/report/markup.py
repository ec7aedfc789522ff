"""A tiny HTML template helper that escapes by default.

``html("<td>{name}</td>", name=text)`` escapes ``text`` unless it is already
``Markup`` (the output of another template or of ``escape``), the way
autoescaping template engines do. Log data therefore reaches the page only
through ``escape``; markup is built only from literals in this package.
"""

from __future__ import annotations

import html as _html
import json
import string
from collections.abc import Iterable
from typing import Any

__all__ = ["Markup", "escape", "html", "join", "script_json"]


class Markup(str):
    """A string that is already safe HTML: templates insert it as is."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """HTML-escape ``value`` (quotes included, so it is safe in attributes too)."""
    if isinstance(value, Markup):
        return value
    return Markup(_html.escape(str(value), quote=True))


class _EscapingFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Markup) and not format_spec:
            return value
        return escape(format(value, format_spec))


_FORMATTER = _EscapingFormatter()


def html(template: str, /, **values: object) -> Markup:
    """Fill ``template`` (a literal of this package) with escaped ``values``."""
    return Markup(_FORMATTER.vformat(template, (), values))


def join(parts: Iterable[object], separator: str = "") -> Markup:
    """Concatenate fragments, escaping any that are not ``Markup``."""
    return Markup(escape(separator).join(escape(part) for part in parts))


# Inside <script> the HTML parser only looks for "</script" (and "<!--"), but
# escaping every <, > and & also keeps "<!--" and "]]>" harmless; U+2028 and
# U+2029 are escaped because older JavaScript engines end a string at them.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                 "\u2028": "\\u2028", "\u2029": "\\u2029"})


def script_json(data: object) -> Markup:
    """``data`` as JSON that is safe inside ``<script type="application/json">``."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Markup(text.translate(_SCRIPT_ESCAPES))
