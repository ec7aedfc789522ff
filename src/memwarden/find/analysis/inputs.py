"""The inputs of an analysis: log files, gzip files or stdin, read in bounded lines.

Lines are read with a length cap (a 10 GB line must not be loaded to be
rejected); a gzip stream cut short or corrupted is read up to the damage and
counted, never fatal. ``InputProgress`` tells how far through its inputs a
run is, by the bytes read from disk (compressed bytes for gzip).
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol

from memwarden.find.analysis.counters import ReadCounters

__all__ = ["MAX_LINE_BYTES", "read_path_lines"]

MAX_LINE_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


class _LineSource(Protocol):
    def readline(self, size: int, /) -> bytes: ...


def _bounded_lines(stream: _LineSource) -> Iterator[bytes | None]:
    """Lines of at most MAX_LINE_BYTES; None stands for a longer line, skipped unread."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) <= MAX_LINE_BYTES:
            yield line
            continue
        # Too long: drain the rest of it in bounded chunks without keeping it.
        while not line.endswith(b"\n"):
            line = stream.readline(MAX_LINE_BYTES)
            if not line:
                break
        yield None


def _lines_of(stream: _LineSource, counters: ReadCounters) -> Iterator[bytes | None]:
    try:
        yield from _bounded_lines(stream)
    except (EOFError, OSError, zlib.error):
        # A gzip file cut short or corrupted: keep what was read before it.
        counters.unreadable_inputs += 1


def read_path_lines(path: str | os.PathLike[str], counters: ReadCounters,
                    opened: Callable[[BinaryIO], None] | None = None
                    ) -> Iterator[bytes | None]:
    """Lines of one log file ("-" for stdin), gunzipped when it starts with gzip's magic.

    Opening errors (a missing file) propagate; errors while reading are counted.
    """
    if os.fspath(path) == "-":
        stdin = sys.stdin.buffer
        peek = getattr(stdin, "peek", None)
        head = peek(2)[:2] if peek is not None else b""
        if head == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=stdin, mode="rb") as unzipped:
                yield from _lines_of(unzipped, counters)
        else:
            yield from _lines_of(stdin, counters)
        return
    with open(path, "rb") as raw:
        if opened is not None:  # progress reads how far through the file it is
            opened(raw)
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield from _lines_of(unzipped, counters)
        else:
            yield from _lines_of(raw, counters)
