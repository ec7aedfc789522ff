"""Log generators for the report tests, on top of the analysis tests' simulator."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from find.analysis.real_actions import (
    as_worker,
    idle_recycle_lines,
    master_hard_limit_lines,
    pool_refuse_line,
    recycle_lines,
    shed_lines,
)
from find.analysis.synthetic import (
    MIB,
    Route,
    SyntheticWorker,
    allocation_line,
    recycle_line,
    to_lines,
)
from memwarden.find.analysis import Report, analyze_lines
from memwarden.hold.perform import DRY_RUN
from memwarden.hold.policy import Limits

CENSUS_BASE = {"threads": 3, "fds": 14, "children": 0, "children_pss_bytes": 0,
               "asyncio.tasks": 1, "asyncio.loops": 1, "playwright.contexts": 0,
               "sessions": 5}
ITEMS = Route("GET", "/items/{id}", 3.0)
# The leak of the reference service: each chat keeps a browser context (a
# child process and its PSS), its event loop's fds and 20 KiB of heap.
LEAKY_CHAT = Route("POST", "/chat", 1.0, leak_bytes=20_480,
                   census_per_call={"playwright.contexts": 1, "children": 1, "fds": 3,
                                    "children_pss_bytes": 75 * MIB})
CLEAN_CHAT = Route("POST", "/chat", 1.0)


def interleave(*workers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of several workers in the order a shared log would hold them."""
    out: list[dict[str, Any]] = []
    longest = max(len(w) for w in workers)
    for i in range(longest):
        out.extend(w[i] for w in workers if i < len(w))
    return out


def realistic_lines(leaky: Route = LEAKY_CHAT, items: Route = ITEMS) -> list[str]:
    """A leaking worker recycled at 600 requests and replaced, beside a clean worker."""
    leaking = SyntheticWorker(pid=4121, seed=1, routes=(items, leaky),
                              census_base=dict(CENSUS_BASE)).run(600)
    clean = SyntheticWorker(pid=4122, seed=2, routes=(items, CLEAN_CHAT),
                            census_base=dict(CENSUS_BASE)).run(800)
    replacement = SyntheticWorker(pid=4121, seed=3, routes=(items, leaky),
                                  census_base=dict(CENSUS_BASE)).run(200)
    lines = to_lines(interleave(leaking, clean[:600]))
    lines.append(json.dumps(recycle_line(4121, "soft_limit", 600)))
    lines += to_lines(interleave(replacement, clean[600:]))
    return lines


def realistic_report() -> Report:
    return analyze_lines(realistic_lines())


def _dry_run_decisions() -> dict[tuple[int, int], list[dict[str, Any]]]:
    """(pid, after request seq) -> what memwarden in dry-run logs there, by its own parts."""
    # Limits just under the leaking worker's RSS where it crosses them.
    hard = master_hard_limit_lines(DRY_RUN, 4121, 86 * MIB + 700 * 1024, 86 * MIB + MIB // 2)
    shed = shed_lines(DRY_RUN, 12, stop=True, footprint=86 * MIB + MIB // 5, high=86 * MIB)
    return {
        (4121, 250): idle_recycle_lines(DRY_RUN, 82 * MIB + 200 * 1024, 82 * MIB),
        (4121, 480): recycle_lines(DRY_RUN, [84 * MIB + 300 * 1024],
                                   Limits(soft_bytes=84 * MIB), 1),
        (4121, 700): shed[:-1],
        (4121, 740): shed[-1:],
        (4121, 760): hard[:1],
        (4121, 800): hard[1:],
        (4122, 300): pool_refuse_line(DRY_RUN, "browser") * 2,
    }


def dry_run_lines() -> list[str]:
    """Step 2 of a rollout: the leaking worker of ``realistic_lines`` left running, and
    memwarden in dry-run logging the recycles, sheds and pool refusals it would have done."""
    leaking = SyntheticWorker(pid=4121, seed=1, routes=(ITEMS, LEAKY_CHAT),
                              census_base=dict(CENSUS_BASE)).run(900)
    clean = SyntheticWorker(pid=4122, seed=2, routes=(ITEMS, CLEAN_CHAT),
                            census_base=dict(CENSUS_BASE)).run(900)
    decisions = _dry_run_decisions()
    lines = []
    for record in interleave(leaking, clean):
        lines.append(json.dumps(record))
        pid, seq = record["pid"], record["seq"]
        logged = as_worker(decisions.get((pid, seq), []), pid, requests=seq,
                           timestamp=f"2026-11-28T01:{seq // 60:02d}:{seq % 60:02d}.500Z")
        lines.extend(json.dumps(line) for line in logged)
    return lines


def dry_run_report() -> Report:
    return analyze_lines(dry_run_lines())


def hardened_report() -> Report:
    clean = [SyntheticWorker(pid=pid, seed=pid, routes=(ITEMS, CLEAN_CHAT),
                             census_base=dict(CENSUS_BASE)).run(700) for pid in (5101, 5102)]
    return analyze_lines(to_lines(interleave(*clean)))


SCRIPT_ROUTE = "<script>window.__pwned=1</script>"
ATTRIBUTE_BREAK = '"><img src=x onerror=window.__pwned=2>'
SCRIPT_END = "</script><script>window.__pwned=3</script>\u2028\u2029"
HOSTILE = (SCRIPT_ROUTE, ATTRIBUTE_BREAK, SCRIPT_END)


def hostile_lines() -> list[str]:
    """A leaking log whose routes, methods, census kinds, reasons and sites attack the page."""
    leaky = Route(ATTRIBUTE_BREAK, SCRIPT_ROUTE, 1.0, leak_bytes=20_480,
                  census_per_call={SCRIPT_END: 1, "fds": 3})
    other = Route("GET", SCRIPT_END, 2.0)
    worker = SyntheticWorker(pid=31, seed=7, routes=(leaky, other),
                             census_base={**CENSUS_BASE, SCRIPT_END: 0})
    records = worker.run(400)
    lines = to_lines(records)
    lines.append(json.dumps(allocation_line(31, 400, 100, [(SCRIPT_END, 2_048_000, 1000)])))
    lines.append(json.dumps(allocation_line(31, 300, 100, [(SCRIPT_END, 2_048_000, 1000)])))
    lines.append(json.dumps(recycle_line(31, SCRIPT_ROUTE + ATTRIBUTE_BREAK, 400)))
    # Dry-run decisions whose reason and pool attack the counts, the timeline and the plot.
    decisions = {180: idle_recycle_lines(DRY_RUN, 90 * MIB, 80 * MIB),
                 200: pool_refuse_line(DRY_RUN, SCRIPT_END)}
    for line in decisions[180]:
        line["reason"] = SCRIPT_ROUTE + ATTRIBUTE_BREAK
    at = {seq: [json.dumps(line) for line in as_worker(found, 31, timestamp=SCRIPT_END)]
          for seq, found in decisions.items()}
    return [line for i, text in enumerate(lines, start=1)
            for line in (text, *at.get(i, ()))]
