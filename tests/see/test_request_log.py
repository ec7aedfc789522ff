"""The request-line writer: a fast path that writes what logging would have written."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memwarden.see.logs import JsonFormatter
from memwarden.see.request_log import RequestLineWriter, format_line

FIELDS = {"request_id": "abc", "pid": 7, "seq": 3, "method": "GET", "route": "/x/<id>",
          "status": 200, "duration_ms": 1.25, "rss_bytes": 1000, "rss_delta_bytes": -4096,
          "blocks": 10, "blocks_delta": 2, "census": {"fds": 3, "threads": 1}}
USUAL = {k: v for k, v in FIELDS.items() if k != "census"}


def usual_args(fields: dict[str, Any]) -> list[Any]:
    """write_usual's arguments for a usual line's fields (duration in microseconds)."""
    return [round(v * 1000) if k == "duration_ms" else v for k, v in fields.items()]


class Collect(logging.Handler):
    """A handler memwarden did not set up: it keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def json_logger(path: Path, name: str) -> Iterator[logging.Logger]:
    """A non-propagating logger with one JSON stream handler. Made inside a test
    body it gets the writer's fast path; made in a fixture it also gets pytest's
    capture handlers (pytest adds them to every non-propagating logger when a
    test phase starts), and the writer goes through logging."""
    log = logging.getLogger(name)
    with path.open("a") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
        try:
            yield log
        finally:
            log.removeHandler(handler)


def test_fast_path_writes_one_json_line_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "lines.log"
    with json_logger(path, "memwarden_test_request_log_fast") as log:
        writer = RequestLineWriter(log)
        writer.write(FIELDS)
        assert writer.write_usual(*usual_args(USUAL)) is True  # the fast path was open
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    line = json.loads(lines[0])
    assert line["logger"] == log.name and line["message"] == "request"
    assert {k: line[k] for k in FIELDS} == FIELDS


def test_any_other_handler_sends_the_line_through_logging(tmp_path: Path) -> None:
    """A handler memwarden did not set up (pytest's capture, a file handler) sees a
    record from the very next line on, and the fast path resumes once it is gone."""
    path = tmp_path / "lines.log"
    with json_logger(path, "memwarden_test_request_log_other") as log:
        writer = RequestLineWriter(log)
        writer.write(FIELDS)
        extra = Collect()
        seen = extra.records
        log.addHandler(extra)
        try:
            writer.write(FIELDS)
        finally:
            log.removeHandler(extra)
        writer.write(FIELDS)
    assert len(seen) == 1 and seen[0].memwarden == FIELDS  # type: ignore[attr-defined]
    assert len(path.read_text().splitlines()) == 3  # the JSON handler got all three


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10)


@given(st.dictionaries(st.text(), _json_values, max_size=8))
def test_format_line_is_always_one_valid_json_object(head: dict[str, object]) -> None:
    line = format_line(head)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert line.isascii()
    decoded = json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert decoded.keys() == head.keys()


def _without_timestamp(line: str) -> list[tuple[str, Any]]:
    pairs = json.loads(line, object_pairs_hook=list,
                       parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert pairs[0][0] == "timestamp"
    return pairs[1:]


@given(route=st.text(max_size=50), rid=st.text(max_size=40), method=st.text(max_size=10),
       duration_us=st.integers(0, 10**12), status=st.integers(100, 599),
       big=st.integers(-2**63, 2**63))
def test_usual_template_writes_what_write_writes(
        tmp_path_factory: pytest.TempPathFactory, route: str, rid: str, method: str,
        duration_us: int, status: int, big: int) -> None:
    """The one-template line holds the same keys, in the same order, with the same
    values as the dict line of the same fields; the duration has three decimals."""
    fields = {**USUAL, "route": route, "request_id": rid, "method": method,
              "duration_ms": duration_us / 1000, "status": status, "rss_delta_bytes": big}
    path = tmp_path_factory.mktemp("usual") / "lines.log"
    with json_logger(path, "memwarden_test_request_log_usual") as log:
        writer = RequestLineWriter(log)
        assert writer.write_usual(*usual_args(fields)) is True
        writer.write(fields)
    usual, general = path.read_text().splitlines()
    assert _without_timestamp(usual) == _without_timestamp(general)
    assert dict(_without_timestamp(usual)[3:]) == fields  # after level, logger, message
    assert f'"duration_ms": {duration_us // 1000}.{duration_us % 1000:03d},' in usual



@pytest.mark.parametrize("without", [(), ("blocks_delta",), ("blocks", "blocks_delta")])
def test_usual_template_leaves_out_blocks_not_read(tmp_path: Path,
                                                   without: tuple[str, ...]) -> None:
    """Blocks skipped on this request (no blocks, no delta) or on the one before
    (no delta): the template writes what write writes of the fields left."""
    fields = {k: v for k, v in USUAL.items() if k not in without}
    args = usual_args(fields) + [None] * len(without)
    path = tmp_path / "lines.log"
    with json_logger(path, f"memwarden_test_request_log_no_{len(without)}") as log:
        writer = RequestLineWriter(log)
        assert writer.write_usual(*args) is True
        writer.write(fields)
    usual, general = path.read_text().splitlines()
    assert _without_timestamp(usual) == _without_timestamp(general)
    assert dict(_without_timestamp(usual)[3:]) == fields

def test_usual_template_declines_when_logging_must_carry_the_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.log"
    with json_logger(path, "memwarden_test_request_log_declines") as log:
        writer = RequestLineWriter(log)
        extra = Collect()
        seen = extra.records
        log.addHandler(extra)
        try:
            # Not written: the caller writes the dict through logging instead.
            assert writer.write_usual(*usual_args(USUAL)) is False
        finally:
            log.removeHandler(extra)
        assert not seen and path.read_text() == ""
        assert writer.write_usual(*usual_args(USUAL)) is True
    assert len(path.read_text().splitlines()) == 1


def test_usual_template_declines_a_text_field_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "lines.log"
    with json_logger(path, "memwarden_test_request_log_types") as log:
        args = usual_args(USUAL)
        args[4] = None  # the route
        assert RequestLineWriter(log).write_usual(*args) is False
    assert path.read_text() == ""


def test_a_handler_raised_above_info_gets_no_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.log"
    with json_logger(path, "memwarden_test_request_log_level") as log:
        writer = RequestLineWriter(log)
        assert writer.write_usual(*usual_args(USUAL)) is True
        handler = log.handlers[0]
        handler.setLevel(logging.WARNING)  # after the plan was derived
        assert writer.write_usual(*usual_args(USUAL)) is True  # handled: nobody takes INFO
        writer.write(FIELDS)
        handler.setLevel(logging.NOTSET)
        writer.write(FIELDS)
    assert len(path.read_text().splitlines()) == 2



LONG_ROUTE = "/r/" + "\U0001f600\u00e9x" * 3400  # about 10 KB, each character escaped


def test_every_line_is_one_write_of_at_most_pipe_buf(tmp_path: Path) -> None:
    """A long route, a census of many kinds, a long id: each line one valid JSON
    object of at most 4096 bytes with its newline, marked truncated, its other
    fields whole."""
    path = tmp_path / "lines.log"
    census = {f"kind.{i:04d}.{'k' * 40}": i for i in range(400)}
    with json_logger(path, "memwarden_test_request_log_cap") as log:
        writer = RequestLineWriter(log)
        args = usual_args({**USUAL, "route": LONG_ROUTE, "method": "\u2603" * 3000})
        if not writer.write_usual(*args):
            writer.write({**USUAL, "route": LONG_ROUTE, "method": "\u2603" * 3000})
        writer.write({**FIELDS, "route": LONG_ROUTE, "census": census})
        writer.write({**FIELDS, "error": "E" * 1_000_000})
        writer.write(FIELDS)  # short: whole, not marked
    data = path.read_bytes()
    raw_lines = data.split(b"\n")[:-1]
    assert len(raw_lines) == 4
    for raw in raw_lines:
        assert len(raw) + 1 <= 4096
    lines = [json.loads(raw) for raw in raw_lines]
    for line in lines[:3]:
        assert line["truncated"] is True
        assert line["request_id"] == "abc" and line["pid"] == 7 and line["status"] == 200
        assert line["rss_bytes"] == 1000 and line["seq"] == 3
    assert lines[0]["route"].startswith("/r/\U0001f600\u00e9x")
    assert "truncated" not in lines[3] and lines[3]["census"] == FIELDS["census"]


def test_a_long_line_through_logging_is_capped_too(tmp_path: Path) -> None:
    handler = Collect()
    log = logging.getLogger("memwarden_test_request_log_cap_slow")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        RequestLineWriter(log).write({**FIELDS, "route": LONG_ROUTE,
                                      "census": {f"k{i}": i for i in range(2000)}})
    finally:
        log.removeHandler(handler)
    (record,) = handler.records
    text = JsonFormatter().format(record)
    assert len(text) + 1 <= 4096
    assert json.loads(text)["truncated"] is True


def test_a_change_anywhere_along_the_chain_reaches_the_very_next_line(tmp_path: Path) -> None:
    """The writer's logger propagates to a parent with the JSON handler: a handler
    or filter added to that parent, or the parent starting to propagate to a
    logger with a handler of its own, sends the very next line through logging."""
    path = tmp_path / "lines.log"
    with json_logger(path, "memwarden_test_request_log_chain") as parent:
        child = logging.getLogger("memwarden_test_request_log_chain.request")
        writer = RequestLineWriter(child)
        assert writer.write_usual(*usual_args(USUAL)) is True  # the fast path was open
        extra = Collect()
        parent.addHandler(extra)
        try:
            assert writer.write_usual(*usual_args(USUAL)) is False
        finally:
            parent.removeHandler(extra)
        assert writer.write_usual(*usual_args(USUAL)) is True
        parent.addFilter(logging.Filter())
        try:
            assert writer.write_usual(*usual_args(USUAL)) is False
        finally:
            parent.filters.clear()
        assert writer.write_usual(*usual_args(USUAL)) is True
        root = logging.getLogger()
        above = Collect()
        root.addHandler(above)
        parent.propagate = True
        try:
            writer.write({**FIELDS})
        finally:
            parent.propagate = False
            root.removeHandler(above)
        assert [r.memwarden for r in above.records] == [FIELDS]  # type: ignore[attr-defined]
        assert writer.write_usual(*usual_args(USUAL)) is True
    assert len(path.read_text().splitlines()) == 5  # all but the two declined


def test_someones_partial_line_in_the_stream_is_not_glued_to_the_request_line(
        tmp_path: Path) -> None:
    """Text left unflushed in the handler's stream (a write without a newline)
    is finished after the request line, which stays one JSON line of its own."""
    path = tmp_path / "lines.log"
    with json_logger(path, "memwarden_test_request_log_partial") as log:
        writer = RequestLineWriter(log)
        stream = log.handlers[0].stream  # type: ignore[attr-defined]
        stream.write("progress: 50%")
        assert writer.write_usual(*usual_args(USUAL)) is True
        stream.write(", 100%\n")
        stream.flush()
    first, second = path.read_text().splitlines()
    assert json.loads(first)["request_id"] == USUAL["request_id"]
    assert second == "progress: 50%, 100%"
