"""What memwarden will do under a given environment and gunicorn config, in plain lines.

``memwarden check`` prints it before a deploy (:mod:`memwarden.check_cli` loads
the config); the gunicorn master logs the same summary once at start
(:mod:`memwarden.gunicorn_conf`). Everything here is read, never changed: the
settings, the cgroup limit, the caps derived from it, which protective actions
are on, the exporters, and the findings (:mod:`memwarden.check_findings`) that
make some of it ineffective.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from memwarden.check_findings import Finding, findings
from memwarden.hold.policy import resolve_limits, worker_share
from memwarden.settings import SETTINGS, Settings
from memwarden.sizes import Size, format_bytes
from memwarden.system.cgroup import CgroupMemory, from_proc_cgroup

__all__ = ["GunicornView", "Summary", "read_cgroup", "summarize", "version"]

_PROTECTIVE = ("recycle", "shed", "pool_limits", "orphans")


def version() -> str:
    """The installed distribution's version (a source tree not installed: unknown)."""
    try:
        return importlib.metadata.version("memwarden")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class GunicornView:
    """The parts of a gunicorn config the summary reads."""

    workers: int = 1
    worker_class: str = "sync"
    max_requests: int = 0
    max_requests_jitter: int = 0
    hooks: Mapping[str, Callable[..., Any] | None] = field(default_factory=dict)
    app: str | None = None


def read_cgroup(settings: Settings) -> CgroupMemory | None:
    """This process's memory cgroup, read as the master's watchdog reads it
    (``proc_root/PID/cgroup``); ``proc_root/self/cgroup`` when a mounted or test
    /proc has no entry for this pid."""
    for entry in (str(os.getpid()), "self"):
        try:
            with open(f"{settings.proc_root}/{entry}/cgroup", encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        return from_proc_cgroup(text, settings.sys_root)
    return None


@dataclass(slots=True)
class Summary:
    version: str
    config: str
    gunicorn: GunicornView
    settings: list[dict[str, str]]
    limit: dict[str, Any]
    caps: dict[str, Any]
    actions: dict[str, dict[str, str]]
    exporters: dict[str, dict[str, Any]]
    findings: list[Finding]

    @property
    def exit_code(self) -> int:
        """1 when a finding makes protection ineffective, else 0."""
        return 1 if any(f.ineffective for f in self.findings) else 0

    def head_lines(self) -> list[str]:
        """What memwarden will do: config, limit, caps, actions, exporters."""
        g = self.gunicorn
        jitter = f" (jitter {g.max_requests_jitter})" if g.max_requests_jitter else ""
        lines = [f"memwarden {self.version}, config {self.config}: {g.workers} worker(s), "
                 f"worker class {g.worker_class}, gunicorn max_requests {g.max_requests}"
                 f"{jitter}",
                 f"memory limit: {self.limit['text']}",
                 f"caps per worker: {self.caps['text']}",
                 f"shedding: {self.caps['shed_text']}"]
        lines.append("actions: " + ", ".join(
            f"{name.replace('_', ' ')} {a['mode']} ({a['source']})"
            for name, a in self.actions.items()))
        lines.append("exporters: " + "; ".join(
            f"{name} {e['text']}" for name, e in self.exporters.items()))
        return lines

    def setting_lines(self) -> list[str]:
        return [f"setting {row['variable']}={row['value']} ({row['source']})"
                for row in self.settings]

    def changed_settings_line(self) -> str:
        changed = [f"{r['variable']}={r['value']}" for r in self.settings
                   if r["source"] != "default"]
        return ("settings from the environment: " + ", ".join(changed) if changed
                else "settings: all at their defaults")

    def verdict_line(self) -> str:
        lost = [f.ineffective for f in self.findings if f.ineffective]
        if lost:
            return "protection: NOT effective: " + "; ".join(dict.fromkeys(lost))
        warned = len(self.findings)
        tail = (f" ({warned} warning(s) that do not stop it)" if warned else ", no warnings")
        modes = {a["mode"] for a in self.actions.values()}
        # Off and dry-run are choices (rollout steps), not failures: said, not exit 1.
        if "on" not in modes:
            return ("protection: off, observe only (every action is off)" if modes == {"off"}
                    else "protection: dry-run, nothing acts (actions log would_...)") + tail
        return "protection: effective" + tail

    def lines(self) -> list[str]:
        """The whole summary for ``memwarden check``."""
        out = self.head_lines() + self.setting_lines()
        out += [f.line() for f in self.findings]
        out.append(self.verdict_line())
        return out

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "config": self.config,
                "gunicorn": {"workers": self.gunicorn.workers,
                             "worker_class": self.gunicorn.worker_class,
                             "max_requests": self.gunicorn.max_requests,
                             "max_requests_jitter": self.gunicorn.max_requests_jitter,
                             "app": self.gunicorn.app},
                "settings": self.settings,
                "limit": {k: v for k, v in self.limit.items() if k != "text"},
                "caps": {k: v for k, v in self.caps.items() if not k.endswith("text")},
                "actions": self.actions, "exporters": self.exporters,
                "warnings": [f.to_json() for f in self.findings],
                "protection_effective": self.exit_code == 0, "exit_code": self.exit_code}


def _show(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def setting_rows(settings: Settings, environ: Mapping[str, str]) -> list[dict[str, str]]:
    """Each setting's effective value and where it came from."""
    rows = []
    for s in SETTINGS:
        value = getattr(settings, s.name)
        source = "environment" if s.env in environ else "default"
        if s.name in _PROTECTIVE and settings.protect != "on":
            own = environ.get(s.env, s.default)
            if s.parse(own) != value:
                source = f"MEMWARDEN_PROTECT={settings.protect}"
        if s.name == "grace_seconds" and value is None:
            rows.append({"variable": s.env, "value": "auto (gunicorn's graceful_timeout)",
                         "source": source})
            continue
        rows.append({"variable": s.env, "value": _show(value), "source": source})
    return rows


def _limit(settings: Settings, cgroup: CgroupMemory | None) -> dict[str, Any]:
    explicit = [f"{name}={size}" for name, size in (
        ("MEMWARDEN_SOFT_LIMIT", settings.soft_limit), ("MEMWARDEN_IDLE_LIMIT",
                                                        settings.idle_limit),
        ("MEMWARDEN_HARD_LIMIT", settings.hard_limit),
        ("MEMWARDEN_SHED_HIGH", settings.shed_high)) if size is not None and size.bytes]
    out: dict[str, Any] = {"bytes": None, "source": None, "cgroup_version": None,
                           "cgroup_path": None, "explicit": explicit}
    if cgroup is not None:
        out.update(cgroup_version=cgroup.version, cgroup_path=cgroup.path)
    if cgroup is not None and cgroup.limit_bytes is not None:
        file = "memory.max" if cgroup.version == 2 else "memory.limit_in_bytes"
        out.update(bytes=cgroup.limit_bytes, source=f"cgroup v{cgroup.version} {file}")
        text = (f"{format_bytes(cgroup.limit_bytes)} ({cgroup.limit_bytes} bytes) from "
                f"cgroup v{cgroup.version} {file} of {cgroup.path}")
    elif cgroup is not None:
        text = f"none: cgroup v{cgroup.version} {cgroup.path} has no memory limit"
    else:
        text = f"none: no memory cgroup found under {settings.sys_root} for this process"
    if explicit:
        if out["bytes"] is None:
            out["source"] = "explicit"
        text += "; explicit sizes: " + ", ".join(explicit)
    out["text"] = text
    return out


def _cap(size: Size | None, resolved: int | None, share: int | None, env: str,
         environ: Mapping[str, str]) -> str:
    origin = "environment" if env in environ else "default"
    if size is None:
        return f"off ({origin})"
    if resolved is None:
        if size.fraction is not None and share is None:
            return f"off: {size} of no limit ({origin})"
        return f"off: {size} is out of order with the others, dropped ({origin})"
    how = f"{size} of the share" if size.fraction is not None else "size"
    return f"{format_bytes(resolved)} ({how}, {origin})"


def _caps(settings: Settings, limit: int | None, workers: int, environ: Mapping[str, str]
          ) -> tuple[dict[str, Any], list[str]]:
    limits, notes = resolve_limits(settings, limit, workers)
    share = worker_share(limit, workers)
    recycling = settings.recycle != "off"
    caps: dict[str, Any] = {
        "worker_share_bytes": share,
        "idle_limit_bytes": limits.idle_bytes if recycling else None,
        "soft_limit_bytes": limits.soft_bytes if recycling else None,
        "hard_limit_bytes": limits.hard_bytes if recycling else None}
    parts = [f"share {format_bytes(share)} ({workers} worker(s))" if share else
             "no share (no cgroup limit)"]
    if not recycling:
        parts.append("recycling off, no memory cap applies")
    else:
        parts += [f"{name} {_cap(size, value, share, f'MEMWARDEN_{name.upper()}_LIMIT', environ)}"
                  for name, size, value in (
                      ("idle", settings.idle_limit, limits.idle_bytes),
                      ("soft", settings.soft_limit, limits.soft_bytes),
                      ("hard", settings.hard_limit, limits.hard_bytes))]
        if settings.max_requests:
            jitter = settings.max_requests_jitter
            parts.append(f"after {settings.max_requests} requests"
                         + (f" (+0 to {jitter}, drawn per worker)" if jitter else ""))
    caps["text"] = "; ".join(parts)
    # Resolved as memwarden.hold.shed.Shedder does in each worker.
    high = settings.shed_high.resolve(share) if settings.shed_high else None
    low = settings.shed_low.resolve(share) if settings.shed_low else None
    if high is not None and (low is None or low >= high):
        low = int(high * 0.9)
    chigh, clow = settings.shed_cgroup_high, settings.shed_cgroup_low
    if chigh is not None and clow is None:
        clow = chigh - 0.05
    caps.update(shed_high_bytes=high, shed_low_bytes=low, shed_cgroup_high=chigh,
                shed_cgroup_low=clow)
    shed = []
    if high is not None and low is not None:
        shed.append(f"503 from a worker footprint of {format_bytes(high)}, serving again "
                    f"below {format_bytes(low)}")
    if chigh is not None and clow is not None:
        at = f" ({format_bytes(int(limit * chigh))})" if limit else " (no cgroup limit)"
        shed.append(f"503 from cgroup memory at {chigh:.0%} of the limit{at}, serving "
                    f"again below {clow:.0%}")
    if settings.shed == "off":
        caps["shed_text"] = "off"
    elif not shed:
        caps["shed_text"] = (f"{settings.shed}, but no threshold resolves "
                             "(MEMWARDEN_SHED_HIGH, MEMWARDEN_SHED_CGROUP_HIGH): never sheds")
    else:
        caps["shed_text"] = f"{settings.shed}: " + "; ".join(shed)
    return caps, notes


def _actions(rows: list[dict[str, str]], settings: Settings) -> dict[str, dict[str, str]]:
    source = {r["variable"]: r["source"] for r in rows}
    return {name: {"mode": getattr(settings, name),
                   "source": source[f"MEMWARDEN_{name.upper()}"]} for name in _PROTECTIVE}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _exporters(settings: Settings, environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    prom: dict[str, Any] = {"on": settings.prometheus,
                            "installed": _installed("prometheus_client")}
    if settings.prometheus:
        where = []
        if settings.prometheus_port:
            where.append(f"listener on {settings.prometheus_host}:{settings.prometheus_port}")
            prom.update(host=settings.prometheus_host, port=settings.prometheus_port)
        if settings.prometheus_path:
            where.append(f"{settings.prometheus_path} on the app's port")
            prom["path"] = settings.prometheus_path
        prom["text"] = "on: " + (", ".join(where) or "served nowhere (port 0, no path)")
    else:
        prom["text"] = "off"
    otel: dict[str, Any] = {"on": settings.otel, "installed": _installed("opentelemetry.sdk")}
    if settings.otel:
        endpoint = (environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
                    or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                    or "http://localhost:4318 (the OTLP default)")
        otel.update(endpoint=endpoint, text=f"on: OTLP/HTTP to {endpoint}")
    else:
        otel["text"] = "off"
    nr_installed = _installed("newrelic")
    nr: dict[str, Any] = {"mode": settings.newrelic, "installed": nr_installed}
    nr["text"] = {"off": "off",
                  "on": "on: the agent is initialized in each worker",
                  "auto": ("auto: on in a worker where the agent was initialized first"
                           if nr_installed else "auto: off (the agent is not installed)")
                  }[settings.newrelic]
    return {"prometheus": prom, "otel": otel, "newrelic": nr}


def summarize(settings: Settings, environ: Mapping[str, str], cgroup: CgroupMemory | None,
              gunicorn: GunicornView, ours: Mapping[str, Callable[..., Any]], config: str,
              app_asyncio: str | None = None) -> Summary:
    """The summary of ``settings`` under ``gunicorn`` in this cgroup. ``ours`` are
    memwarden's own hooks (to tell a replaced one); ``app_asyncio`` says why the
    app uses asyncio, when it does."""
    rows = setting_rows(settings, environ)
    limit = cgroup.limit_bytes if cgroup is not None else None
    caps, notes = _caps(settings, limit, gunicorn.workers, environ)
    found = findings(settings, environ, limit, gunicorn.workers, notes=notes,
                     hooks=gunicorn.hooks, ours=ours, worker_class=gunicorn.worker_class,
                     gunicorn_max_requests=gunicorn.max_requests, app_asyncio=app_asyncio)
    return Summary(version(), config, gunicorn, rows, _limit(settings, cgroup), caps,
                   _actions(rows, settings), _exporters(settings, environ), found)
