"""The agent service's MCP tool server (package ``mcp`` 2.x, ``MCPServer``).

Run it over streamable HTTP on 127.0.0.1 (``python -m mcp_server http --port 8765``,
served at ``/mcp``) or over stdio (``python -m mcp_server stdio``), from
``examples/agent_service``.
"""

from mcp_server.server import build_server

__all__ = ["build_server"]
