"""What two of memwarden's readings cost as the heap grows.

``sys.getallocatedblocks()`` (read at the end of each request, within
``MEMWARDEN_BLOCKS_BUDGET_US``) walks every pymalloc pool, so its cost grows
with the heap; ``/proc/self/smaps_rollup`` (PSS and USS, at most every
``MEMWARDEN_CENSUS_SECONDS``) costs the kernel a walk over every resident
page. Both are timed on this process's own small heap (the baseline), then
again after it has allocated about 100 MB of small objects (the candidate),
in the same run. Each figure is the best of several rounds: the machine's
other load only ever adds time.

Last line: ``blocks_small_us=X blocks_large_us=Y ratio=Y/X
smaps_us_per_mib=Z`` (the smaps_rollup read divided by resident MiB, on the
large heap).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from memwarden.system.probe import Probe


def best_us(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """The fastest round's time per call, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100,
                        help="small objects to allocate for the large heap (default: 100)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per figure (default: 7)")
    args = parser.parse_args()
    probe = Probe()

    blocks_small = best_us(sys.getallocatedblocks, 2000, args.rounds)
    smaps_small = best_us(probe.smaps_rollup, 20, args.rounds)
    rss_small = probe.rss_bytes() or 0

    # Strings of 20 characters: 69 bytes each, one pymalloc block of 80.
    count = args.megabytes * 1024 * 1024 // 80
    heap = [f"{i:020d}" for i in range(count)]
    rss_large = probe.rss_bytes() or 0
    blocks_large = best_us(sys.getallocatedblocks, 50, args.rounds)
    smaps_large = best_us(probe.smaps_rollup, 20, args.rounds)
    resident_mib = rss_large / (1024 * 1024)

    print(f"small heap: RSS {rss_small / 2**20:.0f} MiB, getallocatedblocks "
          f"{blocks_small:.2f} us, smaps_rollup {smaps_small:.1f} us")
    print(f"large heap ({len(heap):,} strings): RSS {resident_mib:.0f} MiB, getallocatedblocks "
          f"{blocks_large:.2f} us, smaps_rollup {smaps_large:.1f} us")
    print(f"blocks_small_us={blocks_small:.2f} blocks_large_us={blocks_large:.2f} "
          f"ratio={blocks_large / blocks_small:.0f} "
          f"smaps_us_per_mib={smaps_large / resident_mib:.2f}")


if __name__ == "__main__":
    main()
