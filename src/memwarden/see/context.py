"""Request context: correlation id, worker pid, per-worker request sequence.

The correlation id comes from one ``X-Request-ID`` header of 1 to 128
characters from a safe set (letters, digits and ``. _ : + = / -``), or when
there is none from the trace id of a W3C ``traceparent``. Anything else in
``X-Request-ID`` (several headers, which a WSGI server joins with commas and
an ASGI server passes as a list; overlong; control characters, newlines,
spaces, non-ASCII) gets one freshly generated id, never the raw value.

The request being handled is one object in a context variable: its id for
every line logged during it, and what it carries that must not be logged.
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar
from typing import Protocol

__all__ = [
    "BoundRequest",
    "RequestId",
    "current_private_texts",
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


class BoundRequest(Protocol):
    """What a tracker binds to the context for the length of a request."""

    request_id: str

    def private_texts(self) -> tuple[tuple[str, str], ...]:
        """(raw, replacement) for the path, query, cookies and credentials it carries."""
        ...


class RequestId:
    """A request known by its id alone, for work bound to one outside a tracker."""

    __slots__ = ("request_id",)

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id

    def private_texts(self) -> tuple[tuple[str, str], ...]:
        return ()


_request: ContextVar[BoundRequest | None] = ContextVar("memwarden_request", default=None)
# For the trackers, which set it when a request starts and reset it when it
# ends: bound once, so a request pays for the call, not the lookups.
_set_request = _request.set
_reset_request = _request.reset


def current_request_id() -> str | None:
    """The correlation id of the request being handled, or None outside one."""
    current = _request.get()
    return None if current is None else current.request_id


def current_private_texts() -> tuple[tuple[str, str], ...]:
    """What the request being handled carries that no line may show, with its
    replacement; empty outside a request."""
    current = _request.get()
    if current is None:
        return ()
    try:
        return current.private_texts()
    except Exception:  # a line is never lost over what it might have hidden
        return ()


# The counter starts at 2**60: from there to 2**64 it is always 16 hex digits.
_FIRST_COUNT = 1 << 60
# The id's last two hex digits, looked up: hex formatting is a code path little
# else in a request takes, and it cost more than the lookup inside one.
_HEX2 = tuple(f"{i:02x}" for i in range(256))


class _IdSource:
    """32 hex digits: 64 random bits drawn once per process, then a counter.

    As unique as a random id across workers and hosts, without a syscall per
    request; renewed in the child after every fork. The id's first 30 digits
    change once every 256 ids: they are formatted then, and kept.
    """

    __slots__ = ("count", "head", "prefix")

    def __init__(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.count = itertools.count(_FIRST_COUNT)  # next() is atomic under the GIL
        # (count >> 8, the id's first 30 digits), one tuple swapped whole: a
        # thread never pairs one count's head with another's.
        self.head: tuple[int, str] = (-1, "")


_ids = _IdSource()


def _renew_ids() -> None:
    global _ids
    _ids = _IdSource()


os.register_at_fork(after_in_child=_renew_ids)


def new_request_id() -> str:
    ids = _ids
    n = next(ids.count)
    head = ids.head
    if head[0] != n >> 8:
        head = ids.head = (n >> 8, f"{ids.prefix}{n >> 8:x}")
    return head[1] + _HEX2[n & 255]


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
    """The id to use for a request, from its headers or freshly made.

    ``x_request_id`` is None when the header is absent; a tracker that saw it
    several times passes a value that is no id (the WSGI server's joined one).
    """
    if x_request_id is None:
        if traceparent is None:  # the usual request
            return new_request_id()
        return trace_id_from_traceparent(traceparent) or new_request_id()
    return sanitize_request_id(x_request_id) or new_request_id()


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
