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
from itertools import islice
from typing import BinaryIO, Protocol, cast

from memwarden.find.analysis.counters import ReadCounters

__all__ = ["MAX_LINE_BYTES", "read_path_batches", "read_path_lines"]

MAX_LINE_BYTES = 1 << 20
# A plain file is read in chunks of this size and split into lines in C.
CHUNK_BYTES = 1 << 20
# Lines handed on at once from a gzip stream or stdin.
BATCH_LINES = 4096
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


def _chunked_lines(raw: BinaryIO) -> Iterator[list[bytes | None]]:
    """``_bounded_lines`` of a plain file, a chunk's lines at a time and without their
    newlines: the same lines (None for one past MAX_LINE_BYTES, its newline counted),
    at one split per chunk instead of one readline per line."""
    rest = b""  # the start of a line the chunk so far has not ended
    skipping = False  # inside a line already too long: dropped up to its newline
    while chunk := raw.read(CHUNK_BYTES):
        parts = chunk.split(b"\n")
        last = parts.pop()
        if not parts:  # no newline: the line goes on
            if not skipping:
                rest += last
                if len(rest) > MAX_LINE_BYTES:
                    rest, skipping = b"", True
            continue
        first_too_long = skipping or len(rest) + len(parts[0]) >= MAX_LINE_BYTES
        if rest and not first_too_long:
            parts[0] = rest + parts[0]
        lines = cast("list[bytes | None]", parts)  # the same list, Nones to come
        if len(parts) > 1 and max(map(len, islice(parts, 1, None))) >= MAX_LINE_BYTES:
            lines[1:] = [None if len(line) >= MAX_LINE_BYTES else line for line in parts[1:]]
        if first_too_long:
            lines[0] = None
        rest, skipping = last, False
        if len(rest) > MAX_LINE_BYTES:
            rest, skipping = b"", True
        yield lines
    if skipping:
        yield [None]
    elif rest:
        yield [rest]


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


def read_path_batches(path: str | os.PathLike[str], counters: ReadCounters,
                      opened: Callable[[BinaryIO], None] | None = None
                      ) -> Iterator[list[bytes | None]]:
    """``read_path_lines`` in lists of lines: a plain file split a chunk at a time (its
    lines without their newlines, which nothing reads), gzip and stdin in batches."""
    plain = os.fspath(path) != "-"
    if plain:
        with open(path, "rb") as raw:
            plain = raw.peek(2)[:2] != _GZIP_MAGIC
            if plain:
                if opened is not None:
                    opened(raw)
                try:
                    yield from _chunked_lines(raw)
                except OSError:
                    counters.unreadable_inputs += 1
                return
    lines = read_path_lines(path, counters, opened)
    while batch := list(islice(lines, BATCH_LINES)):
        yield batch
