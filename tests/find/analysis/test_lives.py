"""Worker lives: a PID reused after a recycle is a new process with its own series."""

from __future__ import annotations

from memwarden.find.analysis.lives import split_lives
from memwarden.find.analysis.records import LifecycleEvent, RequestRecord


def _req(pid: int, seq: int) -> RequestRecord:
    return RequestRecord(pid=pid, seq=seq, route="/x")


def test_seq_going_back_starts_a_new_life() -> None:
    records = [_req(5, s) for s in range(1, 101)] + [_req(5, s) for s in range(1, 51)]
    lives = split_lives(records).lives
    assert [(life.pid, life.index, len(life.requests)) for life in lives] == [
        (5, 1, 100), (5, 2, 50)]


def test_recycle_line_splits_even_a_short_life() -> None:
    records: list[RequestRecord | LifecycleEvent] = [_req(5, 1), _req(5, 2), _req(5, 3)]
    records.append(LifecycleEvent(pid=5, kind="recycle", reason="soft_limit"))
    records += [_req(5, 1), _req(5, 2)]
    lives = split_lives(records).lives
    assert [len(life.requests) for life in lives] == [3, 2]
    assert lives[0].ended_by == "recycled (soft_limit)"
    assert lives[1].ended_by is None


def test_out_of_order_logging_stays_in_one_life_and_is_sorted() -> None:
    seqs = [1, 2, 4, 3, 5, 7, 6, 8, 10, 9]
    lives = split_lives([_req(9, s) for s in seqs]).lives
    assert len(lives) == 1
    assert [r.seq for r in lives[0].requests] == list(range(1, 11))


def test_a_line_logged_long_after_its_seq_stays_in_its_life() -> None:
    """gthread workers: a census request numbered 500 can log after request 530."""
    seqs = [*range(1, 500), *range(501, 531), 500, *range(531, 600)]
    lives = split_lives([_req(9, s) for s in seqs]).lives
    assert [len(life.requests) for life in lives] == [599]


def test_a_new_life_in_a_log_that_starts_mid_life_is_found() -> None:
    """The log began at seq 5000 (rotation); the same PID later restarts at 1."""
    records = [_req(5, s) for s in range(5000, 5100)] + [_req(5, s) for s in range(3, 50)]
    assert [len(life.requests) for life in split_lives(records).lives] == [100, 47]


def test_interleaved_workers_are_separate() -> None:
    records = [r for s in range(1, 31) for r in (_req(1, s), _req(2, s))]
    lives = split_lives(records).lives
    assert sorted((life.pid, len(life.requests)) for life in lives) == [(1, 30), (2, 30)]


def test_lifecycle_line_before_any_request_is_kept_as_orphan() -> None:
    split = split_lives([LifecycleEvent(pid=3, kind="worker_killed", signal="SIGKILL")])
    assert split.lives == [] and len(split.orphan_events) == 1
