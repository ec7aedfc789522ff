"""Where the metrics are served: a loopback listener of their own, not the app's port."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from support import free_port, gunicorn, request, wait_for_port

from memwarden.export.metrics_server import read_pid_file
from memwarden.settings import Settings, SettingsError
from memwarden.system.safe_kill import process_ref

# Left out of the test's gunicorn: the defaults are what is under test.
_OURS = ("MEMWARDEN_PROMETHEUS_PATH", "MEMWARDEN_PROMETHEUS_HOST")


def listening(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host order.
            words = struct.unpack(f"<{len(raw) // 4}I", raw)
            found.add(socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words)))
    return found


@pytest.mark.timeout(60)
def test_by_default_the_metrics_listen_on_loopback_and_the_app_port_is_the_apps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /metrics on the app's port reaches the app; the metrics answer on 127.0.0.1 only."""
    for name in _OURS:
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    env = {"MEMWARDEN_PROMETHEUS": "1", "MEMWARDEN_PROMETHEUS_DIR": str(tmp_path / "mp"),
           "MEMWARDEN_PROMETHEUS_PORT": str(port)}
    with gunicorn("export_app:app", tmp_path, env=env, args=["-w", "1"]) as g:
        status, _, body = g.request("GET", "/metrics")
        assert status == 404, body[:200]
        assert b"memwarden_" not in body
        wait_for_port(port, proc=g.proc)
        assert listening(port) == {"127.0.0.1"}
        status, headers, body = request(port, "GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert b"memwarden_requests_total" in body
        # Known by pid and start time, beside its master's, for the next master.
        found = read_pid_file(str(tmp_path / "mp"))
        assert found is not None
        server, master = found
        assert (master.pid, server) == (g.proc.pid, process_ref(server.pid, "/proc"))
        assert b"memwarden.export.metrics_server" in Path(
            f"/proc/{server.pid}/cmdline").read_bytes()
    assert not listening(port), "the listener outlived the master"
    assert read_pid_file(str(tmp_path / "mp")) is None


def test_the_defaults_are_a_loopback_listener_and_no_route_in_the_app() -> None:
    s = Settings.from_env({})
    assert (s.prometheus_host, s.prometheus_port, s.prometheus_path) == ("127.0.0.1", 9410, "")


@pytest.mark.parametrize("raw", ["", "  "])
def test_an_empty_host_is_refused_rather_than_meaning_every_interface(raw: str) -> None:
    with pytest.raises(SettingsError, match="MEMWARDEN_PROMETHEUS_HOST"):
        Settings.from_env({"MEMWARDEN_PROMETHEUS_HOST": raw})


SERVED_NOWHERE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
from memwarden import export as exporters
from memwarden.settings import Settings
exporters.on_starting(None, Settings(prometheus=True, prometheus_dir=sys.argv[2],
                                     prometheus_port=0, prometheus_path=sys.argv[1]))
"""


@pytest.mark.parametrize(("path", "expected"), [
    ("", "WARNING memwarden keeps Prometheus metrics but serves them nowhere"),
    ("/metrics", "INFO memwarden serves Prometheus metrics on the app's own port at /metrics"),
])
def test_the_start_says_where_the_metrics_are_not_served(path: str, expected: str,
                                                         tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SERVED_NOWHERE, path, str(tmp_path)],
                         capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert [line for line in out.splitlines() if line.startswith(expected)], out
