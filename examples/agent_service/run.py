"""Launcher for the agent service, with or without gunicorn.

    python examples/agent_service/run.py serve [GUNICORN ARGS...]
        gunicorn with gunicorn_conf.py (which starts the sidecars itself)
    python examples/agent_service/run.py sidecars
        only the sidecars (MCP tool server, local site, model endpoint; the
        memory server too in hardened mode), until Ctrl-C: for running
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
    with Sidecars.for_settings(cfg) as running:
        names = [f"MCP server: {cfg.mcp_url}", f"local site: {cfg.site_url}/index.html",
                 f"model endpoint: {cfg.model_url}"]
        if cfg.hardened:
            names.append(f"memory server: http://127.0.0.1:{cfg.memory_port}")
        for name, pid in zip(names, running.pids, strict=True):
            print(f"{name} (pid {pid})", flush=True)
        print("Ctrl-C to stop", flush=True)
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
