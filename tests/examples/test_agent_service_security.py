"""The reference service's own safety: a secret key it is given, and local URLs only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from api import config

from .agent_service_harness import CONF, GUNICORN, REPO, free_port

KEY = {"AGENT_SERVICE_SECRET_KEY": "a" * 64}


def test_settings_refuse_a_missing_or_empty_secret_key() -> None:
    for env in ({}, {"AGENT_SERVICE_SECRET_KEY": ""}, {"AGENT_SERVICE_SECRET_KEY": "  "}):
        with pytest.raises(config.ConfigError, match="AGENT_SERVICE_SECRET_KEY is not set"):
            config.Settings.from_env(env)


def test_settings_refuse_a_short_secret_key() -> None:
    with pytest.raises(config.ConfigError, match=r"AGENT_SERVICE_SECRET_KEY.*at least 32"):
        config.Settings.from_env({"AGENT_SERVICE_SECRET_KEY": "short"})


def test_settings_take_the_secret_key_given() -> None:
    assert config.Settings.from_env(KEY).secret_key == "a" * 64


def test_gunicorn_will_not_start_without_a_secret_key(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items()
           if name != "AGENT_SERVICE_SECRET_KEY"}
    env.update({"AGENT_SERVICE_PORT": str(free_port()),
                "AGENT_SERVICE_MCP_PORT": str(free_port()),
                "AGENT_SERVICE_SITE_PORT": str(free_port()),
                "AGENT_SERVICE_MODEL_PORT": str(free_port())})
    proc = subprocess.run([str(GUNICORN), "-c", str(CONF), "api.app:app"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "AGENT_SERVICE_SECRET_KEY is not set" in out, out[-2000:]
    assert "Listening at" not in out


# Each URL starts, or looks, like a local one and reaches somewhere else (or is
# not what it seems): the settings must refuse every one.
NOT_LOCAL = [
    "http://127.0.0.1@elsewhere.example/",            # user info: the host is elsewhere
    "http://127.0.0.1:8766@elsewhere.example/",
    "http://localhost:80@elsewhere.example:8766/",
    "http://@127.0.0.1:8766/",                        # empty user info
    "http://127.0.0.1.evil.example:8766/",            # a name that starts like the IP
    "http://localhost.evil.example:8766/",
    "http://127.0.0.1:8766\\@elsewhere.example/",     # backslash: browsers read it as '/'
    "http://127.0.0.1\\elsewhere.example:8766/",
    "http://[::ffff:127.0.0.1]:8766/",                # IPv4-mapped IPv6
    "http://[::ffff:7f00:1]:8766/",
    "http://2130706433:8766/",                        # 127.0.0.1 as one decimal number
    "http://0x7f000001:8766/",                        # ... in hex
    "http://0177.0.0.1:8766/",                        # ... in octal
    "http://127.1:8766/",                             # ... shortened
    "http://0.0.0.0:8766/",
    "https://127.0.0.1:8766/",                        # not http
    "file:///etc/passwd",
    "http://127.0.0.1/",                              # no port
    "http://127.0.0.1:0/",
    "http://127.0.0.1:99999/",
    "http://127.0.0.1 :8766/",
    "http://127.0.0.1:8766/\n",
    "http://١٢٧.0.0.1:8766/",                          # non-ASCII digits
    "//127.0.0.1:8766/",
]
LOCAL = [
    "http://127.0.0.1:8766",
    "http://127.0.0.1:8766/mcp",
    "http://localhost:8765/mcp",
    "http://LOCALHOST:8765/mcp",
    "http://[::1]:8766/",
    "http://127.0.0.1:8766/page?next=@x",             # '@' outside the host part
]


@pytest.mark.parametrize("url", NOT_LOCAL)
def test_url_settings_refuse_hosts_that_are_not_this_one(url: str) -> None:
    for name in ("AGENT_SERVICE_SITE_URL", "AGENT_SERVICE_MCP_URL"):
        with pytest.raises(config.ConfigError, match=name):
            config.Settings.from_env({**KEY, name: url})


@pytest.mark.parametrize("url", LOCAL)
def test_url_settings_take_local_urls(url: str) -> None:
    cfg = config.Settings.from_env({**KEY, "AGENT_SERVICE_SITE_URL": url,
                                    "AGENT_SERVICE_MCP_URL": url})
    assert cfg.mcp_url == url
    assert cfg.site_url == url.rstrip("/")
