"""Split request lines into worker lives.

A gunicorn worker is recycled, killed and replaced, and Linux hands PIDs out
again, so one PID can name several processes over a long log. Each life has
its own memory baseline and its own request sequence (``seq`` restarts at 1),
and mixing two lives into one series would read a restart as a huge drop or
a leak as a plateau.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from memwarden.find.analysis.records import ActionEvent, LifecycleEvent, RequestRecord

__all__ = ["LifeSplit", "WorkerLife", "split_lives"]

# Threaded and async workers log requests out of order: a request numbered
# first may log last (a census adds milliseconds between the two), so a low
# seq means a new life only when it is also below every seq of this life;
# one within this distance of the highest is reordering even then.
REORDER_TOLERANCE = 16


@dataclass(slots=True)
class WorkerLife:
    """The requests of one worker process, in seq order once split."""

    pid: int
    index: int  # 1 for the first life seen under this PID, 2 for the next...
    requests: list[RequestRecord] = field(default_factory=list)
    end_events: list[LifecycleEvent] = field(default_factory=list)
    # Dry-run decisions about this process, each with the highest seq logged
    # before it: the request that crossed the limit is logged before the decision.
    marks: list[tuple[int, ActionEvent]] = field(default_factory=list)
    _seen: set[int] = field(default_factory=set, repr=False)
    _max_seq: int = 0
    _min_seq: int | None = None

    @property
    def label(self) -> str:
        return f"pid {self.pid}" if self.index == 1 else f"pid {self.pid} (life {self.index})"

    @property
    def ended_by(self) -> str | None:
        """How the life ended, when a lifecycle line says so."""
        if not self.end_events:
            return None
        return ", then ".join(event.describe() for event in self.end_events)

    def _starts_new_life(self, seq: int) -> bool:
        if seq in self._seen:  # a seq never repeats within one life
            return True
        if seq < self._max_seq - REORDER_TOLERANCE and (self._min_seq is None
                                                        or seq < self._min_seq):
            return True
        # After a recycle or kill line only stragglers of the old life (seq
        # above its start) may follow; a low seq is the replacement process.
        return bool(self.end_events) and seq <= REORDER_TOLERANCE and seq < self._max_seq

    def _add(self, record: RequestRecord) -> None:
        self.requests.append(record)
        self._seen.add(record.seq)
        self._max_seq = max(self._max_seq, record.seq)
        self._min_seq = record.seq if self._min_seq is None else min(self._min_seq, record.seq)


@dataclass(slots=True)
class LifeSplit:
    lives: list[WorkerLife]
    # Lifecycle lines for a PID with no request lines before them.
    orphan_events: list[LifecycleEvent]


def split_lives(records: Iterable[RequestRecord | LifecycleEvent | ActionEvent]) -> LifeSplit:
    """Split request and lifecycle records, in log order, into worker lives.

    An action record marks the current life of its pid; one before any
    request of that pid marks nothing (the action counts still have it).
    """
    lives: list[WorkerLife] = []
    current: dict[int, WorkerLife] = {}
    orphans: list[LifecycleEvent] = []
    for record in records:
        life = current.get(record.pid)
        if not isinstance(record, RequestRecord):  # one test on the path of every request
            if isinstance(record, ActionEvent):
                if life is not None:
                    life.marks.append((life._max_seq, record))
            elif life is None:
                orphans.append(record)
            else:
                life.end_events.append(record)
            continue
        if life is None or life._starts_new_life(record.seq):
            life = WorkerLife(pid=record.pid, index=life.index + 1 if life else 1)
            current[record.pid] = life
            lives.append(life)
        life._add(record)
    for life in lives:
        life.requests.sort(key=lambda request: request.seq)
        life._seen.clear()  # only needed while splitting
    return LifeSplit(lives=lives, orphan_events=orphans)
