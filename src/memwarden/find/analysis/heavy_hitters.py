"""The busiest names of a stream in bounded memory: Metwally's space-saving counters.

The reader counts routes with it, so that which routes a report keeps
depends on how many requests each served, not on which came first.
"""

from __future__ import annotations

import heapq

__all__ = ["RouteCounts"]


class RouteCounts:
    """The busiest routes of a stream in bounded memory (Metwally's space-saving).

    ``capacity`` counters; a route that is not counted when the counters are
    full takes over the smallest one and its count plus one, so a count only
    ever overestimates, by at most the count it took over. Whichever order
    requests arrive in, every route seen more than n / capacity times in n
    requests holds a counter: 2,000 scanner paths logged first cannot push
    out the routes that serve the traffic afterwards.
    """

    __slots__ = ("_capacity", "_counts", "_heap")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._counts: dict[str, int] = {}
        # (count, name) entries, some stale: checked against _counts when popped.
        self._heap: list[tuple[int, str]] = []

    def add(self, name: str) -> None:
        counts = self._counts
        count = counts.get(name)
        if count is not None:
            counts[name] = count + 1
            return
        floor = 0
        if len(counts) >= self._capacity:
            floor = self._pop_smallest()
        counts[name] = floor + 1
        heapq.heappush(self._heap, (floor + 1, name))
        if len(self._heap) > 4 * self._capacity:
            # Stale entries would otherwise pile up for a busy route that keeps its counter.
            self._heap = [(c, n) for n, c in counts.items()]
            heapq.heapify(self._heap)

    def add_count(self, name: str, count: int) -> None:
        """``count`` calls of ``name`` at once (merging another part's counters)."""
        counts = self._counts
        held = counts.get(name)
        if held is None:
            held = self._pop_smallest() if len(counts) >= self._capacity else 0
        counts[name] = held + count
        heapq.heappush(self._heap, (held + count, name))

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def _pop_smallest(self) -> int:
        heap, counts = self._heap, self._counts
        while True:
            count, name = heapq.heappop(heap)
            current = counts.get(name)
            if current == count:
                del counts[name]
                return count
            if current is not None:  # counted since: back in at its present count
                heapq.heappush(heap, (current, name))

    def top(self, n: int) -> set[str]:
        """The ``n`` routes with the largest counts (ties: by name, for a stable report)."""
        return set(heapq.nsmallest(n, self._counts, key=lambda k: (-self._counts[k], k)))

    def __len__(self) -> int:
        return len(self._counts)
