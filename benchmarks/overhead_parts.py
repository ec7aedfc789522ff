"""Where memwarden's per-request cost goes, part by part.

The same Flask hello-world request as overhead.py. Each part is replaced in
turn by a stand-in that returns a constant (the reading, the line, the
write), interleaved round by round with the whole tracker; a part's cost is
the tracker's median time less the median with that part stood in. The
logging chain's check is stood in by a signature read that always matches.
Parts measured this way include what they cost the code after them (the
allocated-blocks walk leaves the caches cold for the rest of the request).
A diagnostic: the stand-ins touch memwarden's internals, and the lines
written while they stand in are not valid.

Last line: ``overhead_us=X blocks_us=Y ratio=Y/X`` (the share of the
allocated-blocks reading).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from overhead import arguments, bare_and_tracked, time_round

from memwarden.see import request_log
from memwarden.see.request_log import RequestLineWriter
from memwarden.see.wsgi import MemoryTracker
from memwarden.system.probe import Probe


@contextmanager
def standing_in(owner: Any, name: str, stand_in: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, stand_in)
    try:
        yield
    finally:
        setattr(owner, name, original)


class _NoWrite:
    """Stands in for the os module in request_log: write(2) not made."""

    @staticmethod
    def write(fd: int, data: bytes) -> int:
        return len(data)


# name -> (what it covers, the attribute replaced, its stand-in)
PARTS: dict[str, tuple[str, Any, str, Callable[..., Any]]] = {
    "blocks": ("sys.getallocatedblocks()", sys, "getallocatedblocks", lambda: 1000),
    "rss": ("statm pread", Probe, "rss_bytes", lambda self: 4096),
    "line": ("the line in all (chain, format, write)", RequestLineWriter, "write_usual",
             lambda self, *values: True),
    "write": ("the line's write(2)", request_log, "os", _NoWrite),
}


@contextmanager
def chain_unchecked(tracked: MemoryTracker) -> Iterator[None]:
    """The logging chain's routing read as its signature: the check always passes."""
    writer = tracked.meter._writer
    original = writer._routing
    signature = writer._signature
    writer._routing = lambda logger: signature
    try:
        yield
    finally:
        writer._routing = original


def main() -> None:
    args = arguments(__doc__.splitlines()[0], rounds=21)
    bare, tracked = bare_and_tracked()
    for app in (bare, tracked):
        time_round(app, 500)
    samples: dict[str, list[float]] = {name: [] for name in ["bare", "memwarden", *PARTS,
                                                             "chain"]}
    for _ in range(args.rounds):
        samples["bare"].append(time_round(bare, args.requests))
        samples["memwarden"].append(time_round(tracked, args.requests))
        for name, (_, owner, attribute, stand_in) in PARTS.items():
            with standing_in(owner, attribute, stand_in):
                samples[name].append(time_round(tracked, args.requests))
        with chain_unchecked(tracked):
            samples["chain"].append(time_round(tracked, args.requests))

    median_us = {name: statistics.median(v) * 1e6 for name, v in samples.items()}
    overhead = median_us["memwarden"] - median_us["bare"]
    cost = {name: median_us["memwarden"] - median_us[name] for name in [*PARTS, "chain"]}
    print(f"rounds={args.rounds} requests_per_round={args.requests}")
    print(f"{'memwarden in all':48s} {overhead:6.2f} us/request")
    for name, (covers, *_) in PARTS.items():
        print(f"{name + ': ' + covers:48s} {cost[name]:6.2f}")
    print(f"{'chain: the logging chain check (in line)':48s} {cost['chain']:6.2f}")
    rest = overhead - cost["blocks"] - cost["rss"] - cost["line"]
    print(f"{'rest: wrapper, id, context, route, meter':48s} {rest:6.2f}")
    print(f"overhead_us={overhead:.2f} blocks_us={cost['blocks']:.2f} "
          f"ratio={cost['blocks'] / overhead:.3f}")


if __name__ == "__main__":
    main()
