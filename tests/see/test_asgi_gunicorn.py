"""The ASGI tracker under real gunicorn with uvicorn workers and a FastAPI app."""

from __future__ import annotations

from pathlib import Path

from support import gunicorn

UVICORN = ["-k", "uvicorn_worker.UvicornWorker"]
EVERY_BLOCKS = {"MEMWARDEN_BLOCKS_BUDGET_US": "0", "MEMWARDEN_BLOCKS_EVERY": "1"}
CONTRACT_KEYS = {"timestamp", "level", "logger", "message", "request_id", "pid", "seq",
                 "method", "route", "status", "duration_ms", "rss_bytes", "rss_delta_bytes",
                 "blocks_delta"}


def _statm_rss(pid: int) -> int:
    import os

    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_fastapi_request_lines_carry_every_contract_field(tmp_path: Path) -> None:
    """Each FastAPI request yields one line with the route template and the worker's RSS."""
    # Budget off and every request: blocks on every line however loaded the machine.
    with gunicorn("fastapi_app:app", tmp_path, args=["-w", "2", *UVICORN],
                  env=EVERY_BLOCKS) as server:
        workers = set(server.worker_pids(expect=2))
        ids = [f"asgi-{i}" for i in range(30)]
        for i, rid in enumerate(ids):
            status, headers, _ = server.request(
                "GET", f"/items/{i}?api_key=s3cr3t-query",
                headers={"X-Request-ID": rid, "Cookie": "sid=s3cr3t-cookie"})
            assert status == 200
            assert headers["x-request-id"] == rid
        lines = server.request_lines(30)
        rss_now = {pid: _statm_rss(pid) for pid in workers}
    text = server.log_path.read_text()
    assert "s3cr3t" not in text
    assert sorted(x["request_id"] for x in lines) == sorted(ids)
    by_pid: dict[int, list[dict[str, object]]] = {}
    for line in lines:
        assert line.keys() >= CONTRACT_KEYS, CONTRACT_KEYS - line.keys()
        assert line["route"] == "/items/{item_id}"
        assert line["status"] == 200 and line["method"] == "GET"
        assert line["pid"] in workers
        by_pid.setdefault(line["pid"], []).append(line)
    for pid, worker_lines in by_pid.items():
        assert [x["seq"] for x in worker_lines] == list(range(1, len(worker_lines) + 1))
        assert "census" in worker_lines[0]
        assert abs(worker_lines[-1]["rss_bytes"] - rss_now[pid]) <= 256 * 1024
    app_lines = [x for x in server.lines("fastapi_app")]
    assert {x["request_id"] for x in app_lines} == set(ids)


def test_fastapi_exception_and_streaming(tmp_path: Path) -> None:
    """An exception is logged with status 500 and re-raised; a stream is logged once at its end."""
    with gunicorn("fastapi_app:app", tmp_path, args=["-w", "1", *UVICORN]) as server:
        assert server.request("GET", "/boom")[0] == 500
        status, _, body = server.request("GET", "/stream")
        assert status == 200 and body.count(b"chunk") == 5
        assert server.request("GET", "/items/1", headers={"X-Request-ID": "bad\x7fid"})[0] == 200
        lines = server.request_lines(3)
        errors = [x for x in server.lines() if x.get("exc_type") == "RuntimeError"]
    by_route = {x["route"]: x for x in lines}
    assert by_route["/boom"]["status"] == 500
    assert by_route["/boom"]["error"] == "RuntimeError"
    assert by_route["/stream"]["status"] == 200
    assert by_route["/items/{item_id}"]["request_id"] != "bad\x7fid"
    assert errors, "the server logged the traceback as a JSON line"


def test_several_or_bad_x_request_ids_get_one_fresh_id(tmp_path: Path) -> None:
    """Several X-Request-ID headers (a list in the ASGI scope), an overlong one or
    one with unsafe characters: one fresh id, never the traceparent's trace id."""
    import re
    import socket

    trace = b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    cases = [
        [b"X-Request-ID: id-one", b"X-Request-ID: id-two", trace],
        [b"X-Request-ID: id-one", b"X-Request-ID: id-one", trace],
        [b"X-Request-ID: " + b"a" * 129, trace],
        [b"X-Request-ID: id<script>", trace],
    ]

    def ids_sent_back(port: int, header_lines: list[bytes]) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         + b"".join(h + b"\r\n" for h in header_lines) + b"\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head = reply.split(b"\r\n\r\n", 1)[0]
        return [h.split(b": ", 1)[1] for h in head.split(b"\r\n")
                if h.lower().startswith(b"x-request-id:")]

    with gunicorn("fastapi_app:app", tmp_path, args=["-w", "1", *UVICORN]) as server:
        sent_back = [ids_sent_back(server.port, case) for case in cases]
        lines = server.request_lines(4)
    for ids in sent_back:
        assert len(ids) == 1 and re.fullmatch(rb"[0-9a-f]{32}", ids[0]), ids
        assert ids[0] != b"4bf92f3577b34da6a3ce929d0e0e4736"
    assert {x["request_id"].encode() for x in lines} == {ids[0] for ids in sent_back}


def test_the_apps_start_message_and_header_list_are_never_changed(tmp_path: Path) -> None:
    """An app sending one module-level start message (and header list) for every
    response keeps both as they were: x-request-id goes on copies."""
    with gunicorn("raw_asgi:app", tmp_path, args=["-w", "1", *UVICORN]) as server:
        replies = [server.request("GET", "/shared-headers") for _ in range(20)]
    for status, headers, body in replies:
        assert status == 200
        assert body == b"1 1"
        assert len(headers["x-request-id"]) == 32
