"""The agent's MCP tools client (package ``mcp`` 2.x, ``mcp.Client``).

Leak 1, as found: a module-level singleton that "keeps the session". Flask's
handlers are sync, so each request makes a new event loop, opens a new MCP
session on it (the one from the last request is bound to that request's
loop) and appends loop and session to the singleton's list. Nothing is ever
closed: over streamable HTTP each request keeps ~4 fds, an open loop with its
tasks, and a session the MCP server keeps too (no DELETE is ever sent); over
stdio each request also keeps a server process.

The fix behind the same seam, :class:`ScopedMCPClient`, opens the session in
``async with`` on a loop that ``asyncio.run`` closes, so every path closes
both. (A pooled session on the worker's background loop is the hardened mode's
job: ``memwarden.loop.hold``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from api import config
from api.utils import resource_monitor

__all__ = [
    "AsFoundMCPClient",
    "ScopedMCPClient",
    "ToolCall",
    "ToolResult",
    "get_client",
]

SERVICE_DIR = Path(__file__).resolve().parents[1]
_READ_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolResult:
    name: str
    ok: bool
    value: Any
    text: str


def server_target(cfg: config.Settings) -> str | StdioServerParameters:
    """Where the tools are: the HTTP server's URL, or a stdio server to spawn."""
    if cfg.mcp_transport == "stdio":
        return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server", "stdio"],
                                     cwd=str(SERVICE_DIR))
    return cfg.mcp_url


def _new_client(target: str | StdioServerParameters) -> Client:
    return Client(target, read_timeout_seconds=_READ_TIMEOUT_S)


def _opened(target: str | StdioServerParameters) -> int:
    label = target if isinstance(target, str) else " ".join([target.command, *target.args])
    return resource_monitor.opened(resource_monitor.MCP_SESSIONS, f"session with {label}")


async def _call_all(client: Client, calls: Sequence[ToolCall]) -> list[ToolResult]:
    results = []
    for call in calls:
        reply = await client.call_tool(call.name, call.arguments)
        text = " ".join(getattr(block, "text", "") for block in reply.content).strip()
        value: Any = reply.structured_content
        if isinstance(value, dict) and set(value) == {"result"}:
            value = value["result"]  # a plain return value, wrapped by the server
        results.append(ToolResult(call.name, not reply.is_error, value, text))
    return results


async def _list_all(client: Client) -> list[dict[str, str]]:
    listed = await client.list_tools()
    return [{"name": tool.name, "description": tool.description or ""} for tool in listed.tools]


class AsFoundMCPClient:
    """As found: a new session per request on a new loop, all kept, none closed."""

    def __init__(self, target: str | StdioServerParameters) -> None:
        self._target = target
        # "The session", kept for reuse; in practice one per request, forever.
        self.sessions: list[tuple[asyncio.AbstractEventLoop, Client]] = []

    def _open(self) -> tuple[asyncio.AbstractEventLoop, Client]:
        loop = asyncio.new_event_loop()
        client = _new_client(self._target)
        self.sessions.append((loop, client))
        # Entered by hand and never exited: the transport's task group, its
        # connections (or server process) and the loop stay as they are.
        loop.run_until_complete(client.__aenter__())
        _opened(self._target)  # and never closed
        return loop, client

    def call_tools(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        loop, client = self._open()
        return loop.run_until_complete(_call_all(client, calls))

    def list_tools(self) -> list[dict[str, str]]:
        loop, client = self._open()
        return loop.run_until_complete(_list_all(client))


@contextlib.asynccontextmanager
async def _session(target: str | StdioServerParameters) -> AsyncIterator[Client]:
    async with _new_client(target) as client:
        handle = _opened(target)
        try:
            yield client
        finally:
            resource_monitor.closed(handle)


class ScopedMCPClient:
    """The fix: one session per call, closed on every path, on a loop that is closed."""

    def __init__(self, target: str | StdioServerParameters) -> None:
        self._target = target

    async def _call(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        async with _session(self._target) as client:
            return await _call_all(client, calls)

    async def _list(self) -> list[dict[str, str]]:
        async with _session(self._target) as client:
            return await _list_all(client)

    def call_tools(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        return asyncio.run(self._call(calls))

    def list_tools(self) -> list[dict[str, str]]:
        return asyncio.run(self._list())


ToolsClient = AsFoundMCPClient | ScopedMCPClient
_client: ToolsClient | None = None
_client_settings: config.Settings | None = None
_client_lock = threading.Lock()


def get_client() -> ToolsClient:
    """The process's tools client: the as-found singleton, or the scoped fix."""
    global _client, _client_settings
    cfg = config.settings()
    with _client_lock:
        if _client is None or _client_settings is not cfg:
            target = server_target(cfg)
            _client = AsFoundMCPClient(target) if cfg.leak("mcp") else ScopedMCPClient(target)
            _client_settings = cfg
        return _client
