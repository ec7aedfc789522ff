"""The metrics listener: a small server process beside the gunicorn master.

``python -m memwarden.export.metrics_server`` serves the multiprocess
directory's metrics on ``MEMWARDEN_PROMETHEUS_HOST:PORT`` (127.0.0.1:9410 by
default), apart from the app's port: the app's clients never reach the
metrics, and a scrape never costs a worker.

A process of its own rather than a thread in the master (a thread in a
process that forks workers can leave a lock held in every child), and not the
master's child either (double fork): the master's children are its workers,
for gunicorn and for whoever counts them.

The server is known by its pid and start time (:class:`memwarden.system.safe_kill.ProcessRef`),
never by its pid alone: a server that died long ago may have left its pid to
an unrelated process, which must not be signalled. The pair is also written,
with the master's, to a pid file in the multiprocess directory, so that a new
master on the same directory can stop a server its dead predecessor left.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from memwarden.system.safe_kill import ProcessRef, process_ref, send_signal

if TYPE_CHECKING:
    from memwarden.settings import Settings

__all__ = ["PID_FILE", "main", "read_pid_file", "start", "stop", "stop_stale"]

_log = logging.getLogger("memwarden.exporters.prometheus")

PID_FILE = ".memwarden-metrics-server.pid"
# Our own processes: this namespace's /proc, whatever MEMWARDEN_PROC_ROOT reads.
_PROC = "/proc"
# The server this master started, and the directory of its pid file.
_server: list[ProcessRef | None] = [None]
_pid_file: list[str] = [""]


def _alive(ref: ProcessRef) -> bool:
    """That very process still runs (not a zombie, not a newer holder of its pid)."""
    from memwarden.system import proctree

    stat = proctree.read_stat(ref.pid, _PROC)
    return stat is not None and stat.start_ticks == ref.start_ticks and stat.state not in ("Z", "X")


def footprint_args(settings: Settings) -> list[str]:
    from memwarden.export.prom_metrics import footprint_kind

    kind, descendants = footprint_kind(settings)
    return [kind] + ([] if descendants else ["--no-descendants"])


def start(settings: Settings, directory: str) -> None:
    """Run the server for ``directory`` on the configured host and port (the master's
    job, once: a server still running is kept)."""
    server = _server[0]
    if server is not None and _alive(server):
        return
    me = process_ref(os.getpid(), _PROC)
    stop_stale(directory, me)
    cmd = [sys.executable, "-m", "memwarden.export.metrics_server",
           "--dir", directory, "--host", settings.prometheus_host,
           "--port", str(settings.prometheus_port), "--parent", str(os.getpid()),
           "--parent-start-ticks", str(me.start_ticks if me is not None else 0),
           "--proc-root", settings.proc_root, "--sys-root", settings.sys_root,
           "--footprint", *footprint_args(settings)]
    server = _server[0] = _spawn_detached(cmd)
    _pid_file[0] = os.path.join(directory, PID_FILE)
    if me is not None:
        _write_pid_file(_pid_file[0], server, me)
    _log.info("prometheus metrics server started",
              extra={"server_pid": server.pid, "host": settings.prometheus_host,
                     "port": settings.prometheus_port})


def _spawn_detached(cmd: list[str]) -> ProcessRef:
    """Fork twice and exec ``cmd`` in the grandchild; returns it by pid and start time."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                try:
                    os.close(write_end)
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.closerange(3, 65536)
                    os.execv(cmd[0], cmd)
                finally:
                    os._exit(127)
            # Read here, by its parent: unreaped until this process exits, the
            # grandchild's pid cannot name another process yet.
            ref = process_ref(grandchild, _PROC)
            ticks = ref.start_ticks if ref is not None else -1
            os.write(write_end, f"{grandchild} {ticks}".encode("ascii"))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        raw = fh.read().split()
    with contextlib.suppress(ChildProcessError):  # gunicorn may have reaped it first
        os.waitpid(child, 0)
    if len(raw) != 2:
        raise RuntimeError("could not start the metrics server process")
    return ProcessRef(int(raw[0]), int(raw[1]))


def _write_pid_file(path: str, server: ProcessRef, master: ProcessRef) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{server.pid} {server.start_ticks} {master.pid} {master.start_ticks}\n")
        os.replace(tmp, path)
    except OSError as exc:
        _log.warning("memwarden could not write the metrics server's pid file %s: %s",
                     path, exc)
        with contextlib.suppress(OSError):
            os.remove(tmp)


def read_pid_file(directory: str) -> tuple[ProcessRef, ProcessRef] | None:
    """(server, master) from the directory's pid file; None when absent or malformed."""
    try:
        with open(os.path.join(directory, PID_FILE), encoding="ascii") as fh:
            fields = [int(x) for x in fh.read().split()]
    except (OSError, ValueError):
        return None
    if len(fields) != 4 or min(fields) <= 0:
        return None
    return ProcessRef(fields[0], fields[1]), ProcessRef(fields[2], fields[3])


def stop_stale(directory: str, me: ProcessRef | None = None, timeout: float = 5.0) -> bool:
    """Stop the server a dead master left on ``directory`` (it would hold the port);
    True when one was stopped. A process that merely holds the pid file's pid now
    (another start time) is left alone, and so is a server whose master still runs."""
    found = read_pid_file(directory)
    if found is None:
        return False
    server, master = found
    if master == me or _alive(master):
        return False  # ours, or another live master's (a USR2 upgrade)
    stopped = _terminate(server, timeout)
    if stopped:
        _log.info("stopped the metrics server of a master that is gone",
                  extra={"server_pid": server.pid, "master_pid": master.pid})
    with contextlib.suppress(OSError):
        os.remove(os.path.join(directory, PID_FILE))
    return stopped


def _terminate(ref: ProcessRef, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``, each only to that very process."""
    if not send_signal(ref, signal.SIGTERM, _PROC):
        return False
    deadline = time.monotonic() + timeout
    while _alive(ref) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(ref):
        send_signal(ref, signal.SIGKILL, _PROC)
    return True


def stop(timeout: float = 5.0) -> None:
    """Stop the server this master started, if it still is that process."""
    server, _server[0] = _server[0], None
    if server is None:
        return
    _terminate(server, timeout)
    path, _pid_file[0] = _pid_file[0], ""
    found = read_pid_file(os.path.dirname(path)) if path else None
    if found is not None and found[0] == server:
        with contextlib.suppress(OSError):
            os.remove(path)


def main(argv: list[str] | None = None) -> int:
    """Serve the directory's metrics until the parent (the master) goes away."""
    parser = argparse.ArgumentParser(prog="python -m memwarden.export.metrics_server")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent", type=int, default=0)
    parser.add_argument("--parent-start-ticks", type=int, default=0)
    parser.add_argument("--proc-root", default="/proc")
    parser.add_argument("--sys-root", default="/sys")
    parser.add_argument("--footprint", choices=("rss", "pss"), default="rss")
    parser.add_argument("--no-descendants", action="store_true")
    args = parser.parse_args(argv)
    if not args.host.strip():
        parser.error("--host is empty; an empty address would mean every interface")

    from memwarden.export import prom_collect, prom_metrics
    from memwarden.see.logs import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    os.environ[prom_metrics.ENV_DIR] = args.dir  # before prometheus_client is imported
    prom_metrics._client()
    from prometheus_client import start_http_server

    registry = prom_collect.make_registry(args.dir, args.proc_root, args.sys_root,
                                        footprint=args.footprint,
                                        descendants=not args.no_descendants)
    try:
        server, thread = start_http_server(args.port, addr=args.host, registry=registry)
    except OSError as exc:
        _log.error("memwarden metrics server cannot listen on %s:%d: %s (set "
                   "MEMWARDEN_PROMETHEUS_PORT to a free port)", args.host, args.port, exc)
        return 1
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    # Ctrl-C reaches the whole process group; the master stops us in on_exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _log.info("memwarden metrics server listening",
              extra={"host": args.host, "port": args.port, "directory": args.dir})
    parent = ProcessRef(args.parent, args.parent_start_ticks) if args.parent else None
    while not stop_event.wait(0.5):
        if parent is not None and not _parent_alive(parent):
            break  # the master died without stopping us
    server.shutdown()
    thread.join(5)
    return 0


def _parent_alive(parent: ProcessRef) -> bool:
    if parent.start_ticks > 0:
        return _alive(parent)
    from memwarden.system import proctree

    stat = proctree.read_stat(parent.pid, _PROC)  # no start time given: the pid alone
    return stat is not None and stat.state not in ("Z", "X")


if __name__ == "__main__":
    sys.exit(main())
