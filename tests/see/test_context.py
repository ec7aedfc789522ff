"""Request context: correlation ids from untrusted headers, and the per-worker sequence."""

from __future__ import annotations

import os
import re
import uuid

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from memwarden.see import context
from memwarden.see.context import (
    current_request_id,
    new_request_id,
    next_sequence,
    request_id_from,
    sanitize_request_id,
    trace_id_from_traceparent,
)

FUZZ = settings(database=None, deadline=None, max_examples=300)
SAFE = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

# Headers as clients really garble them, plus anything at all.
header = st.one_of(
    st.none(),
    st.text(),
    st.binary(),
    st.text(alphabet=st.sampled_from("abc019-_.:=+/,; \t\r\n\x00\x7f\u2028\u00e9\ud800"),
            max_size=300),
    st.from_regex(r"[A-Za-z0-9._:+=/-]{100,200}", fullmatch=True),
)


def assert_safe(rid: str) -> None:
    assert SAFE.fullmatch(rid), rid
    assert rid.isascii()
    assert len(rid) <= 128
    assert not any(ord(c) < 32 or ord(c) == 127 for c in rid)
    assert "," not in rid and " " not in rid


@FUZZ
@given(x_request_id=header, traceparent=header)
@example(x_request_id="a" * 129, traceparent=None)
@example(x_request_id="id-1\nforged log line", traceparent=None)
@example(x_request_id="id-1, id-2", traceparent=None)
@example(x_request_id="caf\u00e9", traceparent=None)
@example(x_request_id=b"\xff\xfe", traceparent=b"\xff")
@example(x_request_id="\ud800", traceparent=None)
def test_request_id_from_any_headers_is_always_a_safe_id(
        x_request_id: str | bytes | None, traceparent: str | bytes | None) -> None:
    assert_safe(request_id_from(x_request_id, traceparent))


@FUZZ
@given(st.one_of(st.none(), st.text(), st.binary()))
def test_sanitize_keeps_exactly_the_values_that_are_safe_ids(value: str | bytes | None) -> None:
    result = sanitize_request_id(value)
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if text is not None and SAFE.fullmatch(text):
        assert result == text
    else:
        assert result is None


@FUZZ
@given(st.from_regex(r"[A-Za-z0-9._:+=/-]{1,128}", fullmatch=True))
def test_every_well_formed_id_is_kept_unchanged_as_str_and_bytes(value: str) -> None:
    assert sanitize_request_id(value) == value
    assert sanitize_request_id(value.encode()) == value
    assert request_id_from(value, TRACEPARENT) == value


def test_uuids_hex_and_ulids_are_kept() -> None:
    u = uuid.uuid4()
    for value in (str(u), u.hex, str(u).upper(), "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                  "Root=1-5759e988-bd862e3fe1be46a994272793", "a" * 128):
        assert sanitize_request_id(value) == value


def test_overlong_or_empty_ids_are_rejected() -> None:
    assert sanitize_request_id("a" * 129) is None
    assert sanitize_request_id("") is None
    assert sanitize_request_id(b"") is None


def test_traceparent_trace_id_is_used_when_x_request_id_is_absent() -> None:
    assert trace_id_from_traceparent(TRACEPARENT) == TRACE_ID
    assert trace_id_from_traceparent(TRACEPARENT.encode()) == TRACE_ID
    assert trace_id_from_traceparent(f"  {TRACEPARENT} ") == TRACE_ID
    assert request_id_from(None, TRACEPARENT) == TRACE_ID
    assert request_id_from("good-id", TRACEPARENT) == "good-id"


def test_all_zero_or_malformed_trace_ids_are_rejected() -> None:
    zero = f"00-{'0' * 32}-00f067aa0ba902b7-01"
    assert trace_id_from_traceparent(zero) is None
    for bad in (TRACEPARENT.upper(), TRACEPARENT[:-1], f"00-{TRACE_ID}-01",
                f"00-{TRACE_ID[:-1]}g-00f067aa0ba902b7-01", "", "\xe9", b"\xff"):
        assert trace_id_from_traceparent(bad) is None, bad
    rid = request_id_from(None, zero)
    assert rid != "0" * 32
    assert re.fullmatch(r"[0-9a-f]{32}", rid)


def test_generated_ids_are_32_hex_characters_and_unique() -> None:
    ids = {request_id_from(None, None) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in ids)
    assert re.fullmatch(r"[0-9a-f]{32}", new_request_id())


class _Bound:
    request_id = "req-1"

    def private_texts(self) -> tuple[tuple[str, str], ...]:
        return (("s3cr3t-token", "<redacted>"),)


def test_current_request_id_is_the_context_var_and_none_outside_a_request() -> None:
    assert current_request_id() is None
    assert context.current_private_texts() == ()
    token = context._set_request(_Bound())
    try:
        assert current_request_id() == "req-1"
        assert context.current_private_texts() == (("s3cr3t-token", "<redacted>"),)
    finally:
        context._reset_request(token)
    assert current_request_id() is None


def _is_fresh(rid: str) -> bool:
    """Made by this process: its random prefix, then the counter."""
    return re.fullmatch(r"[0-9a-f]{32}", rid) is not None and rid.startswith(context._ids.prefix)


# X-Request-ID values: ids, near-ids (one unsafe character, one too many),
# and what WSGI servers make of several headers (joined with "," or ", ").
_id_chars = st.sampled_from("abcXYZ0189._:+=/-")
_some_id = st.text(alphabet=_id_chars, min_size=1, max_size=130)
_x_request_id = st.one_of(
    _some_id,
    st.tuples(_some_id, st.sampled_from(" ,;\t\n\x00\x7f\u00e9\"'<>\\%"), _some_id).map(
        lambda t: t[0][:60] + t[1] + t[2][:60]),
    st.lists(_some_id, min_size=2, max_size=4).flatmap(
        lambda ids: st.sampled_from([",".join(ids), ", ".join(ids)])),
    st.text(max_size=200),
)


@FUZZ
@given(x_request_id=_x_request_id, traceparent=st.one_of(st.none(), st.just(TRACEPARENT)),
       as_bytes=st.booleans())
@example(x_request_id="id-1, id-2", traceparent=TRACEPARENT, as_bytes=False)
@example(x_request_id="id-1,id-2", traceparent=TRACEPARENT, as_bytes=False)
@example(x_request_id="a" * 129, traceparent=TRACEPARENT, as_bytes=False)
@example(x_request_id="a" * 128, traceparent=TRACEPARENT, as_bytes=True)
def test_x_request_id_is_kept_exactly_when_safe_else_one_fresh_id(
        x_request_id: str, traceparent: str | None, as_bytes: bool) -> None:
    """Kept when it is 1 to 128 characters of the safe set; otherwise (several
    headers, overlong, any other character) a fresh id, never the trace id."""
    sent: str | bytes = x_request_id.encode("utf-8", "surrogatepass") if as_bytes else x_request_id
    rid = request_id_from(sent, traceparent)
    if SAFE.fullmatch(x_request_id):
        assert rid == x_request_id
    else:
        assert _is_fresh(rid), (x_request_id, rid)
    assert_safe(rid)


def test_absent_x_request_id_takes_the_trace_id_else_a_fresh_one() -> None:
    assert request_id_from(None, TRACEPARENT) == TRACE_ID
    assert _is_fresh(request_id_from(None, None))
    assert _is_fresh(request_id_from(None, TRACEPARENT + "," + TRACEPARENT))
    assert _is_fresh(request_id_from("", TRACEPARENT))


def test_next_sequence_counts_up_by_one() -> None:
    first = next_sequence()
    assert [next_sequence() for _ in range(3)] == [first + 1, first + 2, first + 3]


def test_next_sequence_restarts_at_one_in_a_forked_child() -> None:
    for _ in range(3):
        next_sequence()
    before = next_sequence()
    assert before >= 4
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, f"{next_sequence()} {next_sequence()}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        child = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child == "1 2"
    assert next_sequence() == before + 1  # the parent's count is untouched


def test_generated_ids_are_the_prefix_then_the_count_in_hex_across_every_256(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The id's head, kept for 256 ids at a time, is always the count's own."""
    source = context._IdSource()
    monkeypatch.setattr(context, "_ids", source)
    ids = [new_request_id() for _ in range(600)]
    first = context._FIRST_COUNT
    assert ids == [f"{source.prefix}{n:x}" for n in range(first, first + 600)]
