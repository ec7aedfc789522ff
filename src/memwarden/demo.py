"""``memwarden demo``: see memwarden at work on a small app in a minute.

Starts the sample Flask app (examples/sample_app) under real gunicorn with
memwarden wired in, sends a little traffic on 127.0.0.1 (one clean route, one
that keeps 64 KiB per request), and shows a few of the request lines it logs.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["add_demo_arguments", "run_demo", "run_demo_command"]

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO / "examples" / "sample_app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"gunicorn did not listen on 127.0.0.1:{port} within {timeout} s")


def _send(port: int, method: str, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=b"" if method == "POST" else None)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def run_demo(out: Path, requests: int = 200) -> int:
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "gunicorn.log"
    port = _free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    cmd = [str(gunicorn), "-c", "python:memwarden.gunicorn_conf", "-w", "2",
           "-b", f"127.0.0.1:{port}", "--no-control-socket", "app:app"]
    env = {**os.environ, "MEMWARDEN_CENSUS_EVERY": "50"}
    print(f"starting the sample app under gunicorn on 127.0.0.1:{port} (2 sync workers)")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=SAMPLE_DIR, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for(port, proc)
            failed = 0
            for i in range(requests):
                method, path = ("POST", "/remember") if i % 4 == 3 else ("GET", f"/items/{i}")
                failed += _send(port, method, path) >= 500
            time.sleep(0.3)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(30)
    lines = []
    for raw in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            obj = json.loads(raw)
            if obj.get("logger") == "memwarden.request":
                lines.append(obj)
    (out / "requests.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    print(f"{len(lines)} request lines, {failed} failed requests; a few of them:")
    for line in [*lines[:2], *[x for x in lines if x["route"] == "/remember"][-2:]]:
        print(json.dumps(line))
    by_route: dict[str, list[int]] = {}
    for line in lines:
        by_route.setdefault(f"{line['method']} {line['route']}", []).append(line["blocks_delta"])
    print("allocated blocks kept per request, by route (mean):")
    for route, deltas in sorted(by_route.items()):
        print(f"  {route:24s} {sum(deltas) / len(deltas):10.1f}  over {len(deltas)} requests")
    print(f"all lines: {out / 'requests.jsonl'}; gunicorn's log: {log_path}")
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("reports/demo"),
                        help="where to write the demo's files (default: reports/demo)")


def run_demo_command(args: argparse.Namespace) -> int:
    return run_demo(args.out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="memwarden demo", description=__doc__.splitlines()[0])
    add_demo_arguments(p)
    raise SystemExit(run_demo_command(p.parse_args()))
