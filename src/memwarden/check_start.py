"""The summary of ``memwarden check``, logged once by the gunicorn master at start.

Plain lines on the ``memwarden.check`` logger: what memwarden will do (the
limit, the caps, the actions, the exporters), the settings that differ from
the defaults, and the warnings no other start line gives. The warnings other
lines already give at start (the watchdog's no-limit and no-shed lines, the
unknown variables, the replaced hooks) are named, not repeated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from memwarden.check import GunicornView, Summary, read_cgroup, summarize
from memwarden.check_app import asyncio_use
from memwarden.check_findings import SAID_ELSEWHERE_AT_START
from memwarden.hook_calls import LOST
from memwarden.settings import Settings

__all__ = ["log_start_summary", "start_lines"]

_log = logging.getLogger("memwarden.check")

# Where each warning that is not repeated here is logged instead.
_ELSEWHERE = {
    "no_limit": "no memory limit to recycle by (memwarden.recycle, before the hold line)",
    "cannot_shed": "shed thresholds with no limit to resolve against (memwarden.recycle)",
    "unknown_variables": "unknown MEMWARDEN_* variables (memwarden.settings)",
    "replaced_hooks": "gunicorn hooks replaced without calling memwarden's (memwarden.gunicorn)",
    "limit_dropped": "a limit out of order, dropped (memwarden.recycle, in each worker)",
}


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _view(server: Any) -> GunicornView:
    cfg = getattr(server, "cfg", None)
    workers = _int(getattr(server, "num_workers", None), _int(getattr(cfg, "workers", 1), 1))
    app = getattr(getattr(server, "app", None), "app_uri", None) or getattr(cfg, "wsgi_app", None)
    return GunicornView(
        workers=max(1, workers),
        worker_class=str(getattr(cfg, "worker_class_str", "sync")),
        max_requests=_int(getattr(cfg, "max_requests", 0), 0),
        max_requests_jitter=_int(getattr(cfg, "max_requests_jitter", 0), 0),
        hooks={name: getattr(cfg, name, None) for name in LOST},
        app=app if isinstance(app, str) else None)


def start_lines(summary: Summary, said: frozenset[str] = SAID_ELSEWHERE_AT_START
                ) -> list[tuple[int, str]]:
    """(level, line) for the start: the summary less the findings of the kinds in
    ``said``, which other lines already gave."""
    lines = [(logging.INFO, line) for line in summary.head_lines()]
    lines.append((logging.INFO, summary.changed_settings_line()))
    elsewhere = [f for f in summary.findings if f.kind in said]
    lines += [(logging.WARNING, f.line()) for f in summary.findings if f not in elsewhere]
    if elsewhere:
        named = "; ".join(dict.fromkeys(_ELSEWHERE[f.kind] for f in elsewhere))
        lines.append((logging.INFO, f"also warned at start in their own lines: {named}"))
    # INFO: the warnings that lead to it carry the level, each once.
    lines.append((logging.INFO, summary.verdict_line()))
    return lines


def log_start_summary(server: Any, settings: Settings, ours: Mapping[str, Callable[..., Any]],
                      said: frozenset[str] = SAID_ELSEWHERE_AT_START,
                      pid: int | None = None) -> None:
    """Log the summary for this master; the caller makes it once per master and says
    which kinds of finding other start lines gave (``said``). ``pid``: the master's,
    when a child of it logs the summary (this process's by default)."""
    view = _view(server)
    cfg = getattr(server, "cfg", None)
    search = [str(getattr(cfg, "chdir", "") or os.getcwd())]
    summary = summarize(settings, os.environ, read_cgroup(settings), view, ours,
                        str(getattr(cfg, "config", None) or "gunicorn defaults"),
                        asyncio_use(view.worker_class, view.app, search))
    fields = {"pid": os.getpid() if pid is None else pid,
              "protection_effective": summary.exit_code == 0}
    for level, line in start_lines(summary, said):
        _log.log(level, "%s", line, extra={"memwarden": fields})
