"""gunicorn config of the agent service, as found.

    gunicorn -c examples/agent_service/gunicorn_conf.py api.app:app

As found: 2 sync workers, 120 s timeout, no max_requests (leak 5: workers
never recycle). With ``norecycle`` left out of ``AGENT_SERVICE_LEAKS`` the
config sets ``max_requests`` (+ jitter), as the team had planned. memwarden's
wiring comes in with the star import: JSON logs, probes set up after fork,
the request tracker around the app, ``MEMWARDEN_*`` settings; its "hold"
features (memory recycling, orphan reaping, shedding) default to off here,
since the service as found had none. Where this config defines a hook that
memwarden defines too (``on_exit``, ``worker_exit``), it calls memwarden's. The master
starts the MCP tool server and the local site before it forks workers and
stops them when it exits.

``AGENT_SERVICE_MODE=hardened`` switches memwarden's "hold" on with limits
measured on this service (see ``HARDENED_DEFAULTS`` and README.md): memory
recycling on each worker's footprint (its RSS plus its descendants' PSS:
Chromium and the Playwright driver), soft, idle and hard limits, rolling one
worker at a time, memwarden's ``max_requests`` with jitter as a backstop,
shedding above the soft limit, and no orphans. Each default gives way to a
``MEMWARDEN_*`` variable set in the environment.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from api.config import settings as _settings  # noqa: E402
from tooling.sidecars import Sidecars  # noqa: E402

# Read and validated here, in the master: a bad AGENT_SERVICE_* stops the start.
_cfg = _settings()

# Hardened limits, from measured per-worker footprints (README.md, "Hardened
# mode"): a worker of the hardened service settles at ~370-415 MB (worker RSS
# ~86 MB, the Playwright driver and Chromium with its pooled contexts ~280-330
# MB PSS) and stays there. Soft 640 MiB leaves ~250 MB of headroom (three
# leaked browser contexts' worth) for bursts and Chromium's own swings; idle
# 560 MiB recycles a worker that crept up, in a quiet moment; hard 1 GiB is the
# master's kill for a worker stuck mid-request; shedding starts at 720 MiB,
# above the soft limit, only when a worker cannot recycle yet (another one is).
# max_requests (with jitter) is the backstop, not the plan.
HARDENED_DEFAULTS = {
    "MEMWARDEN_RECYCLE": "on",
    "MEMWARDEN_ORPHANS": "on",
    "MEMWARDEN_SHED": "on",
    "MEMWARDEN_FOOTPRINT": "rss",
    "MEMWARDEN_FOOTPRINT_DESCENDANTS": "1",
    "MEMWARDEN_SOFT_LIMIT": "640MiB",
    "MEMWARDEN_IDLE_LIMIT": "560MiB",
    "MEMWARDEN_IDLE_SECONDS": "5",
    "MEMWARDEN_HARD_LIMIT": "1GiB",
    "MEMWARDEN_SHED_HIGH": "720MiB",
    "MEMWARDEN_SHED_LOW": "600MiB",
    "MEMWARDEN_MAX_REQUESTS": "5000",
    "MEMWARDEN_MAX_REQUESTS_JITTER": "500",
    "MEMWARDEN_MAX_CONCURRENT_RECYCLES": "1",
}
if _cfg.hardened:
    for _name, _value in HARDENED_DEFAULTS.items():
        os.environ.setdefault(_name, _value)
if _cfg.mode == "as-found":
    # The service as found had no memwarden: keep its "see" part (JSON request
    # lines, census) and leave "hold" (memory recycling, orphan reaping, load
    # shedding) off unless asked for, so that what is measured is the leak.
    for _name in ("MEMWARDEN_RECYCLE", "MEMWARDEN_ORPHANS", "MEMWARDEN_SHED"):
        os.environ.setdefault(_name, "off")

from memwarden.gunicorn_conf import *  # noqa: E402, F403
from memwarden.gunicorn_conf import on_exit as _memwarden_on_exit  # noqa: E402
from memwarden.gunicorn_conf import on_starting as _memwarden_on_starting  # noqa: E402
from memwarden.gunicorn_conf import worker_exit as _memwarden_worker_exit  # noqa: E402

_log = logging.getLogger("agent_service.gunicorn")

chdir = str(HERE)
bind = f"127.0.0.1:{_cfg.port}"
workers = 2
worker_class = "sync"
timeout = 120
# A control socket per instance would collide between instances on one host.
control_socket_disable = True
# Hardened: memwarden's max_requests (health checks not counted) instead of gunicorn's.
if not _cfg.leak("norecycle") and not _cfg.hardened:
    max_requests = _cfg.max_requests
    max_requests_jitter = _cfg.max_requests_jitter

_sidecars: Sidecars | None = None


def on_starting(server: Any) -> None:
    """Start the MCP server and the local site; a failure stops gunicorn's start."""
    global _sidecars
    sidecars = Sidecars.for_settings(_cfg)
    sidecars.start(timeout=30.0)
    _sidecars = sidecars
    _log.info("sidecars ready", extra={"mcp_url": _cfg.mcp_url, "site_url": _cfg.site_url,
                                       "model_url": _cfg.model_url,
                                       "sidecar_pids": sidecars.pids})
    _memwarden_on_starting(server)


def on_exit(server: Any) -> None:
    try:
        if _sidecars is not None:
            _sidecars.stop(timeout=5.0)
    except Exception:
        _log.exception("stopping the sidecars failed")
    _memwarden_on_exit(server)


def worker_exit(server: Any, worker: Any) -> None:
    # Close the worker's browser and driver so that no Chromium outlives it.
    try:
        browser = sys.modules.get("api.browser")
        if browser is not None:
            browser.shutdown(10.0)
    except Exception:
        _log.exception("closing the browser at worker exit failed")
    _memwarden_worker_exit(server, worker)
