"""The recycling policy (pure), sizes, the worker's recycler, rolling slots, exit statuses."""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import FakeSampler

from memwarden.hold import exits
from memwarden.hold.policy import (
    NO_ACTION,
    Action,
    Escalation,
    HardLimitEscalator,
    Limits,
    check_settings,
    decide,
    draw_max_requests,
    protection_state,
    resolve_limits,
    worker_share,
)
from memwarden.hold.slots import RecycleSlots
from memwarden.hold.worker import Recycler
from memwarden.settings import Settings, SettingsError
from memwarden.sizes import Size, format_bytes, parse_ratio, parse_size

MiB = 1024 * 1024
GiB = 1024 * MiB

# -- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("512MiB", Size(bytes=512 * MiB)), ("1GiB", Size(bytes=GiB)),
    ("1.5GiB", Size(bytes=3 * GiB // 2)),
    ("512Mi", Size(bytes=512 * MiB)), ("2Gi", Size(bytes=2 * GiB)), ("64KiB", Size(bytes=65536)),
    ("1GB", Size(bytes=10**9)), ("500MB", Size(bytes=500 * 10**6)), ("100kB", Size(bytes=10**5)),
    ("4096", Size(bytes=4096)), ("4096B", Size(bytes=4096)), (" 80% ", Size(fraction=0.8)),
    ("100%", Size(fraction=1.0)), ("0.5%", Size(fraction=0.005)), ("1tib", Size(bytes=2**40)),
    ("off", None), ("", None), ("0", None), ("none", None), ("0MiB", None),
])
def test_sizes_parse(raw: str, expected: Size | None) -> None:
    assert parse_size(raw) == expected


@pytest.mark.parametrize(("raw", "says"), [
    ("512M", "ambiguous"), ("1g", "ambiguous"), ("2K", "ambiguous"), ("12 parsecs", "unknown unit"),
    ("lots", "not a size"), ("-1GiB", "not a size"), ("0%", "above 0%"), ("120%", "at most 100%"),
    ("abc%", "not a percentage"), ("nan%", "above 0%"),
])
def test_bad_sizes_say_why(raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_size(raw)


def test_ratios_parse() -> None:
    assert parse_ratio("90%") == pytest.approx(0.9)
    assert parse_ratio("0.75") == 0.75
    assert parse_ratio("off") is None
    for bad in ("1.5", "150%", "full"):
        with pytest.raises(ValueError):
            parse_ratio(bad)


def test_size_resolves_against_a_reference() -> None:
    assert Size(bytes=5).resolve(None) == 5
    assert Size(fraction=0.8).resolve(1000) == 800
    assert Size(fraction=0.8).resolve(None) is None
    assert str(Size(fraction=0.8)) == "80%" and str(Size(bytes=3 * GiB // 2)) == "1.5GiB"
    assert format_bytes(512) == "512B" and format_bytes(800 * MiB) == "800MiB"


@given(st.integers(min_value=1, max_value=2**50))
def test_byte_sizes_round_trip(n: int) -> None:
    assert parse_size(f"{n}B") == Size(bytes=n)
    assert parse_size(f"{n}") == Size(bytes=n)


# -- settings ----------------------------------------------------------------------------------

def test_hold_settings_read_from_the_environment() -> None:
    s = Settings.from_env({"MEMWARDEN_SOFT_LIMIT": "1GiB", "MEMWARDEN_HARD_LIMIT": "90%",
                           "MEMWARDEN_FOOTPRINT": "PSS", "MEMWARDEN_RECYCLE": "dry_run",
                           "MEMWARDEN_GRACE_SECONDS": "4", "MEMWARDEN_SHED_CGROUP_HIGH": "95%",
                           "MEMWARDEN_MAX_REQUESTS": "1000",
                           "MEMWARDEN_MAX_REQUESTS_JITTER": "50"})
    assert s.soft_limit == Size(bytes=GiB) and s.hard_limit == Size(fraction=0.9)
    assert s.footprint == "pss" and s.recycle == "dry-run" and s.grace_seconds == 4.0
    assert s.shed_cgroup_high == pytest.approx(0.95)
    assert (s.max_requests, s.max_requests_jitter) == (1000, 50)
    assert Settings().grace_seconds is None and Settings().soft_limit == Size(fraction=0.8)


@pytest.mark.parametrize(("env", "says"), [
    ({"MEMWARDEN_SOFT_LIMIT": "512M"}, "MEMWARDEN_SOFT_LIMIT='512M': 'M' is ambiguous: write MiB"),
    ({"MEMWARDEN_FOOTPRINT": "uss"}, "MEMWARDEN_FOOTPRINT='uss': expected rss or pss"),
    ({"MEMWARDEN_RECYCLE": "maybe"}, "expected on, dry-run or off"),
    ({"MEMWARDEN_IDLE_SECONDS": "0"}, "MEMWARDEN_IDLE_SECONDS='0': must be at least 0.1"),
    ({"MEMWARDEN_SHED_CGROUP_HIGH": "2"}, "at most 1"),
])
def test_bad_hold_settings_name_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings.from_env(env)


@pytest.mark.parametrize(("env", "says"), [
    ({"MEMWARDEN_SOFT_LIMIT": "2GiB", "MEMWARDEN_HARD_LIMIT": "1GiB"},
     "MEMWARDEN_SOFT_LIMIT=2GiB is above MEMWARDEN_HARD_LIMIT=1GiB"),
    ({"MEMWARDEN_IDLE_LIMIT": "90%"}, "MEMWARDEN_IDLE_LIMIT=90% is above MEMWARDEN_SOFT_LIMIT=80%"),
    ({"MEMWARDEN_SHED_LOW": "1GiB", "MEMWARDEN_SHED_HIGH": "1GiB"}, "must be below"),
    ({"MEMWARDEN_SHED_LOW": "1GiB"}, "without MEMWARDEN_SHED_HIGH"),
    ({"MEMWARDEN_SHED_CGROUP_HIGH": "80%", "MEMWARDEN_SHED_CGROUP_LOW": "90%"}, "must be below"),
])
def test_limits_out_of_order_are_refused_at_load(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        check_settings(Settings.from_env(env))


def test_defaults_and_mixed_units_pass_the_load_check() -> None:
    check_settings(Settings())
    check_settings(Settings.from_env({"MEMWARDEN_SOFT_LIMIT": "1GiB"}))  # vs. 95%: at run time


# -- limits from the cgroup --------------------------------------------------------------------

def test_limits_default_from_the_cgroup_share() -> None:
    limits, notes = resolve_limits(Settings(), 4 * GiB, 4)
    assert notes == []
    assert limits.soft_bytes == int(GiB * 0.8)
    assert limits.idle_bytes == int(GiB * 0.6)
    assert limits.hard_bytes == int(GiB * 0.95)
    assert limits.max_requests is None and limits.active


def test_without_a_cgroup_limit_percentages_are_off() -> None:
    limits, _ = resolve_limits(Settings(), None, 4)
    assert not limits.watches_memory and not limits.active
    absolute, _ = resolve_limits(Settings(soft_limit=Size(bytes=GiB)), None, 2)
    assert absolute.soft_bytes == GiB and absolute.hard_bytes is None


def test_inconsistent_resolved_limits_are_dropped_with_a_note() -> None:
    limits, notes = resolve_limits(
        Settings(soft_limit=Size(bytes=2 * GiB), idle_limit=Size(bytes=3 * GiB)), 4 * GiB, 4)
    assert limits.soft_bytes is None and limits.idle_bytes is None
    assert limits.hard_bytes == int(GiB * 0.95)
    assert len(notes) == 2 and "soft limit" in notes[0] and "idle limit" in notes[1]


def test_worker_share() -> None:
    assert worker_share(None, 2) is None
    assert worker_share(1000, 3) == 333
    assert worker_share(1000, 0) == 1000


# -- max requests with jitter ------------------------------------------------------------------

@given(st.integers(1, 10_000), st.integers(0, 1000), st.integers(0, 2**32))
def test_jitter_is_within_range(base: int, jitter: int, seed: int) -> None:
    drawn = draw_max_requests(base, jitter, random.Random(seed))
    assert drawn is not None and base <= drawn <= base + jitter


def test_jitter_is_drawn_once_per_worker() -> None:
    """Limits are resolved once, when the worker starts; requests never redraw."""
    settings = Settings(max_requests=100, max_requests_jitter=50)
    draws = {resolve_limits(settings, None, 1, random.Random(i))[0].max_requests
             for i in range(50)}
    assert len(draws) > 5, "jitter should spread workers"
    limits, _ = resolve_limits(settings, None, 1, random.Random(7))
    stops: list[int] = []
    r = _recycler(limits, stops)
    for _ in range(200):
        r.on_request({"rss_bytes": 10 * MiB})
    assert stops == [1] and r.requests == limits.max_requests
    assert draw_max_requests(0, 50, random.Random(1)) is None


# -- the decision ------------------------------------------------------------------------------

LIMITS = Limits(soft_bytes=800, idle_bytes=600, hard_bytes=950, idle_seconds=5.0,
                max_requests=1000)


@pytest.mark.parametrize(("footprint", "requests", "idle_for", "action", "reason"), [
    (None, 0, None, Action.NONE, None),
    (100, 10, None, Action.NONE, None),
    (100, 10, 100.0, Action.NONE, None),
    (599, 0, 60.0, Action.NONE, None),
    (600, 0, None, Action.AT_IDLE, "idle"),
    (700, 0, 4.9, Action.AT_IDLE, "idle"),
    (700, 0, 5.0, Action.NOW, "idle"),
    (800, 0, None, Action.NOW, "soft_limit"),
    (800, 0, 60.0, Action.NOW, "soft_limit"),
    (950, 0, None, Action.NOW, "hard_limit"),
    (10**12, 2000, 60.0, Action.NOW, "hard_limit"),
    (100, 1000, None, Action.NOW, "max_requests"),
    (None, 1000, None, Action.NOW, "max_requests"),
    (850, 1000, None, Action.NOW, "soft_limit"),
    (700, 1000, 60.0, Action.NOW, "max_requests"),
])
def test_decide(footprint: int | None, requests: int, idle_for: float | None,
                action: Action, reason: str | None) -> None:
    d = decide(LIMITS, footprint, requests, idle_for)
    assert (d.action, d.reason) == (action, reason)
    if reason in ("soft_limit", "hard_limit", "idle"):
        assert d.limit_bytes == {"soft_limit": 800, "hard_limit": 950, "idle": 600}[reason]
        assert d.footprint_bytes == footprint
    assert d.bypasses_rolling == (reason == "hard_limit")


@given(st.one_of(st.none(), st.integers(0, 2000)), st.integers(0, 3000),
       st.one_of(st.none(), st.floats(0, 100)))
def test_decide_is_consistent(footprint: int | None, requests: int,
                              idle_for: float | None) -> None:
    """Recycle now iff some limit is reached; at idle only over the idle limit."""
    d = decide(LIMITS, footprint, requests, idle_for)
    fp = footprint if footprint is not None else -1
    over_now = fp >= 800 or requests >= 1000 or (fp >= 600 and idle_for is not None
                                                 and idle_for >= 5.0)
    assert (d.action is Action.NOW) == over_now
    # Over the idle limit only, not idle long enough: wait for idleness.
    assert (d.action is Action.AT_IDLE) == (not over_now and 600 <= fp < 800)
    assert (d.action is Action.NONE) == (not over_now and fp < 600)
    if d.action is not Action.NONE:
        assert d.reason == ("hard_limit" if fp >= 950 else "soft_limit" if fp >= 800
                            else "max_requests" if requests >= 1000 else "idle")
    fields = d.fields()
    assert all(v is not None for v in fields.values())


def test_no_limits_no_action() -> None:
    assert decide(Limits(), 10**15, 10**9, 1e9) is NO_ACTION


# -- the master's escalation -------------------------------------------------------------------

def test_hard_limit_escalates_from_term_to_kill_after_grace() -> None:
    e = HardLimitEscalator(grace=2.0)
    assert e.step(1, 900, 950, 0.0) is Escalation.NONE
    assert e.step(1, 960, 950, 1.0) is Escalation.TERM
    assert e.stopping(1) and not e.killed(1)
    assert e.step(1, 100, 950, 2.9) is Escalation.NONE  # going down does not cancel it
    assert e.step(1, 100, 950, 3.0) is Escalation.KILL
    assert e.step(1, 100, 950, 9.0) is Escalation.NONE and e.killed(1)
    e.forget(1)
    assert not e.stopping(1) and e.step(1, 100, 950, 10.0) is Escalation.NONE


def test_a_worker_already_stopping_gets_no_second_term_but_the_grace_runs() -> None:
    e = HardLimitEscalator(grace=1.0)
    assert e.step(7, 960, 950, 0.0, stopping=True) is Escalation.NONE
    assert e.step(7, 960, 950, 1.0) is Escalation.KILL


def test_no_hard_limit_or_no_figure_never_escalates() -> None:
    e = HardLimitEscalator(grace=0.0)
    assert e.step(1, 10**12, None, 0.0) is Escalation.NONE
    assert e.step(1, None, 100, 0.0) is Escalation.NONE


# -- the worker's recycler ---------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _recycler(limits: Limits, stops: list[int], clock: Clock | None = None,
              **kw: Any) -> Recycler:
    return Recycler(limits, FakeSampler(), clock=clock or Clock(),  # type: ignore[arg-type]
                    stop=lambda: stops.append(1), health_paths=frozenset({"/healthz"}), **kw)


def test_health_checks_are_not_counted() -> None:
    stops: list[int] = []
    r = _recycler(Limits(max_requests=3), stops)
    for _ in range(10):
        r.on_request({"route": "/healthz", "health_check": True, "rss_bytes": 1})
    assert r.requests == 0 and stops == []
    for _ in range(3):
        r.on_request({"route": "/chat", "rss_bytes": 1})
    assert stops == [1] and r.recycling


def test_recycles_once_and_logs_reason_and_figures(caplog: pytest.LogCaptureFixture) -> None:
    stops: list[int] = []
    r = _recycler(Limits(soft_bytes=100), stops)
    with caplog.at_level("INFO", logger="memwarden.recycle"):
        r.on_request({"rss_bytes": 50})
        r.on_request({"rss_bytes": 150})
        r.on_request({"rss_bytes": 200})
    assert stops == [1]
    [record] = [x for x in caplog.records if x.getMessage() == "recycle"]
    fields = record.memwarden  # type: ignore[attr-defined]
    assert fields["pid"] == os.getpid() and fields["reason"] == "soft_limit"
    assert fields["footprint_bytes"] == 150 and fields["limit_bytes"] == 100
    assert fields["requests"] == 2


def test_idle_limit_waits_for_the_gap() -> None:
    stops: list[int] = []
    clock = Clock()
    r = _recycler(Limits(idle_bytes=100, idle_seconds=5.0), stops, clock)
    sampler: FakeSampler = r.sampler  # type: ignore[assignment]
    sampler.total = 150
    for _ in range(5):  # a burst over the idle limit
        r.begin("/chat")
        clock.t += 1.0
        r.end("/chat")
        r.on_request({"rss_bytes": 150})
        assert r.check_idle().action is Action.AT_IDLE
    r.begin("/chat")  # a long request: in flight, never idle
    clock.t += 60
    assert r.check_idle().action is Action.NONE
    r.end("/chat")
    clock.t += 4.9
    assert r.check_idle().action is Action.AT_IDLE and stops == []
    clock.t += 0.1
    r.begin("/healthz")  # a health check does not make the worker busy
    assert r.check_idle().action is Action.NOW
    assert stops == [1] and sampler.fresh[-1] is True


def test_dry_run_logs_would_recycle_once_and_does_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    stops: list[int] = []
    r = _recycler(Limits(soft_bytes=100), stops, mode="dry-run")
    with caplog.at_level("INFO", logger="memwarden.recycle"):
        for _ in range(5):
            r.on_request({"rss_bytes": 500})
    assert stops == [] and not r.recycling
    assert [x.getMessage() for x in caplog.records] == ["would_recycle"]


def test_off_does_nothing() -> None:
    stops: list[int] = []
    r = _recycler(Limits(soft_bytes=100), stops, mode="off")
    r.on_request({"rss_bytes": 500})
    assert stops == []


# -- rolling slots -----------------------------------------------------------------------------

def test_a_slot_taken_is_refused_to_another_worker(tmp_path: Any) -> None:
    slots = RecycleSlots.create(1)
    try:
        a = RecycleSlots(slots.directory, 1)
        b = RecycleSlots(slots.directory, 1)
        assert a.acquire() == 0 and a.acquire() == 0  # idempotent
        assert b.acquire() is None
        unlimited = RecycleSlots(slots.directory, 0)
        assert unlimited.acquire() == -1
    finally:
        slots.close()
    assert not os.path.exists(slots.directory)


def test_over_the_hard_limit_a_worker_does_not_wait_for_a_slot() -> None:
    slots = RecycleSlots.create(1)
    try:
        assert RecycleSlots(slots.directory, 1).acquire() == 0  # someone else recycles
        stops: list[int] = []
        r = _recycler(Limits(soft_bytes=100, hard_bytes=200), stops,
                      slots=RecycleSlots(slots.directory, 1))
        r.on_request({"rss_bytes": 150})
        assert stops == []
        r.on_request({"rss_bytes": 250})
        assert stops == [1]
        assert slots.stopping(os.getpid())  # the master is told
    finally:
        slots.close()


def _child(work: Any) -> int:
    """Fork; the child runs ``work()`` and exits 0 (1 on failure)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def test_slot_passes_from_the_recycled_worker_to_its_replacement() -> None:
    """Worker A recycles and exits; the slot stays taken until the replacement
    (forked after) has booted; only then can another worker take it."""
    master = RecycleSlots.create(1)
    other = RecycleSlots(master.directory, 1)  # another worker, without hand-over
    r1, w1 = os.pipe()
    try:
        master.prepare(1)

        def worker_a() -> None:
            master.adopt(1)
            assert master.acquire() == 0

        a = _child(worker_a)
        _, status = os.waitpid(a, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert other.acquire() is None, "A is gone, but its slot must outlive it"
        assert master.worker_exited(1, a) == 0
        master.prepare(2)

        def replacement() -> None:
            master.adopt(2)
            os.read(r1, 1)  # "booting" until the parent says so
            master.booted()

        b = _child(replacement)
        assert other.acquire() is None, "the replacement is still booting"
        os.write(w1, b"x")
        deadline = time.monotonic() + 5
        while other.acquire() is None:
            assert time.monotonic() < deadline, "the slot was never released"
            time.sleep(0.01)
        _, status = os.waitpid(b, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(r1)
        os.close(w1)
        master.close()


def test_a_worker_that_did_not_recycle_hands_nothing_over() -> None:
    master = RecycleSlots.create(1)
    try:
        master.prepare(1)
        assert master.worker_exited(1, 12345) is None
        assert RecycleSlots(master.directory, 1).acquire() == 0
    finally:
        master.close()


# -- exit statuses -----------------------------------------------------------------------------

def test_waitpid_statuses_are_kept_for_child_exit() -> None:
    exits.install()
    try:
        pid = _child(lambda: os.kill(os.getpid(), signal.SIGKILL))
        wpid, _ = os.waitpid(pid, 0)
        assert wpid == pid
        raw = exits.pop_status(pid)
        assert raw is not None and exits.pop_status(pid) is None
        status = exits.ExitStatus.from_wait(raw)
        assert status.signal == signal.SIGKILL and status.signal_name == "SIGKILL"
        ok = _child(lambda: None)
        os.waitpid(ok, 0)
        raw_ok = exits.pop_status(ok)
        assert raw_ok is not None and exits.ExitStatus.from_wait(raw_ok).exit_code == 0
    finally:
        exits.uninstall()


def test_oom_kills_are_claimed_within_the_window() -> None:
    counter = [0]
    now = [0.0]
    t = exits.OomTracker(lambda: counter[0], window=10.0, clock=lambda: now[0])
    assert not t.claim()
    counter[0] = 2  # two kills seen by a tick before the deaths are reaped
    t.poll()
    now[0] = 3.0
    assert t.claim()
    now[0] = 20.0
    assert t.unclaimed() == 1  # the other one was not a worker
    assert not t.claim()
    unreadable = exits.OomTracker(lambda: None)
    assert not unreadable.claim() and unreadable.unclaimed() == 0


# -- whether protection can act, said at start -------------------------------------------

def test_no_cgroup_limit_and_no_size_set_says_limit_none_and_what_to_set() -> None:
    state, warnings = protection_state(Settings(), None, 2)
    assert state == {"limit": "none"}
    [warning] = warnings
    assert warning.startswith("memwarden cannot recycle workers by memory: there is no cgroup "
                              "memory limit")
    for name in ("MEMWARDEN_SOFT_LIMIT", "MEMWARDEN_IDLE_LIMIT", "MEMWARDEN_HARD_LIMIT"):
        assert name in warning
    assert "no worker is ever recycled" in warning and "\n" not in warning
    [warning] = protection_state(Settings(max_requests=1000), None, 2)[1]
    assert "only MEMWARDEN_MAX_REQUESTS recycles workers" in warning


def test_a_limit_from_the_cgroup_or_a_size_warns_nothing() -> None:
    assert protection_state(Settings(), 2**30, 2) == ({"limit": "cgroup"}, [])
    assert protection_state(Settings(soft_limit=Size(bytes=2**29), idle_limit=None,
                                     hard_limit=None), None, 2) == ({"limit": "set"}, [])
    assert protection_state(Settings(recycle="off"), None, 2) == ({"limit": "off"}, [])
    assert protection_state(Settings(protect="off"), None, 2) == ({"limit": "off"}, [])
    # Every memory limit switched off under a cgroup limit: said, not warned about.
    assert protection_state(Settings(soft_limit=None, idle_limit=None, hard_limit=None),
                            2**30, 2) == ({"limit": "none"}, [])


def test_shed_thresholds_that_need_a_cgroup_limit_are_named() -> None:
    settings = Settings(soft_limit=Size(bytes=2**29), shed_high=Size(fraction=0.9),
                        shed_cgroup_high=0.9)
    assert protection_state(settings, None, 2)[1] == [
        "memwarden cannot shed load: MEMWARDEN_SHED_HIGH and MEMWARDEN_SHED_CGROUP_HIGH are "
        "shares of the cgroup memory limit, and there is none; set MEMWARDEN_SHED_HIGH to a "
        "size (MEMWARDEN_SHED_HIGH=1GiB) or run under a memory limit"]
    assert protection_state(settings, 2**30, 2)[1] == []
    assert protection_state(Settings(soft_limit=Size(bytes=2**29),
                                     shed_high=Size(bytes=2**29)), None, 2)[1] == []
