"""The service's settings, read from ``AGENT_SERVICE_*`` variables and validated once.

``AGENT_SERVICE_LEAKS`` switches the five leak sources one by one; the default
is the service as found, with all five. Each module asks :func:`leak` at its
seam and gets the as-found code when the leak is on, the fixed code when off.
A bad value raises :class:`ConfigError` naming the variable, at start (the
gunicorn config loads the settings in the master), never mid-request.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from api.urls import local_url_problem

__all__ = [
    "DEFAULT_CHROMIUM",
    "LEAKS",
    "ConfigError",
    "Settings",
    "leak",
    "reload",
    "settings",
]

# The five leak sources, in the order the issue lists them.
LEAKS = ("mcp", "browser", "loop", "context", "norecycle")
# as-found: the leak sources chosen by AGENT_SERVICE_LEAKS; hardened: every source
# replaced by its hardened fix (memwarden's worker loop, pools, recycling).
MODES = ("as-found", "hardened")
DEFAULT_CHROMIUM = "/usr/lib/chromium/chromium"
# A key that signs session cookies must be long enough not to be guessed.
MIN_SECRET_KEY = 32
SECRET_KEY_HINT = ("set it to a random value of at least 32 characters, e.g. "
                   "AGENT_SERVICE_SECRET_KEY=$(python3 -c 'import secrets; "
                   "print(secrets.token_hex(32))')")


class ConfigError(ValueError):
    """An ``AGENT_SERVICE_*`` value the service cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    mode: str = "as-found"
    leaks: frozenset[str] = frozenset(LEAKS)
    port: int = 8000
    mcp_port: int = 8765
    mcp_url: str = "http://127.0.0.1:8765/mcp"
    mcp_transport: str = "http"
    site_port: int = 8766
    site_url: str = "http://127.0.0.1:8766"
    model_port: int = 8767
    model_url: str = "http://127.0.0.1:8767/v1"
    memory_port: int = 8768
    data_dir: str = ""
    qdrant_url: str | None = None
    chromium: str = DEFAULT_CHROMIUM
    # No default: a key everyone can read signs cookies anyone can forge.
    secret_key: str = ""
    max_sessions: int = 1000
    max_turns: int = 50
    session_ttl: float = 1800.0
    max_requests: int = 1000
    max_requests_jitter: int = 100
    browse_timeout: float = 30.0
    # Hardened mode: the browser context pool and the MCP session's timeouts.
    browser_pool_size: int = 2
    browser_context_ttl: float = 60.0
    browser_context_uses: int = 20
    mcp_timeout: float = 10.0

    @property
    def hardened(self) -> bool:
        return self.mode == "hardened"

    def leak(self, name: str) -> bool:
        if name not in LEAKS:
            raise ValueError(f"unknown leak {name!r}; one of {', '.join(LEAKS)}")
        return name in self.leaks

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        mode = env.get("AGENT_SERVICE_MODE", "as-found").strip().lower()
        if mode not in MODES:
            raise ConfigError(f"AGENT_SERVICE_MODE={mode!r}: use one of {', '.join(MODES)} "
                              "(switch single leaks off with AGENT_SERVICE_LEAKS)")
        raw_leaks = env.get("AGENT_SERVICE_LEAKS")
        leaks = _leaks(raw_leaks)
        if mode == "hardened":
            # Hardened runs every fix; a leak left on would make it a different service.
            if raw_leaks is not None and leaks:
                raise ConfigError(f"AGENT_SERVICE_LEAKS={raw_leaks!r}: hardened mode has no "
                                  "leaks; unset it or use AGENT_SERVICE_MODE=as-found")
            leaks = frozenset()
        mcp_port = _int(env, "AGENT_SERVICE_MCP_PORT", 8765, 1, 65535)
        site_port = _int(env, "AGENT_SERVICE_SITE_PORT", 8766, 1, 65535)
        model_port = _int(env, "AGENT_SERVICE_MODEL_PORT", 8767, 1, 65535)
        qdrant_url = env.get("AGENT_SERVICE_QDRANT_URL") or None
        transport = env.get("AGENT_SERVICE_MCP_TRANSPORT", "http").strip().lower()
        if transport not in ("http", "stdio"):
            raise ConfigError(f"AGENT_SERVICE_MCP_TRANSPORT={transport!r}: use http or stdio")
        return cls(
            mode=mode,
            leaks=leaks,
            port=_int(env, "AGENT_SERVICE_PORT", 8000, 1, 65535),
            mcp_port=mcp_port,
            mcp_url=_local_url(env, "AGENT_SERVICE_MCP_URL",
                               f"http://127.0.0.1:{mcp_port}/mcp"),
            mcp_transport=transport,
            site_port=site_port,
            site_url=_local_url(env, "AGENT_SERVICE_SITE_URL",
                                f"http://127.0.0.1:{site_port}").rstrip("/"),
            model_port=model_port,
            model_url=_local_url(env, "AGENT_SERVICE_MODEL_URL",
                                 f"http://127.0.0.1:{model_port}/v1").rstrip("/"),
            memory_port=_int(env, "AGENT_SERVICE_MEMORY_PORT", 8768, 1, 65535),
            data_dir=env.get("AGENT_SERVICE_DATA_DIR") or os.path.join(
                tempfile.gettempdir(), f"agent-service-{os.getuid()}"),
            qdrant_url=(_local_url(env, "AGENT_SERVICE_QDRANT_URL", qdrant_url)
                        if qdrant_url else None),
            chromium=env.get("AGENT_SERVICE_CHROMIUM", DEFAULT_CHROMIUM),
            secret_key=_secret_key(env),
            max_sessions=_int(env, "AGENT_SERVICE_MAX_SESSIONS", 1000, 1),
            max_turns=_int(env, "AGENT_SERVICE_MAX_TURNS", 50, 1),
            session_ttl=_float(env, "AGENT_SERVICE_SESSION_TTL", 1800.0),
            max_requests=_int(env, "AGENT_SERVICE_MAX_REQUESTS", 1000, 1),
            max_requests_jitter=_int(env, "AGENT_SERVICE_MAX_REQUESTS_JITTER", 100, 0),
            browse_timeout=_float(env, "AGENT_SERVICE_BROWSE_TIMEOUT", 30.0),
            browser_pool_size=_int(env, "AGENT_SERVICE_BROWSER_POOL_SIZE", 2, 1, 16),
            browser_context_ttl=_float(env, "AGENT_SERVICE_BROWSER_CONTEXT_TTL", 60.0),
            browser_context_uses=_int(env, "AGENT_SERVICE_BROWSER_CONTEXT_USES", 20, 1),
            mcp_timeout=_float(env, "AGENT_SERVICE_MCP_TIMEOUT", 10.0),
        )


def _leaks(raw: str | None) -> frozenset[str]:
    if raw is None or raw.strip().lower() == "all":
        return frozenset(LEAKS)
    names = {part.strip().lower() for part in raw.split(",") if part.strip()}
    if names <= {"none"}:
        return frozenset()
    unknown = sorted(names - set(LEAKS))
    if unknown:
        raise ConfigError(f"AGENT_SERVICE_LEAKS={raw!r}: unknown {', '.join(unknown)}; "
                          f"use a comma list of {', '.join(LEAKS)}, 'all' or 'none'")
    return frozenset(names)


def _int(env: Mapping[str, str], name: str, default: int, low: int,
         high: int | None = None) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{name}={raw!r}: must be between {low} and {high or 'any'}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds") from None
    if not value > 0:  # also rejects NaN
        raise ConfigError(f"{name}={raw!r}: must be > 0")
    return value


def _local_url(env: Mapping[str, str], name: str, default: str) -> str:
    # The service talks to its own tools, site and models only: nothing off this host.
    url = env.get(name, default)
    problem = local_url_problem(url)
    if problem is not None:
        raise ConfigError(f"{name}={url!r}: must be an http://127.0.0.1:PORT URL ({problem})")
    return url


def _secret_key(env: Mapping[str, str]) -> str:
    key = env.get("AGENT_SERVICE_SECRET_KEY", "").strip()
    if not key:
        raise ConfigError("AGENT_SERVICE_SECRET_KEY is not set: the session cookies need a "
                          f"key of your own; {SECRET_KEY_HINT}")
    if len(key) < MIN_SECRET_KEY:
        raise ConfigError(f"AGENT_SERVICE_SECRET_KEY is too short ({len(key)} characters): "
                          f"use at least {MIN_SECRET_KEY}; {SECRET_KEY_HINT}")
    return key


_current: Settings | None = None
_lock = threading.Lock()


def settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    current = _current
    if current is None:
        with _lock:
            current = _current if _current is not None else reload()
    return current


def reload() -> Settings:
    """Read the environment again (tests switch leaks in-process with it).

    Unchanged settings keep their identity, and with it the objects made for
    them (the context store, the tools client): only a change starts afresh.
    """
    global _current
    fresh = Settings.from_env()
    current = _current if _current == fresh else fresh
    _current = current
    return current


def leak(name: str) -> bool:
    """Is this leak source on (the as-found code) in this process?"""
    return settings().leak(name)
