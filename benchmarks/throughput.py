"""Throughput under real gunicorn: memwarden against a bare app and its peers.

A hello-world Flask app under gunicorn (2 sync workers) and a FastAPI app
under gunicorn with the uvicorn worker (1 worker), on 127.0.0.1, loaded by
wrk at 10 connections. Variants, their rounds interleaved so that drift and
other load on the machine hit them alike:

- bare: the app alone;
- memwarden: the same app under ``-c python:memwarden.gunicorn_conf`` with its
  defaults, the request lines written to a file;
- census: the same with the census on every request (``MEMWARDEN_CENSUS_EVERY=1``);
- prometheus: prometheus_flask_exporter or prometheus-fastapi-instrumentator;
- naive: psutil before and after, one json.dumps line (benchmarks/apps/naive.py);
- floor: one statm pread and one write(2) of a line of the same size per request,
  nothing else (benchmarks/apps/floor.py): the least a per-request memory line
  costs here, the floor under memwarden's own cost.

Every round checks that every request was answered 2xx (wrk's non-2xx/3xx
and socket error counts are 0) and, for memwarden's variants, that the log
holds one request line per request: at least wrk's count of completed
requests, and at most the connections more (those in flight when wrk stopped
are finished and logged by the server, not counted by wrk).

Why one uvicorn worker: an async worker accepts as many connections as it
can, so wrk's 10 keep-alive connections, opened once, split between two
uvicorn workers as the accepts happened to fall, and req/s followed the
split, not the cost of a request: the floor, which does more than bare, came
out at 1.6 times bare's req/s. gunicorn's sync worker closes every
connection after its response, so wrk connects again for each request and
Flask's two workers take the accepts as they come free. With one uvicorn
worker every connection is served by the same process, with wrk on the
other core (the master sleeps): req/s is that worker's cost per request.

Then memwarden's own memory: fresh bare and memwarden Flask servers, the
workers' mean RSS once booted and after 10,000 requests.

The line before the last: ``floor_ratio=F asgi_floor_ratio=G``, the floor's
median req/s over bare's (Flask, FastAPI). Last line: ``throughput_ratio=R
asgi_throughput_ratio=A best_peer_ratio=P own_rss_mib=M``: memwarden's median
req/s over bare's (Flask, FastAPI), the best peer's ratio on Flask, and
memwarden's RSS per worker after 10,000 requests less bare's, in MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

APPS = Path(__file__).resolve().parent / "apps"
CONF = "python:memwarden.gunicorn_conf"
CONNECTIONS = 10
# wrk's summary as one JSON line, from its done() hook (cheap: once per run).
SUMMARY_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d,'
    .. ' "status": %d, "timeout": %d}\\n', summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class Variant:
    name: str
    factory: str  # the apps module's factory: bare, prometheus, naive
    memwarden: bool = False
    env: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()  # more gunicorn arguments
    module: str | None = None  # the app's module, named for each family by factory


VARIANTS = (
    Variant("bare", "bare"),
    Variant("memwarden", "bare", memwarden=True),
    Variant("census", "bare", memwarden=True, env=(("MEMWARDEN_CENSUS_EVERY", "1"),)),
    Variant("prometheus", "prometheus"),
    Variant("naive", "naive"),
    Variant("floor", "", module="floor"),
)


@dataclass(frozen=True)
class Family:
    module: str
    workers: int
    args: tuple[str, ...] = ()


# One uvicorn worker: two would split wrk's connections by accept luck (module docstring).
FAMILIES = {"flask": Family("flask_hello", 2),
            "fastapi": Family("fastapi_hello", 1, ("-k", "uvicorn_worker.UvicornWorker"))}
PEERS = ("prometheus", "naive")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    family: str
    variant: Variant
    log: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    req_per_s: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # master and workers, per request
    requests: int = 0
    lines: int = 0  # request lines the rounds wrote (memwarden's variants)

    def start(self) -> None:
        family = FAMILIES[self.family]
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMWARDEN_")}
        env.update(self.variant.env)
        env["PYTHONPATH"] = str(APPS)
        if not self.variant.memwarden:
            # The peers keep their metrics per process, as without a multiprocess dir.
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [sys.executable, "-m", "gunicorn", "-w", str(family.workers), *family.args,
                   "-b", f"127.0.0.1:{self.port}", "--chdir", str(APPS)]
        if self.variant.memwarden:
            command += ["-c", CONF]
        command += self.variant.args
        if self.variant.module is not None:
            command.append(f"{self.variant.module}:{self.family}()")
        else:
            command.append(f"{family.module}:{self.variant.factory}()")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=out,
                                            start_new_session=True)
        self.wait_ready()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hello/world"

    def workers(self) -> list[psutil.Process]:
        assert self.process is not None
        return psutil.Process(self.process.pid).children()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every worker booted: their RSS unchanged over two readings, then 200s."""
        deadline = time.monotonic() + timeout
        last: list[int] = []
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"{self.family}/{self.variant.name} exited: see {self.log}")
            time.sleep(0.25)
            try:
                now = [w.memory_info().rss for w in self.workers()]
            except psutil.Error:
                continue
            if len(now) == FAMILIES[self.family].workers and now == last:
                break
            last = now
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(self.url(), timeout=5) as response:
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise SystemExit(f"{self.family}/{self.variant.name} not ready: see {self.log}")

    def cpu_seconds(self) -> float:
        """User and system CPU of the master and its workers so far."""
        assert self.process is not None
        return sum(sum(p.cpu_times()[:2])
                   for p in (psutil.Process(self.process.pid), *self.workers()))

    def rss_mib(self) -> float:
        return statistics.mean(w.memory_info().rss for w in self.workers()) / 2**20

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def request_lines(self) -> int:
        with self.log.open("rb") as f:
            return sum(1 for line in f if b'"message": "request"' in line)

    def settled_lines(self) -> int:
        """Request lines once the server has finished what was in flight."""
        count = self.request_lines()
        while True:
            time.sleep(0.3)
            now = self.request_lines()
            if now == count:
                return count
            count = now


def wrk(url: str, seconds: int, script: Path) -> dict[str, int]:
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s",
                          str(script), url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60)
    summary: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return summary


def load_round(server: Server, seconds: int, script: Path) -> None:
    before = server.request_lines() if server.variant.memwarden else 0
    cpu = server.cpu_seconds()
    summary = wrk(server.url(), seconds, script)
    cpu = server.cpu_seconds() - cpu
    name = f"{server.family}/{server.variant.name}"
    errors = {k: summary[k] for k in ("connect", "read", "write", "status", "timeout")}
    if any(errors.values()) or summary["requests"] == 0:
        raise SystemExit(f"{name}: not every request answered 2xx: {summary}")
    server.requests += summary["requests"]
    server.cpu_us.append(cpu / summary["requests"] * 1e6)
    server.req_per_s.append(summary["requests"] / (summary["duration_us"] / 1e6))
    if server.variant.memwarden:
        lines = server.settled_lines() - before
        server.lines += lines
        if not summary["requests"] <= lines <= summary["requests"] + CONNECTIONS:
            raise SystemExit(f"{name}: {lines} request lines for {summary['requests']} "
                             f"requests (+ at most {CONNECTIONS} in flight)")


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[list[Server]]:
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def throughput(work: Path, rounds: int, seconds: int, families: tuple[str, ...] = tuple(FAMILIES),
               variants: tuple[Variant, ...] = VARIANTS) -> dict[str, dict[str, float]]:
    """Median req/s per family and variant (the first variant is the ratios' base)."""
    script = work / "summary.lua"
    script.write_text(SUMMARY_LUA)
    medians: dict[str, dict[str, float]] = {}
    for family in families:
        servers = [Server(family, v, work / f"{family}-{v.name}.log") for v in variants]
        with running(servers):
            for server in servers:  # warm-up: first census, caches
                wrk(server.url(), 1, script)
            for _ in range(rounds):
                for server in servers:
                    load_round(server, seconds, script)
        medians[family] = {s.variant.name: statistics.median(s.req_per_s) for s in servers}
        report(family, servers)
    return medians


def report(family: str, servers: list[Server]) -> None:
    """Median req/s and its ratio to the first server's; CPU per request (the
    server's processes: steadier than req/s on a shared machine) and what it adds."""
    rate0 = statistics.median(servers[0].req_per_s)
    cpu0 = statistics.median(servers[0].cpu_us)
    for server in servers:
        rate, cpu = statistics.median(server.req_per_s), statistics.median(server.cpu_us)
        lines = f"{server.lines} lines, " if server.variant.memwarden else ""
        print(f"{family:8s} {server.variant.name:11s} {rate:9.0f} req/s  "
              f"ratio {rate / rate0:.3f}  cpu {cpu:5.0f} us/request (+{cpu - cpu0:4.0f})  "
              f"({server.requests} requests, {lines}all 2xx)")


def own_memory(work: Path, requests: int) -> float:
    """Memwarden's RSS per Flask worker less bare's, after ``requests`` requests
    (or the few more a wrk run of whole seconds makes)."""
    script = work / "summary.lua"
    after: dict[str, float] = {}
    for variant in VARIANTS[:2]:
        server = Server("flask", variant, work / f"memory-{variant.name}.log")
        with running([server]):
            booted = server.rss_mib()
            served = 0
            while served < requests:
                served += wrk(server.url(), 1, script)["requests"]
            after[variant.name] = server.rss_mib()
            print(f"memory   {variant.name:11s} worker RSS {booted:6.1f} MiB booted, "
                  f"{after[variant.name]:6.1f} MiB after {served} requests")
    own = after["memwarden"] - after["bare"]
    print(f"memory   memwarden's own RSS per worker after {requests} requests: {own:.1f} MiB")
    return own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5, help="wrk run per round")
    parser.add_argument("--memory-requests", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true",
                        help="1 round of 1 s, 500 requests for memory: checks, not figures")
    parser.add_argument("--keep", type=Path, default=None, help="keep the logs here")
    parser.add_argument("--family", action="append", choices=tuple(FAMILIES),
                        help="only this family (repeatable); then no memory part and no "
                             "summary lines: for quick looks, not the figures")
    parser.add_argument("--variants", default=None,
                        help="only these variants, comma-separated, bare first (with --family)")
    args = parser.parse_args()
    # A SIGTERM (a timeout, Ctrl-C's cousin) still stops the servers started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.rounds, args.seconds, args.memory_requests = 1, 1, 500
    with tempfile.TemporaryDirectory(prefix="mw-throughput-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        workers = " ".join(f"{name}_workers={f.workers}" for name, f in FAMILIES.items())
        print(f"rounds={args.rounds} seconds={args.seconds} connections={CONNECTIONS} "
              f"{workers}")
        if args.family or args.variants:
            names = (args.variants or ",".join(v.name for v in VARIANTS)).split(",")
            chosen = tuple(v for name in names for v in VARIANTS if v.name == name)
            if len(chosen) != len(names):
                parser.error(f"--variants: one of {names} is none of "
                             f"{[v.name for v in VARIANTS]}")
            throughput(work, args.rounds, args.seconds, tuple(args.family or FAMILIES), chosen)
            return
        medians = throughput(work, args.rounds, args.seconds)
        own = own_memory(work, args.memory_requests)
    flask, fastapi = medians["flask"], medians["fastapi"]
    best_peer = max(flask[p] for p in PEERS) / flask["bare"]
    print(f"floor_ratio={flask['floor'] / flask['bare']:.3f} "
          f"asgi_floor_ratio={fastapi['floor'] / fastapi['bare']:.3f}")
    print(f"throughput_ratio={flask['memwarden'] / flask['bare']:.3f} "
          f"asgi_throughput_ratio={fastapi['memwarden'] / fastapi['bare']:.3f} "
          f"best_peer_ratio={best_peer:.3f} own_rss_mib={own:.1f}")


if __name__ == "__main__":
    main()
