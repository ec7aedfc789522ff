"""Helpers shared by the tests: real servers on 127.0.0.1 and their logs, waiting,
a process's memory as /proc tells it, stand-ins and a memory cgroup for the hold
tests, and in-process async pools."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from memwarden.footprint import Footprint
from memwarden.gunicorn_conf import CHILD_NAME
from memwarden.hold.pool import Pool

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


# The hold tests' gunicorn config, and the limits each hold test starts from:
# all off, so that each switches on only what it checks.
HOLD_CONF = str(REPO / "tests" / "apps" / "hold_conf.py")
QUIET = {"MEMWARDEN_SOFT_LIMIT": "off", "MEMWARDEN_IDLE_LIMIT": "off",
         "MEMWARDEN_HARD_LIMIT": "off", "MEMWARDEN_ORPHAN_GRACE_SECONDS": "0.5"}


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """``check()``'s first true value, polled; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[Any] | None = None
                  ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 30.0
            ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file that is a JSON object; other lines are an error."""
    out = []
    text = path.read_text(errors="replace")
    # A line being written may be seen cut at a page boundary: parse whole lines only.
    text = text[:text.rfind("\n") + 1]
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"log line is not JSON: {raw[:300]!r}") from exc
        out.append(obj)
    return out


def descendants(pid: int) -> list[int]:
    """Live descendants of pid, from /proc (children files)."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        nxt: list[int] = []
        for p in frontier:
            try:
                tids = os.listdir(f"/proc/{p}/task")
            except OSError:
                continue
            for tid in tids:
                with contextlib.suppress(OSError):
                    children = Path(f"/proc/{p}/task/{tid}/children").read_text()
                    nxt += [int(x) for x in children.split()]
        found += nxt
        frontier = nxt
    return found


# What an exporter's figures are checked against: the kernel's own, read here apart
# from memwarden's probe so that a mistake there cannot hide in both.

def proc_rss(pid: int) -> int:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def proc_pss(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return int(re.search(r"^Pss:\s+(\d+) kB", text, re.M).group(1)) * 1024  # type: ignore[union-attr]


def proc_threads(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def _comm(pid: int) -> str | None:
    """A process's name; None once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


class Gunicorn:
    """A real gunicorn on 127.0.0.1 with its stderr in a file."""

    def __init__(self, app: str, tmp: Path, *, args: list[str] | None = None,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None,
                 config: str = "python:memwarden.gunicorn_conf") -> None:
        self.port = free_port()
        self.log_path = tmp / f"gunicorn-{self.port}.log"
        cmd = [str(VENV_BIN / "gunicorn"), "-c", config, "-b", f"127.0.0.1:{self.port}",
               "--no-control-socket", *(args or []), app]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=cwd or (REPO / "tests" / "apps"), env=full_env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_for_port(self.port, proc=self.proc)
        except Exception:
            self.stop()
            raise AssertionError(f"gunicorn did not start:\n{self.log_path.read_text()[-3000:]}"
                                 ) from None

    def request(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return request(self.port, method, path, **kw)

    def lines(self, logger: str | None = None, message: str | None = None
              ) -> list[dict[str, Any]]:
        found = json_lines(self.log_path)
        if logger is not None:
            found = [x for x in found if x.get("logger") == logger]
        if message is not None:
            found = [x for x in found if x.get("message") == message]
        return found

    def request_lines(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` request lines are written, then return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.lines("memwarden.request", "request")
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def worker_pids(self, expect: int | None = None, timeout: float = 15.0) -> list[int]:
        """The master's children that are workers; waits until ``expect`` of them run.

        The start summary's short-lived child (named CHILD_NAME once it runs) is
        not a worker: a pid counts when seen on two polls in a row and not so named.
        """
        deadline = time.monotonic() + timeout
        seen: list[int] | None = None
        while True:
            path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            pids = [pid for pid in map(int, path.read_text().split())
                    if _comm(pid) not in (CHILD_NAME, None)]
            stable = pids == seen
            seen = pids
            if stable and (expect is None or len(pids) == expect):
                return pids
            if time.monotonic() > deadline:
                return pids
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()

    def __enter__(self) -> Gunicorn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def gunicorn(app: str, tmp: Path, **kw: Any) -> Iterator[Gunicorn]:
    server = Gunicorn(app, tmp, **kw)
    try:
        yield server
    finally:
        server.stop()


# -- stand-ins and a memory cgroup for the hold tests ---------------------------------


class FakeSampler:
    """Stands in for FootprintSampler: the footprint is whatever the test sets
    (or a request line's ``rss_bytes``); ``fresh`` records what each now() asked."""

    def __init__(self, total: int = 0) -> None:
        self.total = total
        self.fresh: list[bool] = []

    def observe(self, fields: dict[str, Any]) -> Footprint:
        return Footprint(fields.get("rss_bytes", self.total), "rss", 0, ())

    def now(self, fresh: bool = False) -> Footprint:
        self.fresh.append(fresh)
        return Footprint(self.total, "rss", 0, ())


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[Path]:
    """A child memory cgroup (v1) with ``limit`` bytes; skips when none can be made."""
    line = next((x for x in Path("/proc/self/cgroup").read_text().splitlines()
                 if ":memory:" in x), None)
    if line is None:
        pytest.skip("no cgroup v1 memory controller here")
    group = Path("/sys/fs/cgroup/memory") / line.split(":", 2)[2].lstrip("/") / (
        f"memwarden-test-{uuid.uuid4().hex[:8]}")
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit))
        with contextlib.suppress(OSError):
            (group / "memory.memsw.limit_in_bytes").write_text(str(limit))
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here: {exc}")
    try:
        yield group
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


# -- in-process async pools ---------------------------------------------------------


def arun(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run one test scenario on a fresh loop, bounded in time."""
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro
    return asyncio.run(bounded())


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


class Res:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = 0

    def __repr__(self) -> str:
        return f"Res({self.n})"


class Factory:
    """Makes and closes Res objects, tracking how many are live at once."""

    def __init__(self, delay: float = 0.0, close_delay: float = 0.0) -> None:
        self.delay = delay
        self.close_delay = close_delay
        self.made: list[Res] = []
        self.live = 0
        self.max_live = 0
        self.fail_next = 0

    async def create(self) -> Res:
        self.live += 1  # counted from the start: a half-made resource is live too
        self.max_live = max(self.max_live, self.live)
        try:
            await asyncio.sleep(self.delay)
            if self.fail_next:
                self.fail_next -= 1
                raise ConnectionError("cannot create")
        except BaseException:
            self.live -= 1
            raise
        res = Res(len(self.made))
        self.made.append(res)
        return res

    async def close(self, res: Res) -> None:
        await asyncio.sleep(self.close_delay)
        res.closed += 1
        self.live -= 1

    def pool(self, **kwargs: Any) -> Pool[Res]:
        kwargs.setdefault("max_size", 2)
        kwargs.setdefault("acquire_timeout", 1.0)
        return Pool(self.create, self.close, **kwargs)


def flaky_health_check(rng: random.Random) -> Callable[[Res], Awaitable[bool]]:
    """A health check that takes a moment and fails one time in five."""
    async def health_check(res: Res) -> bool:
        await asyncio.sleep(rng.random() * 0.001)
        return rng.random() > 0.2

    return health_check


async def random_users(pool: Pool[Res], factory: Factory, rng: random.Random, users: int,
                       close_early: bool, inside: Callable[[], None] = lambda: None
                       ) -> list[Any]:
    """Users who acquire at random moments: some creations fail, some bodies fail,
    some users are cancelled, the pool may be closed early. ``inside`` runs within
    each lease. Returns each user's outcome once nothing is being created or closed."""
    async def user() -> None:
        await asyncio.sleep(rng.random() * 0.01)
        if rng.random() < 0.2:
            factory.fail_next += 1
        body_fails = rng.random() < 0.2
        async with pool.acquire(discard_on_error=rng.random() < 0.5) as res:
            inside()
            assert res.closed == 0 or pool.closed
            await asyncio.sleep(rng.random() * 0.005)
            if body_fails:
                raise OSError("body failed")

    tasks = [asyncio.create_task(user()) for _ in range(users)]
    for task in tasks:
        if rng.random() < 0.3:
            await asyncio.sleep(rng.random() * 0.005)
            task.cancel()
    if close_early:
        await asyncio.sleep(rng.random() * 0.01)
        await pool.close(timeout=rng.choice([0.0, 0.002, 1.0]))
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    await until(lambda: pool.stats().closing == 0 and pool.stats().creating == 0)
    return outcomes
