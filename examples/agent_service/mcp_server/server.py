"""A few deterministic tools, so that the agent needs no model to plan."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

# Canned data: the service must never reach outside 127.0.0.1.
_WEATHER: dict[str, dict[str, Any]] = {
    "paris": {"city": "Paris", "temp_c": 11.0, "sky": "overcast"},
    "london": {"city": "London", "temp_c": 9.5, "sky": "rain"},
    "tokyo": {"city": "Tokyo", "temp_c": 16.0, "sky": "clear"},
}


def build_server(log_level: str = "WARNING") -> MCPServer:
    server: MCPServer = MCPServer("agent-tools", log_level=log_level)  # type: ignore[arg-type]

    @server.tool()
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @server.tool()
    def weather(city: str) -> dict[str, Any]:
        """Canned weather for a city (no network)."""
        found = _WEATHER.get(city.strip().lower())
        if found is None:
            return {"city": city, "temp_c": 20.0, "sky": "unknown"}
        return dict(found)

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def fail(reason: str = "requested") -> str:
        """Always raise: the agent's error path."""
        # ToolError: an expected failure, sent as an error result without a traceback.
        raise ToolError(f"tool failed: {reason}")

    return server
