"""A network guard for every Python process of a test run: loopback only.

Put this directory first on ``PYTHONPATH`` and set ``NETGUARD_LOG`` to a file:
each Python process that starts (gunicorn's master and workers, the sidecars)
imports this module, appends ``installed <pid> <argv>`` to the file, and
wraps ``socket.getaddrinfo``, ``socket.socket.connect``, ``connect_ex`` and
``sendto``. A name or address that is not this host's loopback is appended as
``refused <pid> <call> <target>`` and the call fails with ``PermissionError``
before anything leaves the machine.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

_LOG = os.environ.get("NETGUARD_LOG")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _record(line: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as out:  # one short append per line
            out.write(line + "\n")


def _is_loopback(host: Any) -> bool:
    if host is None:
        return True  # a passive lookup (bind), not a connection
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _refuse(call: str, target: Any) -> None:
    _record(f"refused {os.getpid()} {call} {target!r}")
    raise PermissionError(f"netguard: {call} to {target!r} is not loopback")


def _check_address(sock: socket.socket, call: str, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) and address else address
        if not _is_loopback(host):
            _refuse(call, address)


_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto


def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_loopback(host):
        _refuse("getaddrinfo", host)
    return _getaddrinfo(host, *args, **kwargs)


def connect(self: socket.socket, address: Any) -> None:
    _check_address(self, "connect", address)
    _connect(self, address)


def connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, "connect_ex", address)
    return _connect_ex(self, address)


def sendto(self: socket.socket, data: Any, *args: Any) -> int:
    _check_address(self, "sendto", args[-1])
    return _sendto(self, data, *args)  # type: ignore[arg-type]


if _LOG:
    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign,assignment]
    # sys.argv is not set yet when site runs (and reads "-m" for a module): the
    # kernel's copy names the module.
    with open("/proc/self/cmdline", "rb") as _cmd:
        _argv = _cmd.read().replace(b"\0", b" ").replace(b"\n", b" ").decode(errors="replace")
    _record(f"installed {os.getpid()} {_argv[:200]}")
