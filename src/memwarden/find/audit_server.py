"""The gunicorn server of an audit: start checks, readiness, stop, and its log.

An audit runs the app under real gunicorn on 127.0.0.1 as a child process
group; these are the parts that deal with that process and with the one log
file its master and workers share.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ASGI_WORKER_CLASS", "PROBE_ID", "PROBE_PATH", "AppInfo", "AuditError", "detect_app",
           "free_port", "group_alive", "gunicorn_control_flags", "log_tail", "split_log",
           "stop_server", "wait_ready"]

ASGI_WORKER_CLASS = "uvicorn_worker.UvicornWorker"
# Request ids of the readiness probe: its request lines are left out of
# requests.jsonl, which holds the soak's traffic only.
PROBE_ID = "memwarden-audit-ready"
PROBE_PATH = "/memwarden-audit-ready"
_LOG_TAIL = 4000

# Runs in a child interpreter, so the user's module is never imported into
# the CLI's process. gunicorn's own import_app gives gunicorn's semantics
# ("module", "module:attr", "module:factory(...)").
_DETECT = r"""
import importlib.util, inspect, json, os, sys
sys.path.insert(0, os.getcwd())
from gunicorn.util import import_app
try:
    app = import_app(sys.argv[1])
except BaseException as exc:
    import traceback
    traceback.print_exc()
    sys.exit(3)
call = getattr(app, "__call__", None)
asgi = inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)
print(json.dumps({"asgi": asgi, "type": type(app).__module__ + "." + type(app).__qualname__,
                  "uvicorn_worker": importlib.util.find_spec("uvicorn_worker") is not None}))
"""


class AuditError(RuntimeError):
    """An audit that cannot run: bad arguments, an app that does not import or start."""


@dataclass(frozen=True, slots=True)
class AppInfo:
    asgi: bool
    type: str
    uvicorn_worker: bool




def log_tail(path: Path, limit: int = _LOG_TAIL) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(size - limit, 0))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def detect_app(app: str, app_dir: Path, env: Mapping[str, str], timeout: float = 60.0
               ) -> AppInfo:
    """Import ``app`` in a child interpreter: is it an ASGI app? Errors show its traceback."""
    try:
        done = subprocess.run([sys.executable, "-c", _DETECT, app], cwd=app_dir, env=dict(env),
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise AuditError(f"importing {app!r} took longer than {timeout:g} s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-_LOG_TAIL:]
        raise AuditError(f"cannot load the app {app!r} from {app_dir}:\n{detail}")
    try:
        info = json.loads(done.stdout.strip().splitlines()[-1])
        return AppInfo(asgi=bool(info["asgi"]), type=str(info["type"]),
                       uvicorn_worker=bool(info["uvicorn_worker"]))
    except (IndexError, KeyError, ValueError):
        raise AuditError(f"cannot tell what kind of app {app!r} is; its import printed:\n"
                         f"{done.stdout[-_LOG_TAIL:]}") from None


def gunicorn_control_flags() -> list[str]:
    """gunicorn >= 25.1 opens a control socket at a fixed path; two servers
    (an audit beside a running service) would fight over it."""
    try:
        gconfig = importlib.import_module("gunicorn.config")
    except ImportError:
        raise AuditError("gunicorn is not installed in this environment "
                         f"({sys.executable}); pip install gunicorn") from None
    known = {flag for setting in gconfig.KNOWN_SETTINGS for flag in getattr(setting, "cli", [])
             or []}
    return ["--no-control-socket"] if "--no-control-socket" in known else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    """Until a request gets any HTTP answer (a 404 will do): workers load the
    app lazily, so an open port alone does not mean the app imported."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        if proc.poll() is not None:
            raise AuditError(f"gunicorn exited with status {proc.returncode} before serving; "
                             f"the end of its log ({log}):\n{log_tail(log)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AuditError(f"gunicorn did not serve on 127.0.0.1:{port} within {timeout:g} s; "
                             f"the end of its log ({log}):\n{log_tail(log)}")
        attempt += 1
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=min(remaining, 5.0))
        try:
            conn.request("GET", PROBE_PATH, headers={"X-Request-ID": f"{PROBE_ID}-{attempt}"})
            conn.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
        finally:
            conn.close()


def stop_server(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM: gunicorn's graceful stop, so workers exit and log it; then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    # The master is gone or stuck: take its whole group (orphaned workers too),
    # and wait for them, so nothing writes to the log once it is read.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    deadline = time.monotonic() + 5.0
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not count:
    an orphan's zombie waits for init, which may be slow to reap it)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def split_log(log: Path, requests_log: Path) -> tuple[int, tuple[int, ...]]:
    """Copy every memwarden JSON line (but the probe's) to ``requests_log``."""
    count = 0
    pids: set[int] = set()
    with log.open("rb") as src, requests_log.open("wb") as dst:
        for raw in src:
            if not raw.startswith(b"{"):
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            logger = line.get("logger")
            if not isinstance(logger, str) or not logger.startswith("memwarden"):
                continue
            if str(line.get("request_id", "")).startswith(PROBE_ID):
                continue
            dst.write(raw if raw.endswith(b"\n") else raw + b"\n")
            if logger == "memwarden.request" and line.get("message") == "request":
                count += 1
                if isinstance(line.get("pid"), int):
                    pids.add(line["pid"])
    return count, tuple(sorted(pids))
