"""Protective actions: read from the same logs, counted by reason and mode, bounded, never fatal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memwarden.find.analysis import analyze_lines, render_text
from memwarden.find.analysis.actions import (
    ACTION_LINES,
    MAX_DETAILS,
    MAX_EVENTS_PER_MESSAGE,
    OTHER_DETAILS,
)
from memwarden.find.analysis.analyze import MAX_PLOTTED_ACTIONS
from memwarden.find.analysis.reader import LineParser
from memwarden.find.analysis.records import ActionEvent, LifecycleEvent
from memwarden.hold import perform as actions
from memwarden.hold.policy import Limits

from .real_actions import (
    MIB,
    as_worker,
    dry_run_decisions,
    pool_refuse_line,
    recycle_lines,
    shed_lines,
    terminate_orphans_line,
)
from .synthetic import SyntheticWorker, to_lines
from .test_analyze import json_values

Line = dict[str, Any]


def _worker_log(pid: int, requests: int, inserts: dict[int, list[Line]],
                seed: int = 1) -> list[str]:
    """``requests`` requests of worker ``pid``, with lines logged after request n."""
    out: list[str] = []
    for record in SyntheticWorker(pid=pid, seed=seed).run(requests):
        out.append(json.dumps(record))
        out += to_lines(inserts.get(record["seq"], []))
    return out


def _action(message: str, logger: str, **fields: Any) -> str:
    return json.dumps({"timestamp": "2026-11-28T01:02:04.000Z", "level": "INFO",
                       "logger": logger, "message": message, "pid": 4121, **fields})


# -- the reader ------------------------------------------------------------------------------


def test_reader_turns_real_dry_run_lines_into_action_events() -> None:
    parser = LineParser()
    records = [parser.parse(json.dumps(line)) for line in dry_run_decisions(4121)]
    assert all(isinstance(r, ActionEvent) for r in records)
    events = [r for r in records if isinstance(r, ActionEvent)]
    assert [(e.message, e.detail) for e in events] == [
        ("would_recycle", "max_requests"), ("would_recycle", "soft_limit"),
        ("shedding_started", "footprint"), ("would_shed", None), ("would_shed", None),
        ("would_shed", None), ("would_terminate_descendants", None),
        ("would_pool_refuse", "browser")]
    soft = events[1]
    assert (soft.pid, soft.action, soft.would) == (4121, "recycle", True)
    assert soft.figure("footprint_bytes") == 200 * MIB
    assert soft.figure("limit_bytes") == 100 * MIB and soft.figure("requests") == 4
    assert soft.timestamp is not None and soft.timestamp.endswith("Z")
    assert events[3].figure("shed_high_bytes") == 100 * MIB
    assert events[6].figure("descendants") == 1  # the real child process it left alone
    assert dict(events[7].figures) == {"size": 4, "max_size": 4, "in_use": 4, "idle": 0,
                                       "waiting": 2, "timeout_s": 5.0}
    counters = parser.counters
    assert (counters.action_lines, counters.skipped_lines, counters.invalid_fields) == (8, 0, 0)


def test_on_mode_recycle_stays_a_lifecycle_line_and_kills_name_their_killer() -> None:
    parser = LineParser()
    recycle = recycle_lines(actions.ON, [200 * MIB], Limits(soft_bytes=100 * MIB), 1)
    assert [line["message"] for line in recycle] == ["recycle"]
    record = parser.parse(json.dumps(recycle[0]))
    assert isinstance(record, LifecycleEvent) and record.reason == "soft_limit"
    killed = parser.parse(_action("worker_killed", "memwarden.recycle", signal="SIGKILL",
                                  oom_kill=True, killed_by="oom_killer", master_pid=1))
    assert isinstance(killed, LifecycleEvent) and killed.killed_by == "oom_killer"
    assert parser.counters.lifecycle_lines == 2 and parser.counters.action_lines == 0


def test_action_names_count_only_from_memwardens_own_loggers() -> None:
    """An application logging "shed" or "would_recycle" is not memwarden acting."""
    parser = LineParser()
    assert parser.parse(_action("shed", "app.cache")) is None
    assert parser.parse(_action("would_recycle", "memwarden.shed")) is None
    assert parser.parse(_action("would_recycle_done", "memwarden.recycle")) is None  # no such
    assert parser.parse(_action("limits", "memwarden.recycle")) is None  # settings, not actions
    assert parser.counters.skipped_lines == 4 and parser.counters.action_lines == 0


# -- counts, mode, timeline ------------------------------------------------------------------


def test_dry_run_is_counted_by_reason_and_pool_and_says_it_did_nothing() -> None:
    lines = _worker_log(4121, 300, {150: dry_run_decisions(4121)})
    lines += to_lines(terminate_orphans_line(actions.DRY_RUN, orphans=3))
    report = analyze_lines(lines)
    data = json.loads(json.dumps(report.to_json_dict(), allow_nan=False))
    acted = data["actions"]
    assert acted["mode"] == "dry-run"
    assert acted["counts"] == {
        "would_recycle": {"total": 2, "workers": 1,
                          "reason": {"max_requests": 1, "soft_limit": 1}},
        "would_shed": {"total": 3, "workers": 1},
        "would_terminate_descendants": {"total": 1, "workers": 1, "processes": 1},
        "would_terminate_orphans": {"total": 1, "processes": 3},  # the master's: no workers
        "would_pool_refuse": {"total": 1, "workers": 1, "pool": {"browser": 1}},
        "shedding_started": {"total": 1, "workers": 1, "signal": {"footprint": 1}},
    }
    assert [(e["action"], e["would"]) for e in acted["events"]] == [
        ("recycle", True), ("recycle", True), ("shedding_started", False), ("shed", True),
        ("shed", True), ("shed", True), ("terminate_descendants", True),
        ("pool_refuse", True), ("terminate_orphans", True)]
    first = acted["events"][0]
    assert first["pid"] == 4121 and first["reason"] == "max_requests"
    assert first["requests"] == 2 and first["t"].startswith("20")
    assert acted["events"][7]["pool"] == "browser" and acted["events"][7]["waiting"] == 2
    assert acted["events_omitted"] == 0
    # Nothing was done: the worker lived on, and no recycle ended its life.
    assert [w["ended_by"] for w in data["workers"]] == [None]
    assert data["recycles"] == []
    assert report.input.action_lines == 9 and report.input.lifecycle_lines == 0
    assert report.input.lines == 300 + 9


def test_the_report_json_contract_is_unchanged_and_actions_is_always_there() -> None:
    data = analyze_lines(to_lines(SyntheticWorker(seed=2).run(200))).to_json_dict()
    assert list(data)[:5] == ["verdict", "requests", "failed_requests", "workers", "suspects"]
    assert data["actions"] == {"mode": None, "counts": {}, "events": [], "events_omitted": 0}
    assert "Protective actions" not in render_text(analyze_lines(
        to_lines(SyntheticWorker(seed=2).run(200))))


def test_on_mode_counts_the_recycles_that_ended_lives() -> None:
    recycle = recycle_lines(actions.ON, [200 * MIB], Limits(soft_bytes=100 * MIB), 1)
    sheds = shed_lines(actions.ON, 2)
    lines = _worker_log(4121, 200, {120: as_worker(sheds, 4121),
                                    200: as_worker(recycle, 4121)})
    lines += _worker_log(4122, 200, {200: as_worker(recycle, 4122)}, seed=2)
    lines.append(_action("recycle_done", "memwarden.recycle", pid=4200, replaces=4121))
    report = analyze_lines(lines)
    acted = report.actions
    assert acted.mode == "on"
    recycled = acted.count("recycle")
    assert recycled is not None
    assert (recycled.total, recycled.workers, recycled.breakdown) == (2, 2, (("soft_limit", 2),))
    assert acted.count("shed") is not None and acted.count("would_shed") is None
    assert [w.ended_by for w in report.workers] == ["recycled (soft_limit)"] * 2
    text = render_text(report)
    assert "Protective actions (done)\n  recycled 2 workers (soft_limit 2); shed 2 requests\n" \
           "  also logged: recycle_done 1, shedding_started 1 (by signal: footprint 1)\n" in text


def test_step_three_recycles_on_and_sheds_dry_run_is_mixed() -> None:
    recycle = as_worker(recycle_lines(actions.ON, [200 * MIB], Limits(soft_bytes=100 * MIB),
                                      1), 4121)
    would_shed = as_worker(shed_lines(actions.DRY_RUN, 4), 4121)
    report = analyze_lines(_worker_log(4121, 200, {100: would_shed, 200: recycle}))
    assert report.actions.mode == "mixed"
    text = render_text(report)
    assert "Protective actions (some done, some dry-run only)\n" \
           "  recycled 1 worker (soft_limit 1)\n  would shed 4 requests\n" in text
    assert text.isascii()


def test_a_worker_with_several_dry_run_reasons_is_one_worker_several_decisions() -> None:
    report = analyze_lines(_worker_log(4121, 200, {150: dry_run_decisions(4121)}))
    text = render_text(report)
    assert ("  would recycle 1 worker (2 decisions: max_requests 1, soft_limit 1); "
            "would shed 3 requests; would end the descendants of 1 exiting worker "
            "(1 process); would refuse 1 pool acquire (browser 1)\n") in text
    assert text.index("Verdict") < text.index("Protective actions") < text.index("Suspects")


def test_would_recycle_marks_the_life_after_the_request_that_crossed_the_limit() -> None:
    decisions = dry_run_decisions(4121)
    lines = _worker_log(4121, 300, {137: decisions[:1], 260: decisions[1:2]})
    lines += _worker_log(4121, 100, {}, seed=9)  # the pid again, a new process: no marks
    report = analyze_lines(lines)
    first, second = report.series
    assert [(m.seq, m.action, m.would, m.reason) for m in first.actions] == [
        (137, "recycle", True, "max_requests"), (260, "recycle", True, "soft_limit")]
    assert first.actions[1].footprint_bytes == 200 * MIB
    assert first.actions[1].limit_bytes == 100 * MIB
    assert second.actions == ()
    plotted = report.series_json_dict()["series"][0]["actions"]
    assert plotted[0] == {"pid": 4121, "life": 1, "seq": 137, "action": "recycle",
                          "would": True, "reason": "max_requests",
                          "footprint_bytes": 50 * MIB, "limit_bytes": None,
                          "timestamp": decisions[0]["timestamp"]}


def test_a_decision_before_any_request_of_its_worker_is_counted_not_plotted() -> None:
    lines = to_lines(dry_run_decisions(777)[:1]) + _worker_log(4121, 50, {})
    report = analyze_lines(lines)
    assert report.actions.mode == "dry-run"
    assert all(life.actions == () for life in report.series)


# -- bounded ---------------------------------------------------------------------------------


def test_timeline_keeps_the_first_of_each_kind_and_counts_the_rest() -> None:
    """A million sheds cannot crowd the recycles out of the timeline, nor grow memory."""
    shed = json.dumps(as_worker(shed_lines(actions.DRY_RUN, 1), 4121)[-1])
    decisions = to_lines(dry_run_decisions(4121)[:2])
    sheds = 20 * MAX_EVENTS_PER_MESSAGE
    report = analyze_lines(_worker_log(4121, 50, {}) + [shed] * sheds + decisions)
    acted = report.actions
    would_shed = acted.count("would_shed")
    assert would_shed is not None and would_shed.total == sheds
    assert sum(1 for e in acted.events if e.message == "would_shed") == MAX_EVENTS_PER_MESSAGE
    assert [e.detail for e in acted.events if e.message == "would_recycle"] == [
        "max_requests", "soft_limit"]
    assert acted.events_omitted == sheds - MAX_EVENTS_PER_MESSAGE
    assert len(acted.to_json_dict()["events"]) == MAX_EVENTS_PER_MESSAGE + 2


def test_distinct_reasons_and_plotted_marks_are_capped() -> None:
    lines = _worker_log(4121, 50, {})
    many = MAX_PLOTTED_ACTIONS + 200
    lines += [_action("would_recycle", "memwarden.recycle", reason=f"r{i}", requests=50)
              for i in range(many)]
    report = analyze_lines(lines)
    would = report.actions.count("would_recycle")
    assert would is not None and would.total == many
    breakdown = dict(would.breakdown)
    assert len(breakdown) == MAX_DETAILS + 1
    assert breakdown[OTHER_DETAILS] == many - MAX_DETAILS
    assert len(report.series[0].actions) == MAX_PLOTTED_ACTIONS


# -- hostile ---------------------------------------------------------------------------------


def test_hostile_action_lines_are_counted_never_fatal() -> None:
    lines = [
        _action("would_recycle", "memwarden.recycle", pid="4121"),  # pid not a number
        _action("would_recycle", "memwarden.recycle", pid=-3),
        json.dumps({"logger": "memwarden.recycle", "message": ["would_recycle"], "pid": 1}),
        json.dumps({"logger": "memwarden.recycle", "message": {"a": 1}, "pid": 1}),
        json.dumps({"logger": ["memwarden.shed"], "message": "shed", "pid": 1}),
        _action("would_recycle", "memwarden.recycle", reason=["soft_limit"],
                footprint_bytes="big", limit_bytes=-1, requests=10**30),
        _action("would_pool_refuse", "memwarden.pool", pool="\x1b[31mred\x1b[0m\n" + "p" * 5000,
                size=True, timeout_s=float("nan")),
        _action("would_shed", "memwarden.shed", timestamp={"x": 1}),
    ]
    report = analyze_lines(lines)
    stats = report.input
    assert stats.invalid_records == 2  # the two bad pids
    assert stats.skipped_lines == 3  # message or logger not a string
    assert stats.action_lines == 3
    # reason, footprint, limit, requests; size, timeout_s; timestamp
    assert stats.invalid_fields == 7
    acted = report.actions
    would = acted.count("would_recycle")
    assert would is not None and would.breakdown == () and acted.events[0].figures == ()
    pool = acted.count("would_pool_refuse")
    assert pool is not None
    (name, n), = pool.breakdown
    assert n == 1 and name.startswith("?[31mred?[0m?p") and len(name) <= 303
    json.dumps(report.to_json_dict(), allow_nan=False)
    assert "\x1b" not in render_text(report)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(sorted(ACTION_LINES)),
                          st.sampled_from(["memwarden.recycle", "memwarden.shed",
                                           "memwarden.orphans", "memwarden.pool"]),
                          st.fixed_dictionaries({}, optional={
                              f: json_values for f in ("pid", "reason", "pool", "signal",
                                                       "killed_by", "footprint_bytes",
                                                       "limit_bytes", "orphans", "descendants",
                                                       "count", "timestamp", "size")})),
                max_size=30))
def test_arbitrary_values_in_action_lines_never_crash(
        rows: list[tuple[str, str, dict[str, object]]]) -> None:
    lines = _worker_log(4121, 30, {})
    lines += [json.dumps({"logger": logger, "message": message, **fields})
              for message, logger, fields in rows]
    report = analyze_lines(lines)
    json.dumps(report.to_json_dict(), allow_nan=False)
    json.dumps(report.series_json_dict(), allow_nan=False)
    render_text(report)
    assert report.input.lines == len(lines)


def test_pool_refusals_on_and_dry_run_count_by_pool() -> None:
    lines = _worker_log(4121, 40, {
        10: as_worker(pool_refuse_line(actions.ON, "browser"), 4121),
        20: as_worker(pool_refuse_line(actions.ON, "browser") + pool_refuse_line(
            actions.ON, "mcp"), 4121),
        30: as_worker(pool_refuse_line(actions.DRY_RUN, "mcp"), 4121)})
    acted = analyze_lines(lines).to_json_dict()["actions"]
    assert acted["mode"] == "mixed"
    assert acted["counts"]["pool_refuse"] == {"total": 3, "workers": 1,
                                              "pool": {"browser": 2, "mcp": 1}}
    assert acted["counts"]["would_pool_refuse"] == {"total": 1, "workers": 1,
                                                    "pool": {"mcp": 1}}
