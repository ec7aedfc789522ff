"""Hostile traffic against a Flask service with and without memwarden, same run.

Two real gunicorn services (2 sync workers each) run the same small Flask app
(tests/apps/secrets_flask.py: a path variable, routes that raise, POSTs): one
with memwarden (``memwarden.gunicorn_conf``, access log on), one bare. Each
request of one seeded sequence goes to both, over raw sockets so malformed
headers really go out: oversized, duplicated and many X-Request-ID headers,
control characters, invalid UTF-8, scanner-like random paths, and a marker
secret in query strings, path segments, Cookie, Authorization and bodies.
Then ``memwarden analyze`` reads memwarden's log and writes its JSON and HTML
reports.

Counted: 5xx responses memwarden's service gave where the bare one did not;
occurrences of the marker in memwarden's log and both reports; the workers'
RSS growth (both workers, summed) per 1,000 requests after a warm-up.

Bounded in count (``--requests``, 10,000; ``--requests 500`` for a quick run)
and time (``--seconds``). Last line: ``hostile_requests=N server_errors=E
secrets_in_logs=S memwarden_growth_kib_per_1k=G baseline_growth_kib_per_1k=B``.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support import VENV_BIN, Gunicorn  # noqa: E402

MARKER = "HstlMrk9Q2vXs3cr3t"  # mixed case and digits, as real tokens are
APP = "secrets_flask:app"
PAGE = os.sysconf("SC_PAGE_SIZE")


def _words(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _scanner_path(rng: random.Random) -> str:
    fixed = ["/wp-login.php", "/.env", "/.git/config", "/admin/config.php", "/phpmyadmin/",
             "/cgi-bin/luci", "/%2e%2e/%2e%2e/etc/passwd", "/actuator/health", "/server-status",
             "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/boaform/admin/formLogin"]
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice(fixed)
    if kind == 1:
        return "/" + "/".join(_words(rng, rng.randint(2, 9)) for _ in range(rng.randint(1, 5)))
    if kind == 2:
        return f"/api/v1/{os.urandom(16).hex()}/{_words(rng, 5)}"
    return f"/{_words(rng, 4)}/{MARKER}/{rng.randint(0, 10**9)}"


def _request(method: str, target: str, headers: list[tuple[bytes, bytes]],
             body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"Host: 127.0.0.1",
             b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body or method == "POST":
        lines.append(b"Content-Type: application/x-www-form-urlencoded")
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _secret_headers(rng: random.Random) -> list[tuple[bytes, bytes]]:
    m = MARKER.encode()
    return [(b"Cookie", b"session=" + m + b"; theme=dark"),
            (b"Authorization", rng.choice([b"Bearer ", b"Basic ", b"Token "]) + m)]


def _hostile_headers(rng: random.Random) -> list[tuple[bytes, bytes]]:
    m = MARKER.encode()
    kind = rng.randrange(7)
    if kind == 0:  # oversized, just under and over gunicorn's field limit
        return [(b"X-Padding", b"p" * rng.choice([4000, 8000, 9000]))]
    if kind == 1:  # duplicated, secrets in both copies
        return [(b"Cookie", b"a=" + m), (b"Cookie", b"b=" + m),
                (b"Authorization", b"Bearer " + m), (b"Authorization", b"Basic " + m)]
    if kind == 2:  # control characters
        return [(b"X-Request-ID", b"id\x01\x1b[31m" + m), (b"User-Agent", b"ua\x7f\x08x")]
    if kind == 3:  # invalid UTF-8
        return [(b"X-Request-ID", b"\xff\xfe" + m), (b"User-Agent", b"\xc3\x28\xa0\xa1")]
    if kind == 4:  # many X-Request-ID, each on its own a valid id
        return [(b"X-Request-ID", b"id-%d-" % i + m) for i in range(rng.randint(2, 40))]
    if kind == 5:  # overlong id, and a traceparent that must not be taken instead
        return [(b"X-Request-ID", m * 10),
                (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    return [(b"X-Request-ID", b"ok-" + bytes(rng.randrange(48, 58) for _ in range(8)))]


def hostile_traffic(count: int, seed: int) -> list[bytes]:
    """The same ``count`` raw requests for a given seed."""
    rng = random.Random(seed)
    query = f"token={MARKER}&next=/a?b={MARKER}"
    out = []
    for _ in range(count):
        roll = rng.random()
        headers = _secret_headers(rng) + (_hostile_headers(rng) if rng.random() < 0.5 else [])
        rng.shuffle(headers)
        if roll < 0.25:
            item = MARKER if rng.random() < 0.5 else str(rng.randint(0, 10**6))
            out.append(_request("GET", f"/items/{item}?{query}", headers))
        elif roll < 0.30:
            out.append(_request("GET", f"/fail/{MARKER}?{query}", headers))
        elif roll < 0.42:
            body = f"user=alice&password={MARKER}&pad={'x' * rng.randint(0, 3000)}".encode()
            out.append(_request("POST", f"/submit?{query}", headers, body))
        elif roll < 0.45:
            out.append(_request("POST", f"/submit-fail?{query}", headers,
                                f"password={MARKER}".encode()))
        elif roll < 0.75:
            sep = "?" if rng.random() < 0.7 else ""
            out.append(_request(rng.choice(["GET", "GET", "POST", "HEAD"]),
                                _scanner_path(rng) + (sep + query if sep else ""), headers))
        elif roll < 0.98:
            out.append(_request("GET", f"/items/1?{query}", _hostile_headers(rng) + headers))
        else:  # a request line no server accepts
            out.append(rng.choice([f"GET /x {MARKER} HTTP/1.1\r\n\r\n".encode(),
                                   f"G\x01T /items/{MARKER} HTTP/1.1\r\n\r\n".encode("latin-1"),
                                   b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"]))
    return out


def send(port: int, raw: bytes, timeout: float = 15.0) -> int:
    """The response's status; 0 when the server closed without one."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(raw)
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            while sock.recv(65536):  # drain to the end, as a client does
                pass
    except OSError:
        return 0
    parts = reply.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def workers_rss(server: Gunicorn) -> tuple[tuple[int, ...], int]:
    """The workers' pids and their RSS summed, from /proc."""
    pids = tuple(sorted(server.worker_pids(expect=2)))
    total = 0
    for pid in pids:
        total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return pids, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=900.0, help="stop sending after this")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--out", type=Path, default=None, help="keep logs and reports here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="memwarden-hostile-"))
    out.mkdir(parents=True, exist_ok=True)
    traffic = hostile_traffic(args.requests, args.seed)
    warmup = min(1000, len(traffic) // 5)
    bare_conf = out / "bare_conf.py"
    bare_conf.write_text("# gunicorn's defaults\n")
    env = {"MEMWARDEN_ACCESS_LOG": "1"}
    memwarden = Gunicorn(APP, out, args=["-w", "2"], env=env)
    bare = Gunicorn(APP, out, args=["-w", "2"], config=str(bare_conf))
    server_errors = sent = 0
    statuses: dict[str, dict[int, int]] = {"memwarden": {}, "bare": {}}
    try:
        started = time.monotonic()
        before: dict[str, tuple[tuple[int, ...], int]] = {}
        for i, raw in enumerate(traffic):
            if i == warmup:
                before = {"memwarden": workers_rss(memwarden), "bare": workers_rss(bare)}
            if time.monotonic() - started > args.seconds:
                break
            with_mw = send(memwarden.port, raw)
            without = send(bare.port, raw)
            sent += 1
            statuses["memwarden"][with_mw] = statuses["memwarden"].get(with_mw, 0) + 1
            statuses["bare"][without] = statuses["bare"].get(without, 0) + 1
            if with_mw >= 500 and without < 500:
                server_errors += 1
        after = {"memwarden": workers_rss(memwarden), "bare": workers_rss(bare)}
        elapsed = time.monotonic() - started
    finally:
        memwarden.stop()
        bare.stop()
    measured = max(1, sent - warmup)
    growth = {}
    for name in ("memwarden", "bare"):
        pids_before, rss_before = before.get(name, after[name])
        pids_after, rss_after = after[name]
        if pids_before != pids_after:
            print(f"{name}: workers changed during the run {pids_before} -> {pids_after}")
        growth[name] = (rss_after - rss_before) / 1024 / (measured / 1000)
    report_json, report_html = out / "report.json", out / "report.html"
    done = subprocess.run([str(VENV_BIN / "memwarden"), "analyze", str(memwarden.log_path),
                           "--json", str(report_json), "--html", str(report_html)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode not in (0, 1):
        print(f"memwarden analyze exited {done.returncode}: {done.stderr[-2000:]}")
    written = [memwarden.log_path, report_json, report_html]
    secrets = 0
    for path in written:
        if path.exists():
            count = path.read_text(errors="replace").count(MARKER)
            secrets += count
            print(f"{path.name}: {path.stat().st_size} bytes, marker {count} times")
        else:
            print(f"{path.name}: not written")
    bare_count = bare.log_path.read_text(errors="replace").count(MARKER)
    print(f"bare service's own log (not memwarden's): marker {bare_count} times")
    for name, counts in statuses.items():
        print(f"{name} statuses: " + " ".join(f"{k}:{v}" for k, v in sorted(counts.items())))
    print(f"sent {sent} requests to each service in {elapsed:.1f} s; warm-up {warmup}; "
          f"logs and reports in {out}")
    print(f"hostile_requests={sent} server_errors={server_errors} secrets_in_logs={secrets} "
          f"memwarden_growth_kib_per_1k={growth['memwarden']:.1f} "
          f"baseline_growth_kib_per_1k={growth['bare']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
