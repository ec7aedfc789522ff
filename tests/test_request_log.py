"""The request-line writer: a fast path that writes what logging would have written."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memwarden.logs import JsonFormatter
from memwarden.request_log import RequestLineWriter, format_line, format_request_line

FIELDS = {"request_id": "abc", "pid": 7, "seq": 3, "method": "GET", "route": "/x/<id>",
          "status": 200, "duration_ms": 1.25, "rss_bytes": 1000, "rss_delta_bytes": -4096,
          "blocks": 10, "blocks_delta": 2, "census": {"fds": 3, "threads": 1}}


@pytest.fixture
def logger(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    log = logging.getLogger("memwarden_test_request_log")
    path = tmp_path / "lines.log"
    stream = path.open("w")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log, path
    finally:
        log.removeHandler(handler)
        stream.close()


def test_fast_path_writes_one_json_line_with_every_field(
        logger: tuple[logging.Logger, Path]) -> None:
    log, path = logger
    RequestLineWriter(log).write(FIELDS)
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["logger"] == log.name and line["message"] == "request"
    assert {k: line[k] for k in FIELDS} == FIELDS


def test_any_other_handler_sends_the_line_through_logging(
        logger: tuple[logging.Logger, Path]) -> None:
    """A handler memwarden did not set up (pytest's capture, a file handler) sees a record."""
    log, path = logger
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    writer = RequestLineWriter(log)
    writer.write(FIELDS)
    extra = Collect()
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


@given(route=st.text(max_size=50), rid=st.text(max_size=40),
       duration=st.floats(), status=st.integers(100, 599) | st.none())
def test_request_line_template_matches_json(route: str, rid: str, duration: float,
                                            status: int | None) -> None:
    fields = {**FIELDS, "route": route, "request_id": rid, "duration_ms": duration,
              "status": status}
    head = '{"timestamp": "2026-11-28T00:00:00.000Z", "level": "INFO", "logger": "l", ' \
           '"message": "request"'
    line = format_request_line(head, fields)
    decoded = json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert decoded["route"] == route and decoded["request_id"] == rid
    assert decoded["status"] == status
