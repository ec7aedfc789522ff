"""Launcher for the agent service, with or without gunicorn.

    python examples/agent_service/run.py serve [GUNICORN ARGS...]
        gunicorn with gunicorn_conf.py (which starts the sidecars itself)
    python examples/agent_service/run.py sidecars
        only the MCP tool server and the local site, until Ctrl-C: for running
        the api modules in-process (Flask's test client, a debugger, tests)

Ports and the rest come from the AGENT_SERVICE_* variables (see README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def serve(extra: list[str]) -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    argv = [str(gunicorn), "-c", str(HERE / "gunicorn_conf.py"), *extra, "api.app:app"]
    os.execv(argv[0], argv)


def sidecars() -> None:
    from api.config import settings
    from tooling.sidecars import Sidecars

    cfg = settings()
    with Sidecars(cfg.mcp_port, cfg.site_port) as running:
        print(f"MCP server: {cfg.mcp_url} (pid {running.pids[0]})\n"
              f"local site: {cfg.site_url}/index.html (pid {running.pids[1]})\n"
              "Ctrl-C to stop", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("serve", "sidecars"))
    args, extra = parser.parse_known_args()
    if args.command == "serve":
        serve(extra)
    else:
        sidecars()


if __name__ == "__main__":
    main()
