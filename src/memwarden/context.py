"""Request context: correlation id, worker pid, per-worker request sequence.

The correlation id comes from ``X-Request-ID`` (or the trace id of a W3C
``traceparent``) when it is well formed, and is generated otherwise. Input
that is overlong, holds control characters, newlines, non-ASCII or a comma
(several headers joined by the server) is replaced, never logged raw.
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar

__all__ = [
    "current_request_id",
    "new_request_id",
    "next_sequence",
    "request_id_from",
    "sanitize_request_id",
]

MAX_REQUEST_ID_LENGTH = 128
# Letters, digits and the punctuation found in UUIDs, ULIDs, hex and base64ish ids.
_VALID_ID = re.compile(rf"[A-Za-z0-9._:+=/-]{{1,{MAX_REQUEST_ID_LENGTH}}}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_ZERO_TRACE = "0" * 32

_request_id: ContextVar[str | None] = ContextVar("memwarden_request_id", default=None)
# For the trackers, which set it when a request starts and reset it when it
# ends: bound once, so a request pays for the call, not the lookups.
_set_request_id = _request_id.set
_reset_request_id = _request_id.reset


def current_request_id() -> str | None:
    """The correlation id of the request being handled, or None outside one."""
    return _request_id.get()


# The counter starts at 2**60: from there to 2**64 it is always 16 hex digits,
# written without a padding format spec, which costs more inside a request.
_FIRST_COUNT = 1 << 60


class _IdSource:
    """32 hex digits: 64 random bits drawn once per process, then a counter.

    As unique as a random id across workers and hosts, without a syscall per
    request; renewed in the child after every fork.
    """

    __slots__ = ("count", "prefix")

    def __init__(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.count = itertools.count(_FIRST_COUNT)  # next() is atomic under the GIL


_ids = _IdSource()


def _renew_ids() -> None:
    global _ids
    _ids = _IdSource()


os.register_at_fork(after_in_child=_renew_ids)


def new_request_id() -> str:
    ids = _ids
    return f"{ids.prefix}{next(ids.count):x}"


def _ascii(value: str | bytes | None) -> str | None:
    """Header bytes (ASGI) as text; anything not ASCII is no id at all."""
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value


def sanitize_request_id(value: str | bytes | None) -> str | None:
    """Return ``value`` when it is a safe correlation id, else None."""
    value = _ascii(value)
    if value is not None and _VALID_ID.fullmatch(value):
        return value
    return None


def trace_id_from_traceparent(value: str | bytes | None) -> str | None:
    value = _ascii(value)
    if value is None:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None or match.group(1) == _ZERO_TRACE:
        return None
    return match.group(1)


def request_id_from(x_request_id: str | bytes | None, traceparent: str | bytes | None) -> str:
    """The id to use for a request, from its headers or freshly made."""
    if x_request_id is None and traceparent is None:  # the usual request
        return new_request_id()
    return (
        sanitize_request_id(x_request_id)
        or trace_id_from_traceparent(traceparent)
        or new_request_id()
    )


class _Sequence:
    """A per-process counter that restarts at 1 in each forked worker."""

    __slots__ = ("_n", "_pid")

    def __init__(self) -> None:
        self._pid = -1
        self._n = 0

    def next(self) -> int:
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._n = 0
        self._n += 1
        return self._n


_sequence = _Sequence()
next_sequence = _sequence.next
