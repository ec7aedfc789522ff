"""The soak driver against a real gunicorn (2 sync workers) on 127.0.0.1."""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Gunicorn, gunicorn

from memwarden.find.soak import (
    Route,
    RoutesError,
    SoakConfig,
    SoakError,
    load_routes,
    parse_routes,
    run_soak,
)

_prefixes = itertools.count(1)


class Server:
    """The shared soak_app server and the file of what it saw."""

    def __init__(self, gunicorn: Gunicorn, record: Path) -> None:
        self.gunicorn = gunicorn
        self.record = record
        self.url = f"http://127.0.0.1:{gunicorn.port}"

    def seen(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Server-side lines of one soak run, by request id."""
        out = {}
        for raw in self.record.read_text().splitlines():
            line = json.loads(raw)
            rid = line.get("request_id") or ""
            if rid.startswith(prefix + "-"):
                out[rid] = line
        return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("soak")
    record = tmp / "server.jsonl"
    record.touch()
    with gunicorn("soak_app:app", tmp, args=["-w", "2"],
                  env={"SOAK_APP_RECORD": str(record)}) as g:
        yield Server(g, record)


def routes(*entries: dict[str, Any]) -> tuple[Route, ...]:
    return parse_routes({"routes": list(entries)})


def soak(server: Server, route_table: tuple[Route, ...], **kw: Any
         ) -> tuple[str, Any, list[dict[str, Any]]]:
    """Run a soak with a fresh request-id prefix; returns (prefix, summary, records)."""
    prefix = f"t{next(_prefixes)}"
    records: list[dict[str, Any]] = []
    kw.setdefault("idle_seconds", (0.0, 0.0))
    config = SoakConfig(url=server.url, routes=route_table, request_id_prefix=prefix, **kw)
    summary = run_soak(config, on_record=records.append)
    return prefix, summary, records


def test_each_virtual_user_keeps_its_own_session(server: Server) -> None:
    """A returning user brings its cookies back (same session); a new user gets a new one."""
    prefix, summary, records = soak(server, routes({"path": "/visit"}), requests=200,
                                    new_users=0.25, seed=3)
    seen = server.seen(prefix)
    assert summary.requests == 200 and summary.failed == 0
    by_user: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_user.setdefault(record["user"], []).append(seen[record["request_id"]])
    sessions = {}
    for user, lines in by_user.items():
        sids = {line["sid"] for line in lines}
        assert len(sids) == 1, f"user {user} had sessions {sids}"
        sessions[user] = sids.pop()
        # Requests of one user are never concurrent: the session counts them in order.
        assert [line["visits"] for line in lines] == list(range(1, len(lines) + 1))
        assert [line["new"] for line in lines] == [True] + [False] * (len(lines) - 1)
    assert len(set(sessions.values())) == len(sessions) == summary.users
    assert any(len(lines) > 3 for lines in by_user.values()), "no user returned"
    # New users keep arriving: some users first appear in the last quarter of the run.
    first_seq = {r["user"]: r["seq"] for r in reversed(records)}
    assert max(first_seq.values()) > 150
    assert 10 < summary.users < 150


def test_rand_and_seq_are_substituted_in_path_body_and_headers(server: Server) -> None:
    """{rand} is a random integer in range; {seq} the request's sequence number."""
    table = routes({"path": "/items/{rand}", "weight": 1},
                   {"method": "POST", "path": "/echo", "weight": 1,
                    "json": {"seq": "{seq}", "tags": ["n{rand}", 7]},
                    "headers": {"X-Seq": "{seq}"}})
    prefix, summary, records = soak(server, table, requests=80, rand_max=50, seed=5)
    seen = server.seen(prefix)
    assert summary.requests == 80 and summary.statuses == {"200": 80}
    assert [r["seq"] for r in records] == list(range(1, 81))
    rands = set()
    for record in records:
        line = seen[record["request_id"]]
        assert line["path"] == record["path"]
        if record["template"] == "/items/{rand}":
            rand = int(record["path"].rsplit("/", 1)[1])
            assert 1 <= rand <= 50 and line["item"] == rand
            rands.add(rand)
        else:
            assert record["method"] == "POST" and record["path"] == "/echo"
            assert line["json"]["seq"] == str(record["seq"])
            assert line["json"]["tags"][0].startswith("n") and line["json"]["tags"][1] == 7
            assert line["header"] == str(record["seq"])
    assert len(rands) > 5


def test_stops_at_the_request_count(server: Server) -> None:
    """Exactly N requests, numbered 1..N, whatever the burst sizes."""
    _, summary, records = soak(server, routes({"path": "/items/{seq}"}), requests=37,
                               burst_users=(3, 10))
    assert summary.requests == 37 and summary.stopped_by == "requests"
    assert [r["seq"] for r in records] == list(range(1, 38))
    assert all(r["path"] == f"/items/{r['seq']}" for r in records)


def test_stops_at_the_wall_time(server: Server) -> None:
    """A large request count is cut off by the time bound; in-flight requests finish."""
    started = time.monotonic()
    _, summary, records = soak(server, routes({"path": "/slow?s=0.2"}), requests=100_000,
                               seconds=1.0, burst_users=(1, 2), idle_seconds=(0.0, 0.1))
    elapsed = time.monotonic() - started
    assert summary.stopped_by == "seconds"
    assert 2 <= summary.requests < 30 and len(records) == summary.requests
    assert 1.0 <= elapsed < 2.5


def test_shed_requests_are_retried_after_retry_after(server: Server) -> None:
    """A 503 with Retry-After is retried after the advertised delay."""
    prefix, summary, records = soak(server, routes({"path": "/shed?after=1"}), requests=3,
                                    burst_users=(3, 3), visit_requests=(1, 1))
    assert summary.shed == 3 and summary.retried == 3 and summary.failed == 0
    for record in records:
        assert record["status"] == 200 and record["retries"] == 1 and record["shed"]
        assert record["duration_ms"] >= 1000
    seen = server.seen(prefix)
    assert sorted(seen) == sorted([f"{prefix}-{i}" for i in (1, 2, 3)]
                                  + [f"{prefix}-{i}.1" for i in (1, 2, 3)])
    assert [seen[f"{prefix}-{i}"]["first"] for i in (1, 2, 3)] == [True] * 3


def test_retries_are_bounded_in_count_and_delay(server: Server) -> None:
    """An always-shedding route gives up after max_retries; a long Retry-After is capped."""
    prefix, summary, records = soak(server, routes({"path": "/always-shed"}), requests=2,
                                    max_retries=2, visit_requests=(1, 1), burst_users=(2, 2))
    assert summary.failed == 2 and summary.shed == 2 and summary.retries == 4
    assert all(r["status"] == 503 and r["retries"] == 2 for r in records)
    assert len(server.seen(prefix)) == 6
    started = time.monotonic()
    _, summary, records = soak(server, routes({"path": "/shed?after=3600"}), requests=1,
                               max_retry_after=0.3)
    assert records[0]["status"] == 200 and records[0]["retries"] == 1
    assert 0.3 <= time.monotonic() - started < 3


def test_connection_errors_while_a_worker_restarts_are_retried(server: Server) -> None:
    """A worker dying mid-request (as in a recycle) costs a retry, not a failure."""
    _, summary, records = soak(server, routes({"path": "/crash"}), requests=2,
                               visit_requests=(1, 1), burst_users=(1, 1))
    assert summary.failed == 0 and summary.connection_errors >= 2
    for record in records:
        assert record["status"] == 200 and record["retries"] >= 1 and record["error"] is None
    assert server.gunicorn.proc.poll() is None


def test_redirects_are_recorded_not_followed(server: Server) -> None:
    """A redirect off the machine is a result, never a second request elsewhere."""
    _, summary, records = soak(server, routes({"path": "/away"}), requests=3)
    assert [r["status"] for r in records] == [302, 302, 302]
    assert summary.failed == 0


def test_localhost_is_accepted_and_keeps_cookies(server: Server) -> None:
    """http://localhost targets work; cookies stick to the user as with 127.0.0.1."""
    port = server.gunicorn.port
    prefix = f"t{next(_prefixes)}"
    records: list[dict[str, Any]] = []
    config = SoakConfig(url=f"http://localhost:{port}", routes=routes({"path": "/visit"}),
                        requests=30, new_users=0.0, burst_users=(1, 1), visit_requests=(1, 1),
                        idle_seconds=(0.0, 0.0), request_id_prefix=prefix)
    run_soak(config, on_record=records.append)
    seen = server.seen(prefix)
    assert {r["user"] for r in records} == {1}
    assert [seen[r["request_id"]]["visits"] for r in records] == list(range(1, 31))


@pytest.mark.parametrize("url", [
    "http://example.com:8000",
    "http://10.0.0.1:8000",
    "http://127.0.0.2:8000",
    "http://0.0.0.0:8000",
    "http://[::1]:8000",
    "http://localhost.example.com:8000",
    "http://127.0.0.1@example.com:8000",
    "https://127.0.0.1:8443",
    "ftp://127.0.0.1/",
])
def test_non_local_targets_are_refused(url: str) -> None:
    """Anything but http://127.0.0.1 or http://localhost is refused before any traffic."""
    with pytest.raises(SoakError, match=r"refusing|only http://"):
        SoakConfig(url=url)


def test_same_seed_same_traffic(server: Server, tmp_path: Path) -> None:
    """The seed fixes users, routes, paths and order; another seed changes them."""
    table = routes({"path": "/items/{rand}", "weight": 2}, {"path": "/visit", "weight": 1})

    def plan(seed: int, name: str) -> list[tuple[Any, ...]]:
        path = tmp_path / name
        config = SoakConfig(url=server.url, routes=table, requests=60, seed=seed,
                            idle_seconds=(0.0, 0.0))
        run_soak(config, path)
        return [(r["seq"], r["user"], r["new_user"], r["method"], r["template"], r["path"])
                for r in map(json.loads, path.read_text().splitlines())]

    first = plan(7, "a.jsonl")
    assert len(first) == 60
    assert plan(7, "b.jsonl") == first
    assert plan(8, "c.jsonl") != first


def test_records_hold_the_documented_fields(server: Server, tmp_path: Path) -> None:
    """One JSON line per request with seq, user, method, template, status, timing, retries."""
    path = tmp_path / "out" / "soak.jsonl"
    config = SoakConfig(url=server.url, routes=routes({"path": "/items/{rand}"}), requests=5,
                        idle_seconds=(0.0, 0.0))
    summary = run_soak(config, path)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 5
    for line in lines:
        assert {"seq", "user", "method", "template", "path", "status", "duration_ms", "retries",
                "error"} <= line.keys()
        assert line["template"] == "/items/{rand}" and line["status"] == 200
    assert summary.to_json_dict()["requests"] == 5


def test_progress_is_one_updating_line_on_a_terminal(server: Server) -> None:
    """On a TTY, carriage returns and one final newline; otherwise plain lines. ASCII only."""
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        config = SoakConfig(url=server.url, routes=routes({"path": "/items/1"}), requests=20,
                            idle_seconds=(0.0, 0.0))
        run_soak(config, progress=stream)
    assert tty.getvalue().startswith("\r") and tty.getvalue().count("\n") == 1
    assert tty.getvalue().endswith("(done: stopped by requests)\n")
    assert "20/20 requests" in tty.getvalue()
    lines = plain.getvalue().splitlines()
    assert "\r" not in plain.getvalue() and len(lines) >= 2
    assert lines[-1].startswith("soak: 20/20 requests")
    assert tty.getvalue().isascii() and plain.getvalue().isascii()


@pytest.mark.parametrize(("doc", "message"), [
    ([], "expected an object like"),
    ({"routes": []}, "non-empty list"),
    ({"routes": [{"path": "/"}], "extra": 1}, "unknown top-level key"),
    ({"routes": ["/"]}, r"routes\[0\]: expected an object"),
    ({"routes": [{"path": "items"}]}, r"routes\[0\]\.path: expected a path starting with '/'"),
    ({"routes": [{"path": "//evil.example/"}]}, "starting with '/'"),
    ({"routes": [{"path": "/a b"}]}, "whitespace"),
    ({"routes": [{"path": "/", "method": "FETCH"}]}, r"\.method: expected one of"),
    ({"routes": [{"path": "/{user}"}]}, r"unknown placeholder \{user\}"),
    ({"routes": [{"path": "/{rand"}]}, "literal brace"),
    ({"routes": [{"path": "/", "weight": 0}]}, r"\.weight: expected a positive number"),
    ({"routes": [{"path": "/", "weight": True}]}, "positive number"),
    ({"routes": [{"path": "/", "wieght": 2}]}, r"unknown key\(s\) 'wieght'"),
    ({"routes": [{"path": "/", "json": {}, "body": "x"}]}, "either 'json' or 'body'"),
    ({"routes": [{"path": "/", "json": {"a": ["{nope}"]}}]}, r"json\.a\[0\].*\{nope\}"),
    ({"routes": [{"path": "/", "headers": {"Cookie": "a=b"}}]}, "set by the driver"),
    ({"routes": [{"path": "/", "headers": {"X-A": 1}}]}, "bad header"),
    ({"routes": [{"path": "/", "headers": ["X-A"]}]}, "expected an object of name"),
])
def test_bad_routes_are_refused_with_a_clear_message(doc: Any, message: str) -> None:
    """Each mistake in a routes file names the entry and what is wrong."""
    with pytest.raises(RoutesError, match=message):
        parse_routes(doc, "r.json")


def test_routes_file_is_read_and_validated(tmp_path: Path) -> None:
    """load_routes reads the docs/contracts.md example; unreadable or invalid JSON is a
    RoutesError."""
    good = tmp_path / "routes.json"
    good.write_text(json.dumps({"routes": [
        {"method": "GET", "path": "/items/{rand}", "weight": 3},
        {"method": "post", "path": "/chat", "json": {"message": "hi"}, "weight": 1,
         "headers": {"Authorization": "Bearer t"}}]}))
    table = load_routes(good)
    assert [(r.method, r.path, r.weight) for r in table] == [
        ("GET", "/items/{rand}", 3.0), ("POST", "/chat", 1.0)]
    path, body, headers = table[1].render(rand=4, seq=9)
    assert (path, body) == ("/chat", b'{"message": "hi"}')
    assert headers == {"Authorization": "Bearer t", "Content-Type": "application/json"}
    with pytest.raises(RoutesError, match="cannot read"):
        load_routes(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{routes: []}")
    with pytest.raises(RoutesError, match=r"bad\.json: not valid JSON"):
        load_routes(bad)


@pytest.mark.parametrize("kw", [
    {"requests": 0}, {"seconds": 0}, {"new_users": 1.5}, {"burst_users": (0, 3)},
    {"burst_users": (5, 2)}, {"idle_seconds": (-1.0, 1.0)}, {"visit_requests": (0, 1)},
])
def test_bad_bounds_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(SoakError):
        SoakConfig(url="http://127.0.0.1:1", **kw)


def test_an_extended_soak_sends_the_same_first_requests_and_asks_only_when_all_answered(
        server: Server) -> None:
    """Extending at a checkpoint: the first N requests are those of a run of N (same
    seed), the callback sees them all answered, and returning no more ends the run."""
    table = routes({"path": "/items/{rand}", "weight": 2}, {"path": "/visit", "weight": 1})
    _, fixed, fixed_records = soak(server, table, requests=60, burst_users=(2, 6), seed=9)
    asked: list[int] = []
    records: list[dict[str, Any]] = []

    def extend(so_far: Any) -> int:
        # Every request sent so far has its record by now.
        assert so_far.requests == len(records)
        asked.append(so_far.requests)
        return {60: 100, 100: 130}.get(so_far.requests, 0)

    config = SoakConfig(url=server.url, routes=table, requests=60, burst_users=(2, 6),
                        seed=9, idle_seconds=(0.0, 0.0), request_id_prefix="ext")
    summary = run_soak(config, on_record=records.append, extend=extend)
    assert asked == [60, 100, 130]
    assert summary.requests == 130 and summary.stopped_by == "requests"
    assert [r["seq"] for r in records] == list(range(1, 131))
    assert fixed.requests == 60
    assert [(r["user"], r["path"]) for r in records[:60]] == [
        (r["user"], r["path"]) for r in fixed_records]
