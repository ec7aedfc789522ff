"""The plain-text summary ``memwarden analyze`` prints."""

from __future__ import annotations

from memwarden.find.analysis.actions import MODE_WORDS, describe
from memwarden.find.analysis.model import Report, WorkerSummary
from memwarden.find.analysis.units import format_bytes, format_count, format_signed_bytes

__all__ = ["render_text"]

VERDICT_WORDS = {"leak": "LEAK", "no_leak": "no leak", "inconclusive": "inconclusive"}


def _worker_line(worker: WorkerSummary) -> str:
    life = f" (life {worker.life})" if worker.life > 1 else ""
    parts = [f"pid {worker.pid}{life}: {worker.requests} requests "
             f"(seq {worker.first_seq}-{worker.last_seq})"]
    if worker.rss_start_bytes is not None and worker.rss_end_bytes is not None:
        parts.append(f"RSS {format_bytes(worker.rss_start_bytes)} -> "
                     f"{format_bytes(worker.rss_end_bytes)}")
    if worker.slope_bytes_per_request is not None:
        parts.append(f"{format_signed_bytes(worker.slope_bytes_per_request)}/request")
    if worker.blocks_per_request is not None:
        live = worker.heap_signal in ("blocks_collected", "blocks_after_full_gc")
        parts.append(f"{'live heap' if live else 'blocks'} "
                     f"{format_count(worker.blocks_per_request)} blocks/request")
    if worker.ended_by:
        parts.append(worker.ended_by)
    return ", ".join(parts) + f": {VERDICT_WORDS[worker.verdict]}"


def render_text(report: Report) -> str:
    stats = report.input
    lines = [f"memwarden analyze: {stats.request_lines} request lines in {stats.lines} lines "
             f"({stats.skipped_lines} other lines skipped, {stats.malformed_lines} malformed, "
             f"{stats.invalid_records} invalid, {stats.oversized_lines} too long)"]
    if stats.unreadable_inputs:
        lines.append(f"warning: {stats.unreadable_inputs} input(s) were cut short or corrupt; "
                     f"read up to the damage")
    lines += ["", "Workers"]
    if not report.workers:
        lines.append("  (none)")
    for worker in report.workers:
        lines.append("  " + _worker_line(worker))
        lines.append("    " + worker.reason)
    other = report.other_lives
    if other.count:
        verdicts = ", ".join(f"{n} {verdict}" for verdict, n in other.verdicts)
        lines.append(f"  ... and {other.count} more lives ({other.requests} requests: "
                     f"{verdicts}), counted in the verdict, not listed")
    lines += ["", f"Verdict: {VERDICT_WORDS[report.verdict]}", "  " + report.reason]
    failed = f"; {report.failed_requests} failed (status >= 500)" if report.failed_requests \
        else ""
    lines.append(f"  {report.requests} requests{failed}")
    if report.deaths_total:
        by_route = ", ".join(f"{route} {n}" for route, n in report.deaths_by_route[:5])
        lines += ["", f"Deaths with a request in flight: {report.deaths_total} ({by_route})"]
        for death in report.deaths[:5]:
            ran = f" after {death.seconds:.1f} s" if death.seconds is not None else ""
            lines.append(f"  {death.timestamp or '-'} pid {death.pid} {death.cause}{ran}: "
                         f"{death.route_key}")
    actions = describe(report.actions)
    if actions:
        mode = report.actions.mode
        lines += ["", f"Protective actions ({MODE_WORDS[mode]})" if mode is not None
                  else "Protective actions"]
        lines += ["  " + line for line in actions]
    lines += ["", "Suspects, most likely first"]
    if not report.suspects:
        lines.append("  (none)")
    for rank, suspect in enumerate(report.suspects, start=1):
        if suspect.kind == "deaths":  # a count of deaths, and the growth during the request
            growth = f"{format_count(suspect.per_request)} deaths"
            size = (f", {format_signed_bytes(suspect.bytes_per_request)} in the request"
                    if suspect.bytes_per_request is not None else "")
        else:
            growth = f"{format_count(suspect.per_request)} per request"
            size = (f", {format_signed_bytes(suspect.bytes_per_request)}/request"
                    if suspect.bytes_per_request is not None else "")
        lines.append(f"  {rank}. {suspect.kind} {suspect.name}: {growth}{size}, "
                     f"confidence {suspect.confidence:.2f}")
        lines.append(f"     {suspect.evidence}")
    if report.routes:
        lines += ["", "Routes (all requests)",
                  f"  {'route':<40} {'calls':>7} {'rss/call':>11} {'median':>11} "
                  f"{'blocks/call':>11} {'ms/call':>9}"]
        for route in report.routes[:20]:
            def cell(value: float | None, bytes_unit: bool) -> str:
                if value is None:
                    return "-"
                return format_signed_bytes(value) if bytes_unit else format_count(value)
            lines.append(f"  {route.route[:40]:<40} {route.count:>7} "
                         f"{cell(route.mean_rss_delta_bytes, True):>11} "
                         f"{cell(route.median_rss_delta_bytes, True):>11} "
                         f"{cell(route.mean_blocks_delta, False):>11} "
                         f"{cell(route.mean_duration_ms, False):>9}")
        if len(report.routes) > 20:
            lines.append(f"  ... and {len(report.routes) - 20} more routes (see --json)")
    return "\n".join(lines) + "\n"
