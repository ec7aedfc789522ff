"""Progress on stderr while a long analysis reads: lines, lines per second, share of bytes.

Only when stderr is a terminal: a pipe, a file or CI's log gets nothing,
so scripts and report files stay clean. The share counts bytes read from
disk (compressed bytes for gzip) over the inputs' total size; stdin has no
size, so it shows lines only.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import BinaryIO, TextIO

__all__ = ["Progress"]


class Progress:
    """``opened`` with each input file as it opens, ``tick`` now and then, ``done`` at the end."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], stream: TextIO,
                 count_lines: object) -> None:
        self._stream = stream
        self._lines = count_lines  # an object with a ``lines`` attribute (ReadCounters)
        self._total = 0
        for path in paths:
            with contextlib.suppress(OSError):
                self._total += 0 if os.fspath(path) == "-" else os.path.getsize(path)
        self._done_bytes = 0
        self._current: BinaryIO | None = None
        self._current_size = 0
        self._started = time.monotonic()

    @staticmethod
    def wanted(stream: TextIO) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def opened(self, raw: BinaryIO) -> None:
        self._done_bytes += self._current_size
        self._current = raw
        try:
            self._current_size = os.fstat(raw.fileno()).st_size
        except (OSError, ValueError):
            self._current_size = 0

    def _read(self) -> int:
        if self._current is None or self._current.closed:
            return self._done_bytes + self._current_size
        try:
            return self._done_bytes + self._current.tell()
        except (OSError, ValueError):
            return self._done_bytes

    def tick(self) -> None:
        lines = int(getattr(self._lines, "lines", 0))
        elapsed = max(time.monotonic() - self._started, 1e-6)
        text = f"{lines:,} lines, {lines / elapsed:,.0f} lines/s"
        if self._total:
            share = min(self._read() / self._total, 1.0)
            text += f", {share:.0%} of {self._total / 2**20:,.0f} MiB"
        self._stream.write(f"\r{text}   ")
        self._stream.flush()

    def done(self) -> None:
        self.tick()
        self._stream.write("\n")
        self._stream.flush()
