"""One log line, one write of at most PIPE_BUF bytes.

Workers share the pipe or file their logs go to; a write of up to PIPE_BUF
(4096 bytes on Linux) to a pipe is atomic, a longer one can interleave with
another worker's. A line over the cap has its longest fields cut, each with
a ``...(truncated)`` suffix, and ``"truncated": true`` added: it stays one
valid JSON object.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_LINE", "fit"]

MAX_LINE = 4096  # bytes, the newline included
_LIMIT = MAX_LINE - 1
_SUFFIX = "...(truncated)"
_MAX_FIELDS = 64
_MAX_KEY = 64
_MIN_FIELD = 32  # below this a cut field says nothing: fields are dropped instead
# Fields kept whole while any other can be cut: what finds the line again.
_FIRST_KEPT = ("timestamp", "level", "logger", "request_id", "pid")


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, default=str, allow_nan=False)
    except Exception:
        try:
            return json.dumps(str(value))
        except Exception:
            return json.dumps(f"<unprintable {type(value).__name__}>")


def _cut(value: Any, encoded: str, target: int) -> str:
    """``value`` as text, cut so that its JSON is about ``target`` characters."""
    text = value if isinstance(value, str) else encoded
    if text.endswith(_SUFFIX):
        text = text[:-len(_SUFFIX)]
    # Escapes make the JSON longer than the text: cut in proportion to it.
    keep = len(text) * max(0, target - len(_SUFFIX) - 2) // max(1, len(encoded))
    return text[:min(keep, len(text) - 1)] + _SUFFIX


def _level(sizes: list[int], excess: int) -> int:
    """The size to cut every larger field down to so that ``excess`` goes, the
    smaller ones kept whole: long fields share the room, none is emptied first."""
    sizes = sorted(sizes, reverse=True)
    total = 0
    for n, size in enumerate(sizes, 1):
        total += size
        level = (total - excess) // n
        if n == len(sizes) or level >= sizes[n]:
            return level
    return 0


def fit(out: dict[str, Any], dumps: Callable[[Any], str] = _dumps) -> str:
    """The JSON of ``out`` (no newline) within :data:`MAX_LINE` bytes with its newline.

    Assumes ``dumps`` escapes to ASCII, so characters are bytes.
    """
    line = dumps(out)
    if len(line) <= _LIMIT:
        return line
    items: dict[str, Any] = {}
    for key, value in out.items():
        key = str(key)
        if len(key) <= _MAX_KEY and len(items) < _MAX_FIELDS:
            items[key] = value
    items["truncated"] = True
    for _ in range(16):
        # Each value on its own: one that json cannot encode becomes its text.
        parts = {key: _dumps(value) for key, value in items.items()}
        line = "{" + ", ".join(f"{_dumps(key)}: {text}" for key, text in parts.items()) + "}"
        excess = len(line) - _LIMIT
        if excess <= 0:
            return line
        pool = [k for k in parts if k not in _FIRST_KEPT and k != "truncated"]
        if sum(len(parts[k]) for k in pool) - _MIN_FIELD * len(pool) < excess:
            pool = [k for k in parts if k != "truncated"]
        level = _level([len(parts[k]) for k in pool], excess)
        if level < _MIN_FIELD:
            # Too many fields for each to keep something: the later ones go.
            for key in pool[len(pool) // 2 or 1:]:
                del items[key]
            continue
        for key in pool:
            if len(parts[key]) > level:
                items[key] = _cut(items[key], parts[key], level)
    return json.dumps({"level": str(out.get("level", "INFO"))[:16], "truncated": True})
