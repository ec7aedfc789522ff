"""gunicorn config for the New Relic tests: memwarden's config, a socket guard, and a
record of every payload the agent hands to its (developer mode) collector client.

Environment:
- ``NR_TEST_DIR``: where ``payloads.jsonl`` and ``connects.jsonl`` are written.
- ``NR_TEST_INIT``: a newrelic.ini to initialize the agent with here, in the
  master's config (when gunicorn is not started by ``newrelic-admin run-program``).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

_DIR = Path(os.environ["NR_TEST_DIR"])
_LOOPBACK = ("127.", "::1", "localhost")


def _append(name: str, record: dict[str, Any]) -> None:
    # One write per line, O_APPEND: the master and every worker share the file.
    line = (json.dumps(record, default=repr) + "\n").encode()
    fd = os.open(_DIR / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _host(address: Any) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)  # a unix socket path


def _guarded(original: Any) -> Any:
    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = _host(address)
            if not host.startswith(_LOOPBACK):
                _append("connects.jsonl", {"pid": os.getpid(), "host": host,
                                           "type": int(self.type)})
                raise PermissionError(f"test socket guard: no connection to {host}")
        return original(self, address)
    return connect


# Every connection this process and its forks attempt passes here: create_connection,
# urllib3 and http.client all end in socket.connect or connect_ex.
socket.socket.connect = _guarded(socket.socket.connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded(socket.socket.connect_ex)  # type: ignore[method-assign]

if os.environ.get("NR_TEST_INIT"):
    import newrelic.agent

    newrelic.agent.initialize(os.environ["NR_TEST_INIT"])

from newrelic.common import agent_http, system_info  # noqa: E402

# The agent learns its host's address by a UDP connect to 1.1.1.1 (no packet is
# sent); given here, so that the guard's record lists every other attempt.
system_info._nr_cached_ip_address = ["127.0.0.1"]
_send = agent_http.DeveloperModeClient.send_request


def _recording_send(self: Any, method: str = "POST", path: str = "", params: Any = None,
                    headers: Any = None, payload: Any = None) -> Any:
    agent_method = (params or {}).get("method")
    try:
        data = json.loads(payload.decode()) if payload else None
    except ValueError:
        data = None
    _append("payloads.jsonl", {"pid": os.getpid(), "method": agent_method, "data": data})
    return _send(self, method=method, path=path or "/agent_listener/invoke_raw_method",
                 params=params, headers=headers, payload=payload)


agent_http.DeveloperModeClient.send_request = _recording_send

from memwarden.gunicorn_conf import *  # noqa: E402, F403
