"""The warnings of ``memwarden check`` and of the start summary, each saying
whether it leaves a protection unable to act.

A finding that names what it makes ineffective (``ineffective``) fails the
check (exit 1): no limit to recycle against, a threshold that cannot resolve,
a replaced hook that carries a protective action. The others (an unknown
variable, gunicorn's ``max_requests`` beside memwarden's or missing while
memwarden's recycling does not act, loop tracking off under asyncio) leave
protection working and only warn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from memwarden import hook_calls
from memwarden.hold.policy import protection_state
from memwarden.settings import Settings, unknown_variables

__all__ = ["SAID_ELSEWHERE_AT_START", "Finding", "findings"]

# Findings another line already logs when gunicorn starts: the watchdog's
# protection warnings, the settings' unknown-variable warning and the hook
# check's. The start summary names them instead of repeating them.
SAID_ELSEWHERE_AT_START = frozenset({"no_limit", "cannot_shed", "unknown_variables",
                                     "replaced_hooks", "limit_dropped"})

# Hooks whose loss takes a protective action with it (the rest only export or tidy up).
_PROTECTIVE_HOOKS = ("when_ready", "pre_fork", "post_fork", "post_worker_init", "pre_request",
                     "post_request", "worker_exit", "child_exit")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    text: str
    ineffective: str | None = None  # the protection it leaves unable to act

    def line(self) -> str:
        if self.ineffective:
            return f"warning (makes {self.ineffective} ineffective): {self.text}"
        return f"warning: {self.text}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "ineffective": self.ineffective}


def _hook_finding(settings: Settings, hooks: Mapping[str, Callable[..., Any] | None],
                  ours: Mapping[str, Callable[..., Any]]) -> Finding | None:
    configured = {name: fn for name, fn in hooks.items() if fn is not None}
    replaced = hook_calls.replaced_hooks(configured, ours)
    names = [name for name in hook_calls.needed(settings) if name in replaced]
    if not names:
        return None
    acting = any(getattr(settings, a) != "off" for a in ("recycle", "shed", "orphans"))
    lost = [n for n in names if n in _PROTECTIVE_HOOKS]
    ineffective = ("protective actions carried by " + ", ".join(lost)) if lost and acting \
        else None
    if set(ours) <= set(replaced):
        return Finding("replaced_hooks",
                       "the gunicorn config calls none of memwarden's hooks, so memwarden "
                       "does not run under it: start gunicorn with -c "
                       "python:memwarden.gunicorn_conf, or put `from memwarden.gunicorn_conf "
                       "import *` in your config", ineffective and "every protective action")
    return Finding("replaced_hooks",
                   f"gunicorn hooks replaced without calling memwarden's: "
                   f"{hook_calls.describe(names)}; call memwarden.gunicorn_conf's hook of the "
                   "same name from yours", ineffective)


def _max_requests_finding(settings: Settings, gunicorn_max: int) -> Finding | None:
    if settings.recycle != "on" and gunicorn_max <= 0:
        # Rollout steps 1 and 2: gunicorn's count is the only backstop left.
        return Finding("no_backstop",
                       f"memwarden's recycling is {settings.recycle} and gunicorn's "
                       "max_requests is 0: nothing restarts a leaking worker; keep gunicorn's "
                       "max_requests (e.g. 1000, jitter 100) until memwarden's recycling is on "
                       "(docs/rollout.md)")
    if gunicorn_max <= 0 or settings.recycle != "on":
        return None
    text = (f"gunicorn max_requests={gunicorn_max} is set beside memwarden's recycling (on): "
            "each worker keeps both counts and whichever is reached first restarts it; "
            "gunicorn's count includes health checks, its restarts do not wait for a recycle "
            "slot (workers started together restart together) and leave no recycle line, so "
            "memwarden analyze cannot say why those workers ended")
    if settings.max_requests and gunicorn_max <= settings.max_requests:
        text += (f"; it is at or below MEMWARDEN_MAX_REQUESTS={settings.max_requests}, so "
                 "memwarden's count never fires")
    text += (f"; use MEMWARDEN_MAX_REQUESTS={settings.max_requests or gunicorn_max} instead "
             "and set gunicorn's max_requests to 0 (docs/rollout.md)")
    return Finding("max_requests", text)


def findings(settings: Settings, environ: Mapping[str, str], cgroup_limit: int | None,
             workers: int, *, notes: list[str] | None = None,
             hooks: Mapping[str, Callable[..., Any] | None] | None = None,
             ours: Mapping[str, Callable[..., Any]] | None = None,
             worker_class: str = "sync", gunicorn_max_requests: int = 0,
             app_asyncio: str | None = None) -> list[Finding]:
    """Every finding, the ones that make protection ineffective first.

    ``hooks`` and ``ours`` (the config's hooks and memwarden's) are compared
    only when both are given; ``app_asyncio`` is why the app uses asyncio."""
    out: list[Finding] = []
    _, warnings = protection_state(settings, cgroup_limit, workers)
    for text in warnings:
        recycling = "cannot recycle" in text
        out.append(Finding("no_limit" if recycling else "cannot_shed", text,
                           "recycling by memory" if recycling else "load shedding"))
    if hooks is not None and ours is not None:
        hook = _hook_finding(settings, hooks, ours)
        if hook is not None:
            out.append(hook)
    out += [Finding("limit_dropped", f"memwarden: {note}") for note in notes or ()]
    unknown = unknown_variables(environ)
    if unknown:
        names = ", ".join(f"{name} (did you mean {closest}?)" if closest else name
                          for name, closest in unknown)
        out.append(Finding("unknown_variables",
                           f"memwarden ignores {names}: not a memwarden setting"))
    limit = _max_requests_finding(settings, gunicorn_max_requests)
    if limit is not None:
        out.append(limit)
    if app_asyncio and not settings.loop_tracking:
        out.append(Finding(
            "loop_tracking",
            f"MEMWARDEN_LOOP_TRACKING is off while the app uses asyncio ({app_asyncio}): "
            "the census does not count event loops and their tasks (asyncio.loops, "
            "asyncio.tasks), the resources an asyncio app most often leaks; set "
            "MEMWARDEN_LOOP_TRACKING=1"))
    return sorted(out, key=lambda f: f.ineffective is None)
