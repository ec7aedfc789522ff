"""``python -m mcp_server {http,stdio} [--port P]`` (cwd: examples/agent_service)."""

from __future__ import annotations

import argparse
import os

from tooling import exit_with_parent

from mcp_server.server import build_server

DEFAULT_PORT = 8765


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mcp_server", description=__doc__)
    parser.add_argument("transport", choices=("http", "stdio"), nargs="?", default="http")
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("AGENT_SERVICE_MCP_PORT", DEFAULT_PORT)))
    parser.add_argument("--parent-pid", type=int, default=0,
                        help="exit when this process (the launcher) is gone")
    args = parser.parse_args(argv)
    if args.transport == "stdio":
        build_server().run()
    else:
        exit_with_parent(args.parent_pid)
        # 127.0.0.1 only; the session store keeps what clients never delete,
        # which is part of what the MCP leak shows.
        build_server().run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
