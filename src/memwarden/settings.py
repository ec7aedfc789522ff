"""One settings table: environment variables, validation and docs.

Each setting is read from ``MEMWARDEN_<NAME>``; values are validated when the
settings are loaded (in the gunicorn master, at start), never mid-request, by
the parsers in :mod:`memwarden.settings_parse`.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from memwarden.settings_parse import (
    float_at_least,
    int_at_least,
    parse_auto_bool,
    parse_bool,
    parse_footprint_kind,
    parse_host,
    parse_log_level,
    parse_mode,
    parse_optional_seconds,
    parse_paths,
    parse_port,
    parse_url_path,
)
from memwarden.sizes import Size, parse_ratio, parse_size

__all__ = ["PREFIX", "SETTINGS", "Setting", "Settings", "SettingsError", "settings_doc",
           "unknown_variables", "warn_unknown_variables"]

PREFIX = "MEMWARDEN_"
_log = logging.getLogger("memwarden.settings")


class SettingsError(ValueError):
    """A MEMWARDEN_* value that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str
    parse: Callable[[str], Any]
    doc: str

    @property
    def env(self) -> str:
        return PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("census_every", "1000", int_at_least(1),
            "Take a resource census every N requests per worker (1: every request)."),
    Setting("census_seconds", "60", float_at_least(0.0),
            "Also take one when this many seconds passed since the last (0: count only)."),
    Setting("blocks_budget_us", "20", float_at_least(0.0),
            "Read allocated blocks on every request while that costs at most this many "
            "microseconds; on a bigger heap, on every Nth request so the average stays "
            "within it (0: every request, whatever it costs)."),
    Setting("blocks_every", "16", int_at_least(1),
            "Read allocated blocks on every Nth request, and on any request whose RSS "
            "moved (1: every request; 16 saves most of the reading's cost on a quiet heap)."),
    Setting("census_descendants", "1", parse_bool,
            "Include descendant processes and their PSS in the census."),
    Setting("gc_types", "0", int_at_least(0),
            "Add counts of the N most common object types to the census (slow; 0: off)."),
    Setting("census_collect", "0", parse_bool,
            "Run a full garbage collection before each census for an exact live heap "
            "(audits; too slow for big production heaps)."),
    Setting("loop_tracking", "0", parse_bool,
            "Count open asyncio event loops and their tasks (wraps BaseEventLoop.__init__)."),
    Setting("log_level", "INFO", parse_log_level, "Level of the JSON logs set up for gunicorn."),
    Setting("health_paths", "/healthz,/health,/livez,/readyz,/ping", parse_paths,
            "Paths of health checks: logged, but not counted toward recycling."),
    Setting("access_log", "0", parse_bool,
            "Also write gunicorn's access log (as JSON); the request line covers it."),
    Setting("proc_root", "/proc", str,
            "Where /proc is mounted (a container may see the host's elsewhere)."),
    Setting("sys_root", "/sys", str, "Where /sys is mounted, for cgroup files."),
    Setting("wrap_app", "1", parse_bool,
            "Wrap the gunicorn app with the request memory tracker after fork."),
    # Export (memwarden.exporters); each exporter is an optional extra.
    Setting("prometheus", "0", parse_bool,
            "Export per-worker metrics to Prometheus (needs `memwarden[prometheus]`)."),
    Setting("prometheus_dir", "", str,
            "prometheus_client's multiprocess directory (default: `PROMETHEUS_MULTIPROC_DIR`, "
            "else a new temporary one); its *.db files are removed when the master starts."),
    Setting("prometheus_path", "", parse_url_path,
            "Also serve the metrics on the app's own port, at this path, before the app sees "
            "the request (and ahead of its authentication: anyone who reaches the app reads "
            "them, and each scrape costs a worker smaps reads). Empty: not served by the app."),
    Setting("prometheus_port", "9410", parse_port,
            "Port of the metrics listener, a small server beside the master (0: none)."),
    Setting("prometheus_host", "127.0.0.1", parse_host,
            "Address of that listener: loopback unless the scraper is on another host "
            "(0.0.0.0: every interface; empty is refused)."),
    Setting("otel", "0", parse_bool,
            "Export per-worker metrics over OTLP/HTTP (needs `memwarden[otel]`), configured by "
            "the standard `OTEL_*` variables."),
    Setting("newrelic", "auto", parse_auto_bool,
            "Send request attributes, census metrics and action events to the New Relic "
            "agent (needs `memwarden[newrelic]`): auto (when the agent was initialized "
            "before the worker started), 1 (also initialize it in each worker) or 0."),
    # Hold: recycling (memwarden.recycle), orphans (memwarden.orphans), shedding
    # (memwarden.shed). A size is 512MiB, 1.5GB, 80% or off; a percentage of a
    # limit is of the worker's share of the cgroup memory limit (limit / workers),
    # and off when the cgroup has no limit.
    Setting("protect", "on", parse_mode,
            "Every protective action at once: on (each follows its own mode), dry-run "
            "(each that is not off logs `would_<action>` with its figures and does nothing) "
            "or off (observe only: no decisions at all). Applied when the settings load."),
    Setting("recycle", "on", parse_mode,
            "Memory and request-count recycling of workers: on, dry-run (log `would_recycle`, "
            "do nothing) or off."),
    Setting("soft_limit", "80%", parse_size,
            "Footprint at which a worker restarts gracefully after the current request. "
            "A size (512MiB, 1.5GB), off, or a percentage of the worker's share of the "
            "cgroup memory limit (limit / workers; off when there is no limit)."),
    Setting("idle_limit", "60%", parse_size,
            "Lower footprint at which a worker restarts in the next idle gap, not mid-burst."),
    Setting("idle_seconds", "5", float_at_least(0.1),
            "How long a worker must go without a request for an idle-limit restart."),
    Setting("hard_limit", "95%", parse_size,
            "Footprint at which the master stops the worker (SIGTERM, then SIGKILL after "
            "the grace period), even in the middle of a stuck request."),
    Setting("grace_seconds", "auto", parse_optional_seconds,
            "Grace between the master's SIGTERM and SIGKILL at the hard limit "
            "(auto: gunicorn's graceful_timeout)."),
    Setting("max_requests", "0", int_at_least(0),
            "Restart a worker after this many requests, health checks not counted (0: off)."),
    Setting("max_requests_jitter", "0", int_at_least(0),
            "Add a random 0..N to max_requests, drawn once per worker."),
    Setting("footprint", "rss", parse_footprint_kind,
            "The worker's own part of its footprint: rss (cheap) or pss (shared pages split)."),
    Setting("footprint_descendants", "1", parse_bool,
            "Add the PSS of the worker's descendant processes (browsers, MCP servers) "
            "to its footprint."),
    Setting("footprint_every", "10", int_at_least(1),
            "Sample PSS and descendants every N requests per worker (RSS is read on each)."),
    Setting("footprint_seconds", "5", float_at_least(0.0),
            "Also sample when this many seconds passed since the last sample."),
    Setting("max_concurrent_recycles", "1", int_at_least(0),
            "Workers recycling at once, from the decision until the replacement has "
            "booted (0: no limit). The hard limit ignores it."),
    Setting("orphans", "on", parse_mode,
            "Terminate a worker's descendant processes when it exits, and processes "
            "orphaned by a killed worker: on, dry-run or off."),
    Setting("orphan_grace_seconds", "2", float_at_least(0.0),
            "Between SIGTERM and SIGKILL for those descendants."),
    Setting("shed", "on", parse_mode,
            "Load shedding (503) when a shed threshold is set: on, dry-run or off."),
    Setting("shed_high", "off", parse_size,
            "Footprint at or above which a worker answers new requests with 503."),
    Setting("shed_low", "off", parse_size,
            "Footprint below which it serves again (off: 90% of shed_high)."),
    Setting("shed_cgroup_high", "off", parse_ratio,
            "Cgroup memory in use (minus inactive page cache), as a share of its limit, "
            "at or above which workers answer 503 (e.g. 90%)."),
    Setting("shed_cgroup_low", "off", parse_ratio,
            "Share below which they serve again (off: shed_cgroup_high minus 5 points)."),
    Setting("shed_retry_after", "5", int_at_least(1),
            "Seconds in the Retry-After header and JSON body of a 503."),
    # The bounded resource pool (memwarden.pool), read when a pool is made.
    Setting("pool_limits", "on", parse_mode,
            "Bounded resource pools (memwarden.pool.Pool): on (refuse an acquire with "
            "PoolTimeout when no slot frees in time), dry-run (wait the same, then log "
            "`would_pool_refuse` and lend one beyond max_size) or off (no bound: create on "
            "demand)."),
)


def settings_doc() -> str:
    """A Markdown table of every setting, for the README."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{s.env}` | `{s.default}` | {s.doc} |" for s in SETTINGS]
    return "\n".join(rows)


# The modes MEMWARDEN_PROTECT switches together.
_PROTECTIVE = ("recycle", "orphans", "shed", "pool_limits")
_SOFT_LIMIT = Size(fraction=0.8)
_IDLE_LIMIT = Size(fraction=0.6)
_HARD_LIMIT = Size(fraction=0.95)


@dataclass(frozen=True, slots=True)
class Settings:
    census_every: int = 1000
    census_seconds: float = 60.0
    blocks_budget_us: float = 20.0
    blocks_every: int = 16
    census_descendants: bool = True
    gc_types: int = 0
    census_collect: bool = False
    loop_tracking: bool = False
    log_level: str = "INFO"
    health_paths: tuple[str, ...] = field(
        default=("/healthz", "/health", "/livez", "/readyz", "/ping"))
    access_log: bool = False
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    wrap_app: bool = True
    prometheus: bool = False
    prometheus_dir: str = ""
    prometheus_path: str = ""
    prometheus_port: int = 9410
    prometheus_host: str = "127.0.0.1"
    otel: bool = False
    newrelic: str = "auto"
    protect: str = "on"
    recycle: str = "on"
    soft_limit: Size | None = _SOFT_LIMIT
    idle_limit: Size | None = _IDLE_LIMIT
    idle_seconds: float = 5.0
    hard_limit: Size | None = _HARD_LIMIT
    grace_seconds: float | None = None
    max_requests: int = 0
    max_requests_jitter: int = 0
    footprint: str = "rss"
    footprint_descendants: bool = True
    footprint_every: int = 10
    footprint_seconds: float = 5.0
    max_concurrent_recycles: int = 1
    orphans: str = "on"
    orphan_grace_seconds: float = 2.0
    shed: str = "on"
    shed_high: Size | None = None
    shed_low: Size | None = None
    shed_cgroup_high: float | None = None
    shed_cgroup_low: float | None = None
    shed_retry_after: int = 5
    pool_limits: str = "on"

    def __post_init__(self) -> None:
        # MEMWARDEN_PROTECT caps every action's own mode, once, here: the parts
        # that act (recycler, watchdog, shedder, orphan reaper, pool) read only theirs.
        if self.protect == "on":
            return
        for name in _PROTECTIVE:
            if self.protect == "off" or getattr(self, name) != "off":
                object.__setattr__(self, name, self.protect)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every ``MEMWARDEN_*`` variable; raise SettingsError naming a bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(setting.env)
            if raw is None:
                continue
            try:
                values[setting.name] = setting.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{setting.env}={raw!r}: {exc}") from None
            except OverflowError:  # a size of 400 digits
                raise SettingsError(f"{setting.env}={raw!r}: too large") from None
        values.update(overrides)
        if environ is None and _log.hasHandlers():
            # The process's own settings: say once what it ignores. With no
            # handler yet (gunicorn imports its config before it sets up
            # logging) the warning waits for warn_unknown_variables().
            warn_unknown_variables()
        return cls(**values)


# Read and checked by the module that uses them, not part of Settings: the
# allocation-site producer's switches (memwarden.alloc_sites).
READ_ELSEWHERE = ("MEMWARDEN_TRACEMALLOC", "MEMWARDEN_TRACEMALLOC_EVERY",
                  "MEMWARDEN_TRACEMALLOC_WORKERS")


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Each ``MEMWARDEN_*`` name in ``environ`` that is no setting, with the closest
    setting's name (None when nothing is close), sorted by name."""
    known = [s.env for s in SETTINGS] + list(READ_ELSEWHERE)
    unknown = sorted(name for name in environ
                     if name.upper().startswith(PREFIX) and name not in known)
    # Compared without the prefix, which every name shares and would make any two close.
    suffixes = {s.name.upper(): s.env for s in SETTINGS}

    def closest(name: str) -> str | None:
        found = difflib.get_close_matches(name.upper()[len(PREFIX):], suffixes, n=1)
        return suffixes[found[0]] if found else None

    return [(name, closest(name)) for name in unknown]


_warned = False


def warn_unknown_variables(environ: Mapping[str, str] | None = None) -> None:
    """Log one warning naming every unknown ``MEMWARDEN_*`` variable; once per process.

    A misspelled variable would otherwise leave its setting at the default
    without a word. Called when the settings load, and by the gunicorn master
    once its logging is set up; workers inherit the flag and stay quiet.
    """
    global _warned
    if _warned:
        return
    _warned = True
    unknown = unknown_variables(os.environ if environ is None else environ)
    if not unknown:
        return
    names = ", ".join(f"{name} (did you mean {closest}?)" if closest else name
                      for name, closest in unknown)
    _log.warning("memwarden ignores %s: not a memwarden setting", names,
                 extra={"memwarden": {"pid": os.getpid(), "unknown_variables": {
                     name: closest for name, closest in unknown}}})


# The table and the dataclass must agree; checked at import so a mismatch
# fails every test rather than one mid-request.
_table_defaults = {s.name: s.parse(s.default) for s in SETTINGS}
_class_defaults = {f.name: getattr(Settings(), f.name) for f in fields(Settings)}
if _table_defaults != _class_defaults:  # pragma: no cover - a developer error
    raise RuntimeError(
        f"settings table and Settings differ: {_table_defaults} != {_class_defaults}")
