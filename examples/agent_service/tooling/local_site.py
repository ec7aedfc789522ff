"""The small local site the agent browses: static pages on 127.0.0.1.

``python -m tooling.local_site --port 8766`` (cwd: examples/agent_service).
Pages live in ``tooling/pages``; a missing page answers 404, which the
browser code treats as an error (its leaky path).
"""

from __future__ import annotations

import argparse
import functools
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tooling import serve_until_stopped

PAGES = Path(__file__).resolve().parent / "pages"
DEFAULT_PORT = 8766


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the access log would only add noise to gunicorn's JSON stderr


def make_server(port: int) -> ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(PAGES))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tooling.local_site", description=__doc__)
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("AGENT_SERVICE_SITE_PORT", DEFAULT_PORT)))
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="exit when this process (the launcher) is gone")
    args = parser.parse_args(argv)
    server = make_server(args.port)
    serve_until_stopped(server, args.parent_pid)


if __name__ == "__main__":
    main()
