"""The WSGI tracker under real gunicorn sync workers with a Flask app."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Gunicorn, gunicorn

CONTRACT_KEYS = {"timestamp", "level", "logger", "message", "request_id", "pid", "seq",
                 "method", "route", "status", "duration_ms", "rss_bytes", "rss_delta_bytes",
                 "blocks_delta"}
SAFE_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")
SECRETS = ("s3cr3t-query", "s3cr3t-cookie", "s3cr3t-bearer", "s3cr3t-body")
EVERY_BLOCKS = {"MEMWARDEN_BLOCKS_BUDGET_US": "0", "MEMWARDEN_BLOCKS_EVERY": "1"}


def _statm_rss(pid: int) -> int:
    import os

    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_request_lines_carry_every_contract_field(tmp_path: Path) -> None:
    """Each request yields one JSON line with all fields right, per worker, and no secrets."""
    # Budget off and every request: blocks on every line however loaded the machine.
    with gunicorn("flask_app:app", tmp_path, args=["-w", "2"], env=EVERY_BLOCKS) as server:
        workers = set(server.worker_pids(expect=2))
        assert len(workers) == 2
        ids = [f"req-{i:03d}" for i in range(40)]
        for i, rid in enumerate(ids):
            status, headers, _ = server.request(
                "GET", f"/items/{i}?token=s3cr3t-query",
                headers={"X-Request-ID": rid, "Cookie": "session=s3cr3t-cookie",
                         "Authorization": "Bearer s3cr3t-bearer"})
            assert status == 200
            assert headers["x-request-id"] == rid
        lines = server.request_lines(40)
        # RSS read from the workers' own /proc right after the burst.
        rss_now = {pid: _statm_rss(pid) for pid in workers}
        master_rss = _statm_rss(server.proc.pid)
    log_text = server.log_path.read_text()
    for secret in SECRETS:
        assert secret not in log_text
    assert len(lines) == 40
    assert [line["request_id"] for line in sorted(lines, key=lambda x: ids.index(x["request_id"]))
            ] == ids
    by_pid: dict[int, list[dict[str, object]]] = {}
    for line in lines:
        assert line.keys() >= CONTRACT_KEYS, CONTRACT_KEYS - line.keys()
        assert line["message"] == "request" and line["level"] == "INFO"
        assert line["method"] == "GET"
        assert line["route"] == "/items/<int:item_id>"
        assert line["status"] == 200
        assert line["duration_ms"] > 0
        assert line["pid"] in workers
        by_pid.setdefault(line["pid"], []).append(line)
    for pid, worker_lines in by_pid.items():
        assert [x["seq"] for x in worker_lines] == list(range(1, len(worker_lines) + 1))
        # The first request of each worker takes a census.
        census = worker_lines[0]["census"]
        assert {"threads", "fds", "children", "blocks"} <= census.keys()
        last_rss = worker_lines[-1]["rss_bytes"]
        # The worker's own memory, within a few pages, and not the master's.
        assert abs(last_rss - rss_now[pid]) <= 256 * 1024, (last_rss, rss_now[pid])
        assert last_rss != master_rss
    app_lines = [x for x in server.lines("flask_app") if x["message"] == "looking up item"]
    assert {x["request_id"] for x in app_lines} == set(ids)
    assert all(x["pid"] in workers for x in app_lines)


def test_exception_in_app_is_logged_and_reraised(tmp_path: Path) -> None:
    """An exception escaping the app yields a 500 line naming it; the server stays up."""
    with gunicorn("raw_wsgi:app", tmp_path, args=["-w", "1"]) as server:
        status, _, _ = server.request("GET", "/raise")
        assert status == 500
        status, _, _ = server.request("GET", "/fine")
        assert status == 200
        lines = server.request_lines(2)
        tracebacks = [x for x in server.lines("gunicorn.error") if x.get("exc_type")]
    raised = [x for x in lines if x["route"] == "/raise"]
    assert len(raised) == 1
    assert raised[0]["status"] == 500 and raised[0]["error"] == "RuntimeError"
    # gunicorn logged the traceback itself, as one JSON line.
    assert any(x["exc_type"] == "RuntimeError" for x in tracebacks)


def test_streaming_response_is_measured_when_closed(tmp_path: Path) -> None:
    """A streamed body is logged once, after the last chunk, with its route."""
    with gunicorn("flask_app:app", tmp_path, args=["-w", "1"]) as server:
        status, _, body = server.request("GET", "/stream")
        assert status == 200 and body.count(b"chunk") == 5
        lines = server.request_lines(1)
    assert [x["route"] for x in lines] == ["/stream"]


def test_absent_proc_degrades_to_omitted_fields_and_one_warning(tmp_path: Path) -> None:
    """With no /proc tree requests succeed, memory fields are omitted, one warning is logged."""
    env = {"MEMWARDEN_PROC_ROOT": str(tmp_path / "no-proc-here"), "MEMWARDEN_CENSUS_EVERY": "1",
           **EVERY_BLOCKS}
    with gunicorn("flask_app:app", tmp_path, args=["-w", "1"], env=env) as server:
        for i in range(5):
            assert server.request("GET", f"/items/{i}")[0] == 200
        lines = server.request_lines(5)
        warnings = [x for x in server.lines("memwarden.probe") if x["level"] == "WARNING"]
    assert len(lines) == 5
    for line in lines:
        assert "rss_bytes" not in line and "rss_delta_bytes" not in line
        assert "pss_bytes" not in line
        assert "fds" not in line["census"] and "children" not in line["census"]
        assert isinstance(line["blocks_delta"], int)
    assert len(warnings) == 1, warnings
    assert "no-proc-here" in warnings[0]["message"]


def _raw_request(port: int, header_lines: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /items/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     + b"".join(h + b"\r\n" for h in header_lines) + b"\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


_header_value = st.one_of(
    st.binary(min_size=0, max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(min_size=0, max_size=300).map(lambda t: t.encode("utf-8", "replace")
                                          .replace(b"\r", b"").replace(b"\n", b"")),
    st.just(b"x" * 5000),
    st.just(b"\x00\x01\x1b[31mred"),
    st.just(b"4f1c-ok"),
)


class _Server:
    instance: Gunicorn | None = None


def test_header_fuzz_never_breaks_a_log_line(tmp_path: Path) -> None:
    """Hostile X-Request-ID/traceparent headers never yield an invalid or multi-line record."""
    server = Gunicorn("flask_app:app", tmp_path, args=["-w", "1"])
    sent = 0

    @settings(max_examples=80, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(values=st.lists(_header_value, min_size=1, max_size=4), use_trace=st.booleans())
    def check(values: list[bytes], use_trace: bool) -> None:
        nonlocal sent
        name = b"traceparent" if use_trace else b"X-Request-ID"
        reply = _raw_request(server.port, [name + b": " + v for v in values])
        sent += 1
        head = reply.split(b"\r\n\r\n", 1)[0]
        status = int(head.split(b" ", 2)[1])
        if status == 200:
            echoed = [h.split(b": ", 1)[1] for h in head.split(b"\r\n")
                      if h.lower().startswith(b"x-request-id:")]
            assert len(echoed) == 1 and SAFE_ID.fullmatch(echoed[0].decode("ascii"))
        else:
            assert status in (400, 431), reply[:200]  # gunicorn refused the request itself

    try:
        check()
        time.sleep(0.3)
        lines = server.lines()  # raises if any line is not JSON
        raw = server.log_path.read_bytes().splitlines()
        assert server.proc.poll() is None
    finally:
        server.stop()
    assert len(raw) == len(lines)
    for line in server.lines("memwarden.request"):
        assert SAFE_ID.fullmatch(line["request_id"])
    assert sent >= 80


def test_the_apps_header_list_is_never_changed(tmp_path: Path) -> None:
    """An app passing one module-level header list for every response keeps it as
    it was: X-Request-ID goes on a copy (else the list grows by one per request)."""
    with gunicorn("secrets_wsgi:app", tmp_path, args=["-w", "1"]) as server:
        replies = [server.request("GET", "/shared-headers") for _ in range(20)]
    for status, headers, body in replies:
        assert status == 200
        assert body == b"1"  # the list's length, read by the app as it answers
        assert SAFE_ID.fullmatch(headers["x-request-id"])


def _ids_sent_back(port: int, header_lines: list[bytes]) -> list[bytes]:
    head = _raw_request(port, header_lines).split(b"\r\n\r\n", 1)[0]
    return [h.split(b": ", 1)[1] for h in head.split(b"\r\n")
            if h.lower().startswith(b"x-request-id:")]


def test_several_or_bad_x_request_ids_get_one_fresh_id(tmp_path: Path) -> None:
    """Several X-Request-ID headers (joined by gunicorn), an overlong one or one
    with unsafe characters: one fresh id in the response and on the line, never
    the traceparent's trace id nor any value sent."""
    trace = b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    cases = [
        [b"X-Request-ID: id-one", b"X-Request-ID: id-two", trace],
        [b"X-Request-ID: id-one", b"X-Request-ID: id-one"],
        [b"X-Request-ID: " + b"a" * 129, trace],
        [b"X-Request-ID: id<script>", trace],
    ]
    with gunicorn("flask_app:app", tmp_path, args=["-w", "1"]) as server:
        sent_back = [_ids_sent_back(server.port, case) for case in cases]
        kept = _ids_sent_back(server.port, [b"X-Request-ID: " + b"a" * 128, trace])
        lines = server.request_lines(5)
    assert kept == [b"a" * 128]
    fresh = re.compile(rb"[0-9a-f]{32}")
    for ids in sent_back:
        assert len(ids) == 1 and fresh.fullmatch(ids[0]), ids
        assert ids[0] != b"4bf92f3577b34da6a3ce929d0e0e4736"
    assert len({ids[0] for ids in sent_back}) == len(cases)
    logged = {line["request_id"].encode() for line in lines}
    assert {ids[0] for ids in sent_back} | {b"a" * 128} == logged


def test_a_megabyte_error_from_two_workers_leaves_whole_lines_of_at_most_4096_bytes(
        tmp_path: Path) -> None:
    """gunicorn's traceback line of a 1 MB exception message, from two workers at
    once: every line is whole JSON within PIPE_BUF, cut and marked."""
    from concurrent.futures import ThreadPoolExecutor

    with gunicorn("secrets_wsgi:app", tmp_path, args=["-w", "2"]) as server:
        server.worker_pids(expect=2)
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: server.request("GET", "/huge-error")[0],
                                     range(16)))
        server.request_lines(16)
    assert statuses == [500] * 16
    raw = server.log_path.read_bytes().split(b"\n")[:-1]
    assert max(len(line) + 1 for line in raw) <= 4096
    errors = [x for x in server.lines("gunicorn.error") if x.get("exc_type") == "RuntimeError"]
    assert len(errors) == 16
    assert all(x["truncated"] is True and x["exc"].endswith("...(truncated)") for x in errors)
